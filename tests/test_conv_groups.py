"""conv2d's groups (depthwise at groups = C, by kernels of its own) and dilation, PyTorch's
semantics: against a plain NumPy reading, float64 gradient checks through the training
path, ONNX Runtime at batch 1 and 7, Winograd never chosen for them, and the bad values."""

import numpy as np
import pytest
from nets import assert_onnx_runtime_agrees

from convtrain.errors import ConfigError
from convtrain.model.gradcheck import check_gradients
from convtrain.model.network import Network
from convtrain.spec.config import load_config

CASES = {
    "groups 2": "filters: 4, kernel: 3, groups: 2, padding: 1",
    "depthwise": "filters: 4, kernel: 3, groups: 4, padding: 1",
    "depthwise x2": "filters: 8, kernel: 3, groups: 4, stride: 2, padding: 1",
    "dilation 2": "filters: 3, kernel: 3, dilation: 2, padding: 2",
    "depthwise, dilation 2, convolution": "filters: 4, kernel: 3, groups: 4, dilation: 2, "
                                          "padding: 2, op: convolution, stride: [1, 2]",
    "dilation [2, 1], groups 2, convolution": "filters: 2, kernel: [3, 2], dilation: [2, 1], "
                                             "groups: 2, op: convolution",
    "padding [top, left, bottom, right]": "filters: 3, kernel: 3, padding: [2, 0, 1, 1], "
                                          "stride: 2",
    "padding of four, winograd": "filters: 3, kernel: 3, padding: [0, 2, 1, 0], "
                                 "algorithm: winograd",
    "padding of four, depthwise": "filters: 4, kernel: 3, groups: 4, padding: [1, 0, 0, 2]",
}


def _config(case, dtype="float64", size=7):
    return load_config("g.yaml", text=f"""
dtype: {dtype}
input: [4, {size}, {size}]
layers:
  - {{type: conv2d, {CASES[case]}}}
  - {{type: tanh}}
  - {{type: flatten}}
  - {{type: dense, units: 3}}
""")


def _reference(x, layer):
    """out[n, f, i, j] = b[f] + Σ over c in f's group, kh, kw of w[f, c, kh, kw] ·
    xp[n, g·C/G + c, i·SH + kh·DH, j·SW + kw·DW]."""
    spec = layer.spec
    w = layer.correlation_kernel()
    top, bottom, left, right = spec.padding
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    filters, per_group = w.shape[:2]
    out = np.zeros((x.shape[0],) + spec.out_shape)
    for f in range(filters):
        first = f // (filters // spec.groups) * per_group
        for i in range(spec.out_shape[1]):
            for j in range(spec.out_shape[2]):
                for kh in range(spec.kernel[0]):
                    for kw in range(spec.kernel[1]):
                        row = i * spec.stride[0] + kh * spec.dilation[0]
                        column = j * spec.stride[1] + kw * spec.dilation[1]
                        out[:, f, i, j] += xp[:, first:first + per_group, row, column] @ w[
                            f, :, kh, kw]
        out[:, f] += layer.params["bias"][f]
    return out


@pytest.mark.parametrize("case", sorted(CASES))
def test_forward_is_the_grouped_dilated_sum(case):
    layer = Network(_config(case)).layers[0]
    # groups = channels: the depthwise kernels of their own; any other groups: im2col's
    expected = ("depthwise" if layer.spec.groups == 4 else
                "winograd" if "winograd" in case else "gemm")
    assert layer.algorithm == layer.weight_algorithm == expected
    x = np.random.default_rng(0).normal(size=(2, 4, 7, 7))
    np.testing.assert_allclose(layer.forward(x), _reference(x, layer), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", sorted(CASES))
def test_gradients_are_exact(case):
    x = np.random.default_rng(1).normal(size=(3, 4, 7, 7))
    rows = check_gradients(Network(_config(case)), x, np.array([0, 2, 1]))
    assert all(row.passed for row in rows), [row.describe() for row in rows]


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("batch", [1, 7])
def test_onnx_runtime_gives_the_same_scores(case, batch):
    config = _config(case, dtype="float32")
    network = Network(config)
    x = np.random.default_rng(2).normal(size=(batch, 4, 7, 7)).astype(np.float32)
    assert_onnx_runtime_agrees(config, network, x)


def test_four_numbers_of_padding_are_top_left_bottom_right():
    spec = _config("padding [top, left, bottom, right]").layers[0]
    assert spec.padding == (2, 1, 0, 1)  # kept as (top, bottom, left, right)
    assert spec.out_shape == (3, 4, 3)  # (7 + 3 - 3) // 2 + 1 rows, (7 + 1 - 3) // 2 + 1 columns


def test_a_depthwise_layer_has_one_kernel_per_channel():
    spec = _config("depthwise").layers[0]
    assert spec.param_shapes() == {"weight": (4, 1, 3, 3), "bias": (4,)}
    assert spec.flops() == 2 * 4 * 7 * 7 * 9


@pytest.mark.parametrize("layer, key, words", [
    ("{type: conv2d, filters: 4, kernel: 3, groups: 3}", "groups",
     "3 does not divide the 4 channels of its input"),
    ("{type: conv2d, filters: 6, kernel: 3, groups: 4}", "groups",
     "4 does not divide the 6 filters"),
    ("{type: conv2d, filters: 4, kernel: 3, dilation: 4}", "kernel",
     "dilated kernel 9x9 is larger than its input 7x7"),
    ("{type: conv2d, filters: 4, kernel: 3, groups: 2, algorithm: winograd}", "algorithm",
     "groups 2"),
    ("{type: conv2d, filters: 4, kernel: 3, padding: [1, 1, 1]}", "padding",
     "must be an integer or a pair [h, w] or four [top, left, bottom, right], got a list of 3"),
    ("{type: conv2d, filters: 4, kernel: 3, padding: [1, 0, -1, 1]}", "padding",
     "at least 0"),
])
def test_bad_values_are_one_line_naming_the_key(layer, key, words):
    with pytest.raises(ConfigError) as raised:
        load_config("g.yaml", text=f"input: [4, 7, 7]\nlayers:\n  - {layer}\n"
                                   "  - {type: flatten}\n  - {type: dense, units: 2}\n")
    line = raised.value.one_line()
    assert line.startswith(f"error: g.yaml:3: layers[0].{key}: ") and words in line, line
