"""Every bad input exits 2 with one line naming file, key path and line: no traceback."""

import gzip
import os
import struct
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from convtrain.cli import main

GOOD_HEAD = "input: [1, 8, 8]\nlayers:\n  - {type: flatten}\n  - {type: dense, units: 10}\n"

CONFIG_CASES = {
    "residual-without-body": ("input: [1, 8, 8]\nlayers:\n  - {type: residual, name: r}\n",
                              ["layers[0]", "missing required key 'body'"], 3),
    "residual-branch-shapes": ("input: [1, 8, 8]\nlayers:\n  - type: residual\n    name: r\n"
                               "    body: [{type: conv2d, filters: 4, kernel: 3, padding: 1}]\n",
                               ["layers[0]", "residual block 'r'", "[4, 8, 8]",
                                "the identity shortcut", "[1, 8, 8]"], 3),
    "residual-shortcut-shapes": ("input: [1, 8, 8]\nlayers:\n  - {type: residual, name: r, "
                                 "body: [{type: maxpool, size: 2}], shortcut: [{type: conv2d, "
                                 "filters: 1, kernel: 1}]}\n",
                                 ["residual block 'r'", "[1, 4, 4]", "its shortcut gives",
                                  "[1, 8, 8]"], 3),
    "residual-nested-bad-type": ("input: [1, 8, 8]\nlayers:\n  - {type: residual, body: "
                                 "[{type: rellu}]}\n",
                                 ["layers[0].body[0].type", "did you mean 'relu'"], 3),
    "batchnorm-momentum": ("input: [1, 8, 8]\nlayers:\n  - {type: batchnorm, momentum: 1.5}\n",
                           ["layers[0].momentum", "at most 1"], 3),
    "batchnorm-eps": ("input: [1, 8, 8]\nlayers:\n  - {type: batchnorm, eps: 0}\n",
                      ["layers[0].eps", "greater than 0"], 3),
    "dropout-rate": ("input: [1, 8, 8]\nlayers:\n  - {type: dropout, rate: 1}\n",
                     ["layers[0].rate", "less than 1"], 3),
    "duplicate-full-name": ("input: [1, 8, 8]\nlayers:\n  - {type: relu, name: r.c}\n"
                            "  - {type: residual, name: r, body: [{type: relu, name: c}]}\n",
                            ["layers[1].body[0].name", "'r.c' is used twice"], 4),
    "residual-shortcuts-misspelt": ("input: [1, 8, 8]\nlayers:\n  - {type: residual, name: r, "
                                    "body: [{type: conv2d, filters: 2, kernel: 1}], shortcuts: "
                                    "[{type: conv2d, filters: 2, kernel: 1}]}\n",
                                    ["layers[0].shortcuts", "did you mean 'shortcut'"], 3),
    "nested-required-key-misspelt": ("input: [1, 8, 8]\nlayers:\n  - {type: residual, name: r, "
                                     "body: [{type: conv2d, filtres: 1, kernel: 1}]}\n",
                                     ["layers[0].body[0]", "missing required key 'filters'",
                                      "(it has 'filtres': misspelt?)"], 3),
    "nested-kernel-too-big": ("input: [1, 3, 3]\nlayers:\n  - {type: residual, name: r, "
                              "body: [{type: conv2d, filters: 1, kernel: 5}]}\n",
                              ["layers[0].body[0].kernel", "(layer r.conv1, conv2d)"], 3),
    "batchnorm-batch-of-one": ("input: [1, 8, 8]\nlayers:\n  - {type: flatten}\n"
                               "  - {type: dense, units: 4}\n  - {type: batchnorm}\n"
                               "train: {batch_size: 1}\n",
                               ["train.batch_size", "batchnorm 'bn3'",
                                "the variance of one sample is zero"], 6),
    # A YAML syntax error is reported at the line to fix: where an unclosed bracket or quote,
    # or a key missing its ':', begins, not the later line where PyYAML noticed it.
    "yaml-syntax": ("input: [1, 8, 8\nlayers: []\n",
                    ["YAML syntax error", "flow sequence that starts on this line",
                     "on line 2"], 1),
    "yaml-unclosed-flow-mapping": ("input: [1, 8, 8]\nlayers:\n  - {type: relu\n"
                                   "  - {type: flatten}\n", ["flow mapping"], 3),
    "yaml-key-without-colon": ("input: [1, 8, 8]\nseed 0\nlayers: []\n",
                               ["simple key", "could not find expected ':' on line 3"], 2),
    "yaml-unclosed-quote": ('name: "digits\ninput: [1, 8, 8]\nlayers: []\n',
                            ["quoted scalar", "end of stream on line 4"], 1),
    "yaml-bad-indent": ("input: [1, 8, 8]\nlayers:\n  - {type: relu}\n   x: 1\n",
                        ["block collection"], 4),
    "yaml-tab": ("input: [1, 8, 8]\n\tlayers: []\n", ["'\\t' that cannot start any token"], 2),
    "empty-file": ("", ["the file is empty"], None),
    "only-comment": ("# nothing\n", ["the file is empty"], None),
    "top-is-list": ("- 1\n- 2\n", ["top level must be a mapping"], None),
    "unknown-layer": ("input: [1, 8, 8]\nlayers:\n  - {type: conv2d, filters: 2, kernel: 3}\n"
                      "  - {type: rellu}\n", ["layers[1].type", "'rellu'", "did you mean 'relu'",
                                              "known types"], 4),
    "unknown-layer-key": ("input: [1, 8, 8]\nlayers:\n  - {type: conv2d, filters: 2, kernel: 3, "
                          "stirde: 2}\n", ["layers[0].stirde", "did you mean 'stride'"], 3),
    "unknown-top-key": ("input: [1, 8, 8]\nlayrs: []\n", ["layrs", "did you mean 'layers'"], 2),
    "unknown-optimizer-key": (GOOD_HEAD + "optimizer: {type: sgd, lr: 0.1, momentun: 0.9}\n",
                              ["optimizer.momentun", "did you mean 'momentum'"], 5),
    "unknown-optimizer": (GOOD_HEAD + "optimizer: {type: sdg}\n",
                          ["optimizer.type", "did you mean 'sgd'"], 5),
    "unknown-loss": (GOOD_HEAD + "loss: cross_entropy\n", ["loss", "softmax_cross_entropy"], 5),
    "filters-string": ("input: [1, 8, 8]\nlayers:\n  - {type: conv2d, filters: two, kernel: 3}\n",
                       ["layers[0].filters", "must be an integer", "'two'"], 3),
    "kernel-float": ("input: [1, 8, 8]\nlayers:\n  - {type: conv2d, filters: 2, kernel: 2.5}\n",
                     ["layers[0].kernel"], 3),
    "lr-string": (GOOD_HEAD + "optimizer: {lr: fast}\n", ["optimizer.lr", "must be a number"], 5),
    "bias-not-bool": ("input: [1, 8, 8]\nlayers:\n  - {type: dense, units: 3, bias: yes please}\n",
                      ["layers[0].bias", "true or false"], 3),
    "huge-kernel-same-padding": ("input: [1, 8, 8]\nlayers:\n  - {type: conv2d, filters: 3, "
                                 "kernel: 4001, padding: same}\n",
                                 ["layers[0]", "working memory per sample", "typo"], 3),
    "control-characters": ('seed: "4\\r2"\n' + GOOD_HEAD, ["seed", "('4\\r2')"], 1),
    "input-bad": ("input: [1, 8]\nlayers:\n  - {type: flatten}\n", ["input", "[C, H, W]"], 1),
    "layers-empty": ("input: [1, 8, 8]\nlayers: []\n", ["layers", "non-empty"], 2),
    "layer-not-mapping": ("input: [1, 8, 8]\nlayers:\n  - relu\n", ["layer 0", "mapping"], 3),
    "kernel-too-big": ("input: [1, 4, 4]\nlayers:\n  - {type: conv2d, filters: 2, kernel: 5}\n",
                       ["layers[0].kernel", "5x5 is larger than its input 4x4"], 3),
    "kernel-too-big-deep": ("input: [1, 8, 8]\nlayers:\n  - {type: maxpool, size: 4}\n"
                            "  - {type: conv2d, filters: 2, kernel: 3}\n",
                            ["layers[1].kernel", "3x3 is larger than its input 2x2"], 4),
    "pool-too-big": ("input: [1, 3, 3]\nlayers:\n  - {type: maxpool, size: 4}\n",
                     ["layers[0].size", "larger than its input"], 3),
    "filters-huge": ("input: [1, 8, 8]\nlayers:\n  - {type: conv2d, filters: 1000000000, "
                     "kernel: 3}\n", ["layers[0]", "surely a typo"], 3),
    "stride-zero": ("input: [1, 8, 8]\nlayers:\n  - {type: conv2d, filters: 2, kernel: 3, "
                    "stride: 0}\n", ["layers[0].stride", "at least 1"], 3),
    "padding-negative": ("input: [1, 8, 8]\nlayers:\n  - {type: conv2d, filters: 2, kernel: 3, "
                         "padding: -1}\n", ["layers[0].padding", "at least 0"], 3),
    "padding-word": ("input: [1, 8, 8]\nlayers:\n  - {type: conv2d, filters: 2, kernel: 3, "
                     "padding: full}\n", ["layers[0].padding", "'same'"], 3),
    "negative-lr": (GOOD_HEAD + "optimizer: {type: sgd, lr: -0.1}\n",
                    ["optimizer.lr", "greater than 0"], 5),
    "zero-lr": (GOOD_HEAD + "optimizer: {type: adam, lr: 0}\n", ["optimizer.lr"], 5),
    "momentum-one": (GOOD_HEAD + "optimizer: {type: sgd, lr: 0.1, momentum: 1.0}\n",
                     ["optimizer.momentum", "less than 1"], 5),
    "negative-epochs": (GOOD_HEAD + "train: {epochs: -1}\n", ["train.epochs", "at least 1"], 5),
    "zero-batch": (GOOD_HEAD + "train: {batch_size: 0}\n", ["train.batch_size"], 5),
    "weights-wrong-shape": ("input: [1, 4, 4]\nlayers:\n  - {type: conv2d, filters: 1, kernel: 2,"
                            "\n     weights: [[[1, 2], [3, 4]]]}\n",
                            ["layers[0].weights", "[1, 2, 2]", "expected [1, 1, 2, 2]"], 4),
    "weights-ragged": ("input: [1, 1, 2]\nlayers:\n  - {type: dense, units: 2, "
                       "weights: [[1, 2], [3]]}\n", ["layers[0].weights", "same length"], 3),
    "dense-weights-shape": ("input: [1, 2, 2]\nlayers:\n  - {type: dense, units: 2, "
                            "weights: [[1, 2], [3, 4]]}\n", ["expected [2, 4]"], 3),
    "biases-without-bias": ("input: [1, 1, 2]\nlayers:\n  - {type: dense, units: 1, bias: false, "
                            "biases: [1]}\n", ["layers[0].biases"], 3),
    "duplicate-name": ("input: [1, 8, 8]\nlayers:\n  - {type: relu, name: a}\n"
                       "  - {type: relu, name: a}\n", ["layers[1].name", "used twice"], 4),
    "duplicate-key": ("input: [1, 8, 8]\ninput: [1, 4, 4]\nlayers: [{type: relu}]\n",
                      ["duplicate key 'input'"], 2),
    "conv-after-flatten": ("input: [1, 8, 8]\nlayers:\n  - {type: flatten}\n"
                           "  - {type: conv2d, filters: 1, kernel: 1}\n",
                           ["layers[1]", "image input"], 4),
    "python-tag": ("input: !!python/object/apply:os.system ['echo hacked']\nlayers: []\n",
                   ["not allowed"], 1),
    "val-split-one": (GOOD_HEAD + "data:\n  train: {format: builtin, name: digits}\n"
                      "  val: {split: 1.0}\n", ["data.val.split", "less than 1"], 7),
    "unknown-format": (GOOD_HEAD + "data:\n  train: {format: mnist}\n",
                       ["data.train.format", "idx"], 6),
    "trace-target-range": (GOOD_HEAD + "trace: {target: 10}\n", ["trace.target", "class 10"], 5),
    "trace-input-shape": (GOOD_HEAD + "trace: {input: [[1, 2]]}\n", ["trace.input",
                                                                      "expected [1, 8, 8]"], 5),
}


def _assert_one_clean_line(result, must_contain):
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output
    for text in must_contain:
        assert text in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("case", CONFIG_CASES)
def test_bad_config_exits_2_with_one_line(case, write_config):
    text, must_contain, line = CONFIG_CASES[case]
    path = write_config(text, f"{case}.yaml")
    result = CliRunner().invoke(main, ["summary", path])
    message = _assert_one_clean_line(result, must_contain)
    assert message.startswith(f"error: {path}" + (f":{line}:" if line else ":"))


def test_yaml_anchors_merge_and_alias_bombs(write_config):
    good = write_config("x-conv: &conv {type: conv2d, filters: 2, kernel: 3}\ninput: [1, 8, 8]\n"
                        "layers:\n  - {<<: *conv, filters: 4}\n  - *conv\n", "anchors.yaml")
    result = CliRunner().invoke(main, ["summary", good])
    assert result.exit_code == 0 and "(4, 6, 6)" in result.stdout and "(2, 4, 4)" in result.stdout
    bomb = "a: &a [" + ",".join(["1"] * 10) + "]\n"
    for prev, name in zip("abcdefg", "bcdefgh"):
        bomb += f"{name}: &{name} [" + ",".join([f"*{prev}"] * 10) + "]\n"
    result = CliRunner().invoke(main, ["summary", write_config(bomb, "bomb.yaml")])
    _assert_one_clean_line(result, ["expands to more than"])
    result = CliRunner().invoke(main, ["summary", write_config("x: &a [*a]\n", "loop.yaml")])
    _assert_one_clean_line(result, ["refers to itself"])


def test_bad_flags_are_one_line_too(write_config):
    path = write_config(GOOD_HEAD)
    for args, text in ((["train", path, "--threads", "0"], "--threads"),
                       (["trace", path, "--recipe", "textbok"], "--recipe"),
                       (["summary", path, "--frobnicate"], "--frobnicate"),
                       (["eval", path], "--checkpoint"),
                       (["trian", path], "trian")):
        result = CliRunner().invoke(main, args)
        line = _assert_one_clean_line(result, [text])
        assert line.endswith("--help)")


def test_missing_config_file():
    result = CliRunner().invoke(main, ["summary", "no-such-config.yaml"])
    _assert_one_clean_line(result, ["no-such-config.yaml", "no such file"])


def test_a_folder_given_as_the_config_is_named_like_any_bad_file(tmp_path):
    """The loader's words, not click's "Invalid value for 'CONFIG'", for every command
    that reads a config (a newcomer passed the folder holding it)."""
    for args in (["train", str(tmp_path)], ["compile", str(tmp_path)],
                 ["summary", str(tmp_path)], ["time", str(tmp_path)]):
        result = CliRunner().invoke(main, args)
        _assert_one_clean_line(result, [f"error: {tmp_path}: is a directory, not a YAML file"])


def test_bad_set_override(write_config):
    path = write_config(GOOD_HEAD)
    result = CliRunner().invoke(main, ["summary", path, "--set", "layers.7.units=3"])
    _assert_one_clean_line(result, ["--set layers.7.units", "list of 2 items"])
    result = CliRunner().invoke(main, ["summary", path, "--set", "layers[7].units=3"])
    _assert_one_clean_line(result, ["--set layers[7].units", "list of 2 items"])
    result = CliRunner().invoke(main, ["summary", path, "--set", "optimizer.lr=-1"])
    _assert_one_clean_line(result, ["optimizer.lr", "greater than 0"])


def test_set_takes_a_path_copied_from_an_error(write_config):
    """Errors print list indices in brackets (layers[1].units); --set takes that form too,
    the same as the dotted one, negative indices included."""
    path = write_config(GOOD_HEAD)
    summaries = [CliRunner().invoke(main, ["summary", path, "--set", f"{key}=7"])
                 for key in ("layers.1.units", "layers[1].units", "layers[-1].units")]
    assert [r.exit_code for r in summaries] == [0, 0, 0]
    assert summaries[0].stdout == summaries[1].stdout == summaries[2].stdout
    assert "(7,)" in summaries[0].stdout


def _idx(path, array, magic_type=0x08, compress=False):
    header = bytes([0, 0, magic_type, array.ndim]) + b"".join(
        struct.pack(">I", d) for d in array.shape)
    data = header + array.astype(">u1").tobytes()
    with (gzip.open if compress else open)(path, "wb") as handle:
        handle.write(data)


def _data_config(write_config, tmp_path, source, units=10, input_shape="[1, 4, 4]"):
    return write_config(f"input: {input_shape}\nlayers:\n  - {{type: flatten}}\n"
                        f"  - {{type: dense, units: {units}}}\n"
                        f"data:\n  train: {source}\n", "data.yaml")


@pytest.fixture
def idx_files(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(20, 4, 4))
    labels = rng.integers(0, 10, size=20)
    _idx(tmp_path / "img.idx", images)
    _idx(tmp_path / "lab.idx", labels)
    return tmp_path / "img.idx", tmp_path / "lab.idx", images, labels


DATA_CASES = {
    "missing-file": (lambda p, i: "{format: idx, images: nope.idx, labels: " + str(i[1]) + "}",
                     ["nope.idx", "data.train.images", "no such file"]),
    "truncated-idx": (lambda p, i: _truncate(i[0]) or _src(i), ["img.idx", "truncated"]),
    "wrong-magic": (lambda p, i: _write(i[0], b"\x12\x34\x08\x03" + b"\0" * 100) or _src(i),
                    ["img.idx", "bad magic"]),
    "label-count": (lambda p, i: _idx(i[1], i[3][:15]) or _src(i),
                    ["20 images but 15 labels"]),
    "labels-too-big": (lambda p, i: _idx(i[1], np.full(20, 12)) or _src(i),
                       ["labels run from 12 to 12", "10 outputs"]),
    "broken-gzip": (lambda p, i: _write(i[0], b"\x1f\x8b\x08\x00garbage") or _src(i),
                    ["broken gzip"]),
    "npz-missing-key": (lambda p, i: np.savez(p / "d.npz", a=np.zeros((2, 16)), y=np.zeros(2))
                        or "{format: npz, path: " + str(p / "d.npz") + "}",
                        ["d.npz", "has no array 'x'"]),
    "npz-strings": (lambda p, i: np.savez(p / "d.npz", x=np.array(["a"] * 32).reshape(2, 16),
                                          y=np.zeros(2)) or
                    "{format: npz, path: " + str(p / "d.npz") + "}", ["images must be numbers"]),
    "npz-garbage": (lambda p, i: _write(p / "d.npz", b"not a zip") or
                    "{format: npz, path: " + str(p / "d.npz") + "}", ["not an .npz archive but a text file"]),
    "csv-not-number": (lambda p, i: _write(p / "d.csv", b"1," + b"0," * 15 + b"0\n2,x" +
                                           b",0" * 15 + b"\n") or
                       "{format: csv, path: " + str(p / "d.csv") + "}",
                       ["d.csv", "line 2", "'x' is not a number"]),
    "csv-header-forgotten": (lambda p, i: _write(p / "d.csv", b"label," + b"p," * 15 + b"p\n") or
                             "{format: csv, path: " + str(p / "d.csv") + "}", ["header: true"]),
    "csv-ragged": (lambda p, i: _write(p / "d.csv", b"1,0,0\n1,0\n") or
                   "{format: csv, path: " + str(p / "d.csv") + "}", ["line 2 has 2 values"]),
}


def _write(path, data):
    with open(path, "wb") as handle:
        handle.write(data)


def _truncate(path):
    data = open(path, "rb").read()
    _write(path, data[:-7])


def _src(files):
    return "{format: idx, images: " + str(files[0]) + ", labels: " + str(files[1]) + "}"


@pytest.mark.parametrize("case", DATA_CASES)
def test_bad_data_exits_2_before_any_folder_is_made(case, write_config, tmp_path, idx_files):
    make_source, must_contain = DATA_CASES[case]
    config = _data_config(write_config, tmp_path, make_source(tmp_path, idx_files))
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", config, "--out", str(out)])
    _assert_one_clean_line(result, must_contain)
    assert not out.exists()


def test_input_shape_that_does_not_match_data(write_config, tmp_path, idx_files):
    config = _data_config(write_config, tmp_path, _src(idx_files), input_shape="[1, 28, 28]")
    result = CliRunner().invoke(main, ["train", config, "--out", str(tmp_path / "run")])
    _assert_one_clean_line(result, ["img.idx", "16 values", "input is [1, 28, 28]"])


def test_good_idx_files_load_plain_and_gzip(tmp_path, idx_files):
    from convtrain.data.sources import read_idx

    _idx(tmp_path / "img.idx.gz", idx_files[2], compress=True)
    plain = read_idx(str(idx_files[0]), "k")
    zipped = read_idx(str(tmp_path / "img.idx.gz"), "k")
    assert plain.shape == (20, 4, 4) and np.array_equal(plain, zipped)
    assert np.array_equal(plain, idx_files[2])


def test_non_empty_run_folder_is_not_overwritten(write_config, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    config = write_config(GOOD_HEAD + "data:\n  train: {format: builtin, name: digits}\n")
    result = CliRunner().invoke(main, ["train", config, "--out", str(out)])
    _assert_one_clean_line(result, ["exists and is not empty", "give a new or empty folder"])
    assert "--resume" not in result.stderr  # no run there to resume
    assert (out / "precious.txt").read_text() == "keep me"
    assert os.listdir(out) == ["precious.txt"]


def test_bad_checkpoint_file(write_config, tmp_path):
    config = write_config(GOOD_HEAD + "data:\n  train: {format: builtin, name: digits}\n")
    bad = tmp_path / "ck.npz"
    bad.write_bytes(b"nonsense")
    result = CliRunner().invoke(main, ["eval", config, "--checkpoint", str(bad)])
    _assert_one_clean_line(result, ["ck.npz", "not a convtrain checkpoint"])


def test_config_errors_are_fast_and_do_not_import_numba(write_config):
    """A real subprocess: exit 2, one line, and numba never imported on the error path."""
    path = write_config("input: [1, 8, 8]\nlayers:\n  - {type: rellu}\n")
    code = ("import sys\nfrom convtrain.cli import main\n"
            "try:\n    main(['summary', sys.argv[1]])\n"
            "except SystemExit as e:\n    print('numba' in sys.modules, e.code)\n")
    proc = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True)
    assert proc.stdout.strip() == "False 2"
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_a_scale_that_overflows_the_dtype(write_config):
    """Found by fuzzing: NumPy's overflow warning came first, then an error blaming the data."""
    path = write_config("input: [1, 8, 8]\nlayers:\n  - {type: flatten}\n"
                        "  - {type: dense, units: 10}\n"
                        "data:\n  train: {format: builtin, name: digits, scale: 1.0e-300}\n")
    result = CliRunner().invoke(main, ["train", path, "--max-steps", "1"])
    _assert_one_clean_line(result, ["data.train.scale", "overflows float32"])


def test_commands_that_need_data_say_so_when_the_config_has_none(write_config):
    config = write_config("input: [1, 8, 8]\nlayers:\n  - {type: flatten}\n"
                          "  - {type: dense, units: 10}\n")
    result = CliRunner().invoke(main, ["train", config, "--out", "unused"])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.output
    assert "data.train: the config has no data.train source" in result.stderr


def test_config_problems_found_with_the_data_name_their_line(write_config):
    config = write_config("input: [1, 8, 8]\nlayers:\n  - {type: flatten}\n"
                          "  - {type: dense, units: 10}\n  - {type: batchnorm}\n"
                          "train: {batch_size: 16}\ndata:\n"
                          "  train: {format: builtin, name: digits, limit: 33}\n")
    result = CliRunner().invoke(main, ["train", config, "--smoke"])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"error: {config}:6: train.batch_size: the last batch of "
                                    f"every epoch would hold one sample")
    result = CliRunner().invoke(main, ["train", config, "--smoke", "--set",
                                       "data.val={split: 0.9999}"])
    assert result.stderr.startswith(f"error: {config} with --set data.val={{split: 0.9999}}: "
                                    f"data.val.split: a split of 0.9999 leaves all samples")
