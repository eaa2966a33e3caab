"""Hypothesis fuzzing of everything a user hands convtrain. It checks three things:
- a generated network spec either trains or fails validation with exit 2;
- a mutated config exits 0, 1 (a run that diverged) or 2 with one line naming the culprit;
- a mutated data file exits 2 with one line naming the file.
Never a traceback, never a Numba typing error: CliRunner re-raises anything unexpected.

The suite runs a few dozen examples of each. CONVTRAIN_FUZZ_EXAMPLES=700 runs a long
session (3 x 700 examples)."""

import gzip
import os
import struct
import tempfile

import numpy as np
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convtrain.cli import main

EXAMPLES = int(os.environ.get("CONVTRAIN_FUZZ_EXAMPLES", "25"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize="CI" in os.environ,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _run(args):
    return CliRunner().invoke(main, args, catch_exceptions=False)


def _assert_one_error_line(result, *must_contain):
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output and "numba" not in result.stderr.lower()
    for text in must_contain:
        assert text in lines[0], (text, lines[0])


# ---------------------------------------------------------------- generated specs

LAYER_TYPES = ["conv2d", "relu", "leaky_relu", "sigmoid", "tanh", "maxpool", "avgpool",
               "flatten", "dense"]


@st.composite
def layer(draw):
    kind = draw(st.sampled_from(LAYER_TYPES))
    small, pair = st.integers(-1, 6), st.lists(st.integers(0, 4), min_size=2, max_size=2)
    spec = {"type": kind}
    if kind == "conv2d":
        spec["filters"] = draw(st.integers(0, 4))
        spec["kernel"] = draw(st.one_of(small, pair))
        spec["stride"] = draw(st.one_of(st.integers(0, 3), pair))
        spec["padding"] = draw(st.one_of(st.just("same"), st.integers(-1, 3), pair))
        spec["op"] = draw(st.sampled_from(["correlation", "convolution"]))
    elif kind in ("maxpool", "avgpool"):
        spec["size"] = draw(st.one_of(small, pair))
        if draw(st.booleans()):
            spec["stride"] = draw(st.one_of(st.integers(0, 3), pair))
    elif kind == "dense":
        spec["units"] = draw(st.integers(0, 12))
    elif kind == "leaky_relu":
        spec["slope"] = draw(st.floats(-0.5, 0.5))
    return spec


@st.composite
def network_config(draw):
    config = {
        "input": [draw(st.integers(1, 3)), draw(st.integers(1, 9)), draw(st.integers(1, 9))],
        "dtype": draw(st.sampled_from(["float32", "float64"])),
        "layers": draw(st.lists(layer(), min_size=1, max_size=6)),
        "loss": draw(st.sampled_from(["softmax_cross_entropy", "mse", "hinge"])),
        "optimizer": draw(st.sampled_from([{"type": "sgd", "lr": 0.01, "momentum": 0.9},
                                           {"type": "adam", "lr": 0.001}])),
        "train": {"batch_size": draw(st.integers(1, 5))},
    }
    return config


@FUZZ
@given(network_config())
def test_generated_specs_train_a_step_or_fail_validation(config):
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "net.yaml")
        with open(path, "w") as handle:
            yaml.safe_dump(config, handle)
        result = _run(["time", path, "--iters", "1", "--batch", "2"])
        assert result.exit_code in (0, 2), result.output
        if result.exit_code == 2:
            _assert_one_error_line(result, "net.yaml")
        else:
            assert "training step" in result.stdout


# ---------------------------------------------------------------- mutated configs

BASE = {
    "name": "fuzzed", "seed": 1, "input": [1, 8, 8],
    "layers": [{"type": "conv2d", "filters": 3, "kernel": 3, "padding": "same"},
               {"type": "relu"}, {"type": "maxpool", "size": 2}, {"type": "flatten"},
               {"type": "dense", "units": 10}],
    "loss": "softmax_cross_entropy",
    "optimizer": {"type": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 0.0001},
    "schedule": {"type": "step", "every": 1, "gamma": 0.5},
    "train": {"epochs": 1, "batch_size": 16, "shuffle": True},
    "data": {"train": {"format": "builtin", "name": "digits", "scale": 16, "limit": 64},
             "val": {"split": 0.25}},
    "log": {"every": 1},
    "checkpoint": {"every": 2},
}

ODD_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-3, 10 ** 12),
                       st.floats(allow_nan=True, allow_infinity=True),
                       st.text(max_size=8), st.lists(st.integers(-2, 5), max_size=4),
                       st.dictionaries(st.sampled_from(["type", "x", "lr"]),
                                       st.integers(0, 3), max_size=2))


def _paths(node, prefix=()):
    """Every key path into the nested config: tuples of dict keys and list indices."""
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, prefix + (index,))


def _dotted(path):
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


@st.composite
def mutated_config(draw):
    import copy

    config = copy.deepcopy(BASE)
    path = draw(st.sampled_from([p for p in _paths(config) if p]))
    parent = config
    for part in path[:-1]:
        parent = parent[part]
    action = draw(st.sampled_from(["replace", "drop", "add-key"]))
    if action == "drop":
        del parent[path[-1]]
    elif action == "add-key" and isinstance(parent, dict):
        parent[draw(st.sampled_from(["lrr", "epoch", "kernal", "x"]))] = 1
        path = path[:-1]
    else:
        parent[path[-1]] = draw(ODD_VALUES)
    return config, action, path


@FUZZ
@given(mutated_config())
def test_mutated_configs_exit_cleanly_naming_the_culprit(case):
    config, action, path = case
    with tempfile.TemporaryDirectory() as folder:
        config_path = os.path.join(folder, "mutant.yaml")
        with open(config_path, "w") as handle:
            yaml.safe_dump(config, handle)
        result = _run(["train", config_path, "--out", os.path.join(folder, "run"), "--quiet",
                       "--max-steps", "2"])
        assert result.exit_code in (0, 1, 2), result.output
        if result.exit_code == 2:
            # The line names the config (or, where the data does not fit the changed spec,
            # the data source), and the changed key or the one it sits under.
            _assert_one_error_line(result)
            assert "mutant.yaml" in result.stderr or "builtin:digits" in result.stderr
            named = {_dotted(path[:depth]) for depth in range(1, len(path) + 1)}
            if path[:2] == ("layers", len(BASE["layers"]) - 1):
                named.add("layers[-1]")  # the output size, named when labels do not fit it
            assert any(name and name in result.stderr for name in named) or path == (), (
                _dotted(path), action, result.stderr)
        elif result.exit_code == 1:
            assert "diverged" in result.stderr or "FAILED" in result.stdout, result.output


# ---------------------------------------------------------------- mutated data files

def _idx_bytes(array, kind=0x08):
    header = bytes([0, 0, kind, array.ndim]) + b"".join(struct.pack(">I", d)
                                                        for d in array.shape)
    return header + array.astype(">u1").tobytes()


@st.composite
def mutated_idx(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 16)))
    images = _idx_bytes(rng.integers(0, 256, size=(12, 4, 4)))
    labels = _idx_bytes(rng.integers(0, 10, size=12))
    which = draw(st.sampled_from(["images", "labels"]))
    data = bytearray(images if which == "images" else labels)
    action = draw(st.sampled_from(["truncate", "magic", "dims", "ndim", "append", "type"]))
    if action == "truncate":
        data = data[:draw(st.integers(0, len(data) - 1))]
    elif action == "magic":
        data[draw(st.integers(0, 1))] = draw(st.integers(1, 255))
    elif action == "type":
        # (0x09, signed bytes, is the same size as 0x08 and so still a valid file)
        data[2] = draw(st.sampled_from([0x00, 0x07, 0x0B, 0x0C, 0x0D, 0x0E, 0xFF]))
    elif action == "ndim":
        data[3] = draw(st.sampled_from([0, 2, 4, 7, 255]))
    elif action == "dims":
        offset = 4 + 4 * draw(st.integers(0, data[3] - 1))
        data[offset:offset + 4] = struct.pack(">I", draw(st.integers(0, 2 ** 32 - 1)))
    else:
        data += bytes(draw(st.integers(1, 50)))
    gzipped = draw(st.booleans())
    return images, labels, which, bytes(data), gzipped


@FUZZ
@given(mutated_idx())
def test_mutated_idx_files_exit_2_naming_the_file(case):
    images, labels, which, broken, gzipped = case
    with tempfile.TemporaryDirectory() as folder:
        names = {"images": "img.idx", "labels": "lab.idx"}
        if gzipped:
            names = {k: v + ".gz" for k, v in names.items()}
        contents = {"images": images, "labels": labels, which: broken}
        for key, name in names.items():
            with (gzip.open if gzipped else open)(os.path.join(folder, name), "wb") as handle:
                handle.write(contents[key])
        config_path = os.path.join(folder, "data.yaml")
        with open(config_path, "w") as handle:
            handle.write(f"input: [1, 4, 4]\nlayers:\n  - {{type: flatten}}\n"
                         f"  - {{type: dense, units: 10}}\n"
                         f"data:\n  train: {{format: idx, images: {folder}/{names['images']}, "
                         f"labels: {folder}/{names['labels']}}}\n")
        result = _run(["train", config_path, "--out", os.path.join(folder, "run"), "--quiet",
                       "--max-steps", "1"])
        assert result.exit_code == 2, (which, result.output)
        _assert_one_error_line(result)
        assert names[which] in result.stderr or (
            # a count that only disagrees across the pair is named by both counts
            "images but" in result.stderr), result.stderr
