"""branches blocks: merge add, concat and multiply (squeeze-and-excitation's (C,) gate
included), empty paths, nesting and names; against NumPy, float64 gradient checks through the
training path, planted bugs they catch, trace's steps, ONNX Runtime at batch 1 and 7, and
the bad blocks."""

import numpy as np
import pytest
from nets import assert_onnx_runtime_agrees

from convtrain.errors import ConfigError
from convtrain.layers import base, walk
from convtrain.model.gradcheck import check_gradients
from convtrain.model.network import Network
from convtrain.spec.config import load_config
from convtrain.views.trace import run_trace

CONV = "{type: conv2d, filters: 2, kernel: 3, padding: 1}"
SE_GATE = ("[{type: globalavgpool}, {type: dense, units: 2}, {type: relu}, "
           "{type: dense, units: 3}, {type: sigmoid}]")
BLOCKS = {
    "concat": f"{{type: branches, merge: concat, paths: [[{CONV}, {{type: tanh}}], [], "
              f"[{{type: conv2d, filters: 1, kernel: 1}}]]}}",
    "add of three": "{type: branches, merge: add, paths: [[{type: conv2d, filters: 3, "
                    "kernel: 3, padding: 1}], [], [{type: tanh}]]}",
    "multiply": "{type: branches, merge: multiply, paths: [[{type: tanh}], [], "
                "[{type: sigmoid}]]}",
    "squeeze-and-excitation": f"{{type: branches, merge: multiply, paths: [[], {SE_GATE}]}}",
    "gate of [C, 1, 1] first": "{type: branches, merge: multiply, paths: [[{type: "
                               "globalavgpool}, {type: dense, units: 3}, {type: sigmoid}, "
                               "{type: dense, units: 3}], [{type: relu}]]}",
    "nested": f"{{type: residual, name: outer, body: [{{type: branches, name: inner, merge: "
              f"concat, paths: [[{CONV}], [{{type: conv2d, filters: 1, kernel: 1}}]]}}, "
              f"{{type: tanh}}]}}",
}


def _config(block, dtype="float64", vector=False):
    before = "\n  - {type: flatten}\n  - {type: dense, units: 6}" if vector else ""
    sample = np.round(_x(1)[0], 3).tolist()
    return load_config("b.yaml", text=f"""
dtype: {dtype}
seed: 3
input: [3, 4, 5]
layers:{before}
  - {block}
  - {{type: flatten}}
  - {{type: dense, units: 3}}
trace: {{input: {sample}, target: 2}}
""")


def _x(batch=3, seed=2):
    return np.random.default_rng(seed).normal(size=(batch, 3, 4, 5))


def test_each_merge_is_numpys():
    x = _x()
    concat = Network(_config(BLOCKS["concat"])).layers[0]
    first, third = concat.paths[0], concat.paths[2]
    expected = np.concatenate([first[1].forward(first[0].forward(x)), x, third[0].forward(x)],
                              axis=1)
    np.testing.assert_array_equal(concat.forward(x), expected)
    gated = Network(_config(BLOCKS["squeeze-and-excitation"])).layers[0]
    gate = x
    for layer in gated.paths[1]:
        gate = layer.forward(gate)
    np.testing.assert_array_equal(gated.forward(x), x * gate[:, :, None, None])
    three = Network(_config(BLOCKS["multiply"])).layers[0]
    tanh, sigmoid = three.paths[0][0].forward(x), three.paths[2][0].forward(x)
    np.testing.assert_array_equal(three.forward(x), tanh * x * sigmoid)


def test_concat_of_vectors_joins_features():
    block = "{type: branches, merge: concat, paths: [[{type: dense, units: 2}], []]}"
    config = _config(block, vector=True)
    assert config.layers[2].out_shape == (8,)
    rows = check_gradients(Network(config), _x(), np.array([0, 2, 1]))
    assert all(row.passed for row in rows), [row.describe() for row in rows]


@pytest.mark.parametrize("case", sorted(BLOCKS))
def test_gradients_are_exact(case):
    rows = check_gradients(Network(_config(BLOCKS[case])), _x(), np.array([0, 2, 1]))
    assert all(row.passed for row in rows), [row.describe() for row in rows]


def _plant(monkeypatch, name, wrong):
    module = base.kernels("merge")
    monkeypatch.setattr(module, name, wrong)


@pytest.mark.parametrize("case, kernel", [
    ("concat", "take_channels"),              # each path takes the channels one further on
    ("squeeze-and-excitation", "channel_dot"),  # the gate's share summed without the x factor
    ("multiply", "multiply"),                 # a product that adds
])
def test_a_planted_bug_in_a_merge_backward_fails_the_check(monkeypatch, case, kernel):
    module = base.kernels("merge")
    right = getattr(module, kernel)
    if kernel == "take_channels":
        def wrong(dout, first, dpart):
            right(np.roll(dout, -1, axis=1), first, dpart)
    elif kernel == "channel_dot":
        def wrong(x, dout, dgate):
            right(np.ones_like(x), dout, dgate)
    else:
        def wrong(a, b, out):
            out[:] = a + b
    network = Network(_config(BLOCKS[case]))
    network.forward(_x(), training=True)  # the forward pass before the bug
    _plant(monkeypatch, kernel, wrong)
    if kernel == "multiply":  # planted in forward and backward alike: the products add
        network = Network(_config(BLOCKS[case]))
    rows = check_gradients(network, _x(), np.array([0, 2, 1]))
    assert not all(row.passed for row in rows)


def test_names_are_the_blocks_and_numbered_per_path():
    config = _config("{type: branches, name: fire, merge: concat, paths: [[{type: conv2d, "
                     "name: e1, filters: 2, kernel: 1}, {type: relu}], [{type: conv2d, "
                     "filters: 2, kernel: 3, padding: 1}, {type: relu}]]}")
    assert [spec.name for spec in walk(config.layers)][:5] == [
        "fire", "fire.e1", "fire.path1_relu2", "fire.path2_conv1", "fire.path2_relu2"]
    assert config.layers[0].out_shape == (4, 4, 5)
    nested = _config(BLOCKS["nested"])
    assert "outer.inner.path2_conv1" in [spec.name for spec in walk(nested.layers)]


def test_the_resolved_config_reads_back_to_the_same_network(tmp_path):
    import yaml

    config = _config(BLOCKS["nested"])
    again = load_config("again.yaml", text=yaml.safe_dump(config.resolved))
    assert again.architecture_fingerprint() == config.architecture_fingerprint()


@pytest.mark.parametrize("case", ["concat", "squeeze-and-excitation"])
def test_trace_shows_each_paths_share_and_what_it_hands_down(case):
    config = _config(BLOCKS[case])
    result = run_trace(config)
    steps = {(step["layer"], step["what"]): step for step in result["steps"]}
    block = config.layers[0].name
    labels = config.layers[0].path_labels
    for label in labels:
        assert (block, f"{label}_output_delta") in steps
        assert (block, f"{label}_delta") in steps
    handed = sum(np.array(steps[(block, f"{label}_delta")]["value"]) for label in labels)
    np.testing.assert_allclose(steps[(block, "input_delta")]["value"], handed, rtol=1e-15)
    formula = steps[(block, "input_delta")]["formula"]
    assert formula == "δx = " + " + ".join(f"δx.{label}" for label in labels), formula
    if case == "concat":
        share = steps[(block, "path2_output_delta")]
        assert share["formula"].endswith("= δ1[channels 2..4]"), share["formula"]
        np.testing.assert_array_equal(share["value"], np.array(
            steps[(block, "delta")]["value"])[2:5])
    else:
        assert "Σ_hw" in steps[(block, "path2_output_delta")]["formula"]


@pytest.mark.parametrize("case", sorted(BLOCKS))
@pytest.mark.parametrize("batch", [1, 7])
def test_onnx_runtime_gives_the_same_scores(case, batch):
    config = _config(BLOCKS[case], dtype="float32")
    x = _x(batch, seed=5).astype(np.float32)
    assert_onnx_runtime_agrees(config, Network(config), x)


@pytest.mark.parametrize("block, where, words", [
    ("{type: branches, merge: concat, paths: [[{type: maxpool, size: 2}], []]}", "paths[1]",
     "so they must all be images of the same height and width (or all vectors): path1 gives "
     "[3, 2, 2], path2 gives [3, 4, 5]"),
    ("{type: branches, merge: multiply, paths: [[{type: globalavgpool}, {type: dense, "
     "units: 2}], []]}", "paths[0]", "or be one value per channel ([C] or [C, 1, 1]) to "
                                     "scale an image's channels: path1 gives [2], path2 gives "
                                     "[3, 4, 5]"),
    ("{type: branches, merge: add, paths: [[{type: conv2d, filters: 2, kernel: 1}], []]}",
     "paths[1]", "adds its paths' outputs, so they must have the same shape"),
    ("{type: branches, merge: stack, paths: [[], []]}", "merge",
     "unknown value 'stack'; choose one of: add, concat, multiply"),
    ("{type: branches, merge: concat, paths: [[]]}", "paths", "two or more paths"),
    ("{type: branches, paths: [[], []]}", "", "missing required key 'merge'"),
])
def test_bad_blocks_are_one_line_naming_the_key(block, where, words):
    with pytest.raises(ConfigError) as raised:
        _config(block)
    line = raised.value.one_line()
    key = f"layers[0].{where}: " if where else "layers[0]: "
    assert line.startswith(f"error: b.yaml:6: {key}") and words in line, line
