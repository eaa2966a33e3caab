"""maxpool and avgpool with padding, ceil_mode and count_include_pad, PyTorch's semantics
(torch 2.13's max_pool2d and avg_pool2d gave the same float64 bits, forward and backward,
on these eleven cases when checked by hand). Here: a plain NumPy reading of those
semantics, float64 gradient checks, ONNX Runtime at batch 1 and 7, and the bad values."""

import numpy as np
import pytest
from nets import assert_onnx_runtime_agrees

from convtrain.errors import ConfigError
from convtrain.model.gradcheck import check_gradients
from convtrain.model.network import Network
from convtrain.spec.config import load_config

CASES = [("maxpool", 3, 2, 1, False, True), ("maxpool", 3, 2, 1, True, True),
         ("maxpool", 3, 2, 0, True, True), ("maxpool", 2, 2, 1, True, True),
         ("avgpool", 3, 2, 1, False, True), ("avgpool", 3, 2, 1, True, True),
         ("avgpool", 3, 2, 1, True, False), ("avgpool", 3, 1, 1, False, False),
         ("avgpool", 2, 2, 1, True, True), ("avgpool", 3, 2, 0, True, True),
         ("avgpool", 3, 2, 0, True, False)]
# (out H, out W) of each case on a 7x6 input, as torch gives them
SHAPES = [(4, 3), (4, 4), (3, 3), (4, 4), (4, 3), (4, 4), (4, 4), (7, 6), (4, 4), (3, 3), (3, 3)]


def _config(case, dtype="float64"):
    kind, size, stride, pad, ceil, counted = case
    extra = f", count_include_pad: {str(counted).lower()}" if kind == "avgpool" else ""
    return load_config("pool.yaml", text=f"""
dtype: {dtype}
input: [2, 7, 6]
layers:
  - {{type: {kind}, size: {size}, stride: {stride}, padding: {pad},
     ceil_mode: {str(ceil).lower()}{extra}}}
  - {{type: flatten}}
  - {{type: dense, units: 3}}
""")


def _reference(x, case, out_hw):
    """PyTorch's pooling, entry by entry."""
    kind, size, stride, pad, _, counted = case
    n, c, height, width = x.shape
    out = np.empty((n, c) + out_hw)
    for oh in range(out_hw[0]):
        for ow in range(out_hw[1]):
            top, left = oh * stride - pad, ow * stride - pad
            bottom, right = min(top + size, height + pad), min(left + size, width + pad)
            window = x[:, :, max(top, 0):min(bottom, height), max(left, 0):min(right, width)]
            if kind == "maxpool":
                out[:, :, oh, ow] = window.max(axis=(2, 3))
            else:
                count = ((bottom - top) * (right - left) if counted
                         else window.shape[2] * window.shape[3])
                out[:, :, oh, ow] = window.sum(axis=(2, 3)) / count
    return out


@pytest.mark.parametrize("case, shape", list(zip(CASES, SHAPES)), ids=str)
def test_forward_is_pytorchs_pooling(case, shape):
    config = _config(case)
    assert config.layers[0].out_shape == (2,) + shape
    x = np.random.default_rng(1).normal(size=(3, 2, 7, 6))
    got = Network(config).layers[0].forward(x)
    np.testing.assert_allclose(got, _reference(x, case, shape), rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_gradients_are_exact(case):
    x = np.random.default_rng(2).normal(size=(3, 2, 7, 6))
    rows = check_gradients(Network(_config(case)), x, np.array([0, 2, 1]))
    assert all(row.passed for row in rows), [row.describe() for row in rows]


@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("batch", [1, 7])
def test_onnx_runtime_gives_the_same_scores(case, batch):
    config = _config(case, dtype="float32")
    network = Network(config)
    x = np.random.default_rng(3).normal(size=(batch, 2, 7, 6)).astype(np.float32)
    assert_onnx_runtime_agrees(config, network, x)


@pytest.mark.parametrize("layer, key, words", [
    ("{type: maxpool, size: 2, padding: 2}", "padding", "2 is more than half the window (2)"),
    ("{type: avgpool, size: 9, padding: 1}", "size", "window 9x9 is larger than its input 7x6 "
                                                    "padded to 9x8"),
    ("{type: maxpool, size: 2, count_include_pad: false}", "count_include_pad", "unknown key"),
])
def test_bad_windows_are_one_line_naming_the_key(layer, key, words):
    with pytest.raises(ConfigError) as raised:
        load_config("pool.yaml", text=f"input: [2, 7, 6]\nlayers:\n  - {layer}\n"
                                      "  - {type: flatten}\n  - {type: dense, units: 2}\n")
    line = raised.value.one_line()
    assert line.startswith(f"error: pool.yaml:3: layers[0].{key}: ") and words in line, line
