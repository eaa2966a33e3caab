"""upsample (nearest, bilinear with align_corners false) and conv_transpose2d, PyTorch's
semantics: against NumPy readings, float64 gradient checks through the training path,
planted bugs they catch, ONNX Runtime at batch 1 and 7, and the bad values."""

import numpy as np
import pytest
from nets import assert_onnx_runtime_agrees

from convtrain.errors import ConfigError
from convtrain.layers import base
from convtrain.model.gradcheck import check_gradients
from convtrain.model.network import Network
from convtrain.spec.config import load_config

CASES = {
    "nearest 2": "{type: upsample, scale: 2}",
    "nearest [3, 2]": "{type: upsample, scale: [3, 2]}",
    "bilinear 2": "{type: upsample, scale: 2, mode: bilinear}",
    "bilinear [3, 4]": "{type: upsample, scale: [3, 4], mode: bilinear}",
    "transpose, stride 2, output_padding 1": "{type: conv_transpose2d, filters: 4, kernel: 3, "
                                            "stride: 2, padding: 1, output_padding: 1}",
    "transpose 2x2/2, no bias": "{type: conv_transpose2d, filters: 2, kernel: 2, stride: 2, "
                                "bias: false}",
    "transpose, groups 3, dilation [1, 2]": "{type: conv_transpose2d, filters: 6, kernel: "
                                           "[3, 2], stride: [2, 1], padding: [1, 0], groups: 3, "
                                           "dilation: [1, 2]}",
    "transpose, depthwise": "{type: conv_transpose2d, filters: 3, kernel: 3, groups: 3, "
                            "padding: 1}",
}


def _config(case, dtype="float64"):
    return load_config("u.yaml", text=f"""
dtype: {dtype}
seed: 1
input: [3, 4, 5]
layers:
  - {CASES[case]}
  - {{type: tanh}}
  - {{type: flatten}}
  - {{type: dense, units: 3}}
""")


def _x(batch=3, seed=0):
    return np.random.default_rng(seed).normal(size=(batch, 3, 4, 5))


def _bilinear(x, scale_h, scale_w):
    """PyTorch's bilinear upsampling (align_corners false), one output at a time."""
    n, c, h, w = x.shape
    out = np.empty((n, c, h * scale_h, w * scale_w))
    for i in range(h * scale_h):
        src_i = max((i + 0.5) / scale_h - 0.5, 0.0)
        i0 = int(src_i)
        i1, li = min(i0 + 1, h - 1), src_i - i0
        for j in range(w * scale_w):
            src_j = max((j + 0.5) / scale_w - 0.5, 0.0)
            j0 = int(src_j)
            j1, lj = min(j0 + 1, w - 1), src_j - j0
            out[:, :, i, j] = ((1 - li) * ((1 - lj) * x[:, :, i0, j0] + lj * x[:, :, i0, j1])
                               + li * ((1 - lj) * x[:, :, i1, j0] + lj * x[:, :, i1, j1]))
    return out


def _transposed(x, layer):
    """out[n, f, h·s − p + kh·d, w·s − p + kw·d] += x[n, c, h, w]·K[c, f − group's first]."""
    spec = layer.spec
    weight, (sh, sw), (ph, pw), (dh, dw) = (layer.params["weight"], spec.stride, spec.padding,
                                            spec.dilation)
    channels, per_group = weight.shape[:2]
    full = np.zeros((x.shape[0], spec.filters) + tuple(o + 2 * p for o, p in
                                                      zip(spec.out_shape[1:], (ph, pw))))
    for c in range(channels):
        first = c // (channels // spec.groups) * per_group
        for h in range(x.shape[2]):
            for w in range(x.shape[3]):
                for kh in range(spec.kernel[0]):
                    for kw in range(spec.kernel[1]):
                        row, column = h * sh + kh * dh, w * sw + kw * dw
                        if row < full.shape[2] and column < full.shape[3]:
                            full[:, first:first + per_group, row, column] += (
                                x[:, c, h, w, None] * weight[c, :, kh, kw])
    out = full[:, :, ph:ph + spec.out_shape[1], pw:pw + spec.out_shape[2]]
    return out + (layer.params["bias"][:, None, None] if spec.bias else 0.0)


@pytest.mark.parametrize("case", sorted(CASES))
def test_forward_is_the_numpy_reading(case):
    layer = Network(_config(case)).layers[0]
    x, spec = _x(), layer.spec
    if spec.type == "conv_transpose2d":
        expected = _transposed(x, layer)
    elif spec.mode == "nearest":
        expected = np.repeat(np.repeat(x, spec.scale[0], axis=2), spec.scale[1], axis=3)
    else:
        expected = _bilinear(x, *spec.scale)
    np.testing.assert_allclose(layer.forward(x), expected, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("case", sorted(CASES))
def test_gradients_are_exact(case):
    rows = check_gradients(Network(_config(case)), _x(), np.array([0, 2, 1]))
    assert all(row.passed for row in rows), [row.describe() for row in rows]


def _planted(module, kernel):
    """A wrong version of one backward kernel: what a slip in it would give."""
    right = getattr(base.kernels(module), kernel)
    if kernel == "nearest_backward":
        def wrong(dout, scale_h, scale_w, dx):  # the block's first value, not its sum
            dx[...] = dout[:, :, ::scale_h, ::scale_w]
    elif kernel == "bilinear_backward":
        def wrong(dout, row0, row1, row_weight, col0, col1, col_weight, dx):  # rows swapped
            right(dout, row0, row1, 1.0 - row_weight, col0, col1, col_weight, dx)
    else:  # conv2d_weight_per_sample, which conv_transpose2d's kernel gradient runs on
        def wrong(x, dout, *rest):
            right(x, np.ascontiguousarray(dout[:, ::-1]), *rest)  # channels reversed
    return wrong


@pytest.mark.parametrize("case, module, kernel", [
    ("nearest [3, 2]", "resample", "nearest_backward"),
    ("bilinear [3, 4]", "resample", "bilinear_backward"),
    ("transpose, stride 2, output_padding 1", "conv", "conv2d_weight_per_sample"),
])
def test_a_planted_bug_in_a_backward_fails_the_check(monkeypatch, case, module, kernel):
    monkeypatch.setattr(base.kernels(module), kernel, _planted(module, kernel))
    rows = check_gradients(Network(_config(case)), _x(), np.array([0, 2, 1]))
    assert not all(row.passed for row in rows)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("batch", [1, 7])
def test_onnx_runtime_gives_the_same_scores(case, batch):
    config = _config(case, dtype="float32")
    x = _x(batch, seed=4).astype(np.float32)
    assert_onnx_runtime_agrees(config, Network(config), x)


def test_transpose_weights_are_channels_then_filters():
    spec = _config("transpose, groups 3, dilation [1, 2]").layers[0]
    assert spec.param_shapes() == {"weight": (3, 2, 3, 2), "bias": (6,)}
    assert spec.out_shape == (6, 7, 7)  # (4-1)·2 - 2·1 + (3-1) + 1 rows, (5-1) + 2·(2-1) + 1 columns


@pytest.mark.parametrize("layer, key, words", [
    ("{type: upsample, scale: 0}", "scale", "at least 1"),
    ("{type: upsample, mode: bicubic}", "mode", "choose one of: nearest, bilinear"),
    ("{type: conv_transpose2d, filters: 4, kernel: 3, stride: 2, output_padding: 2}",
     "output_padding", "2 must be smaller than the stride or the dilation"),
    ("{type: conv_transpose2d, filters: 4, kernel: 3, groups: 2}", "groups",
     "2 does not divide the 3 channels of its input"),
    ("{type: conv_transpose2d, filters: 2, kernel: 1, padding: 3}", "padding",
     "leaves no output of the 4x5 input"),
])
def test_bad_values_are_one_line_naming_the_key(layer, key, words):
    with pytest.raises(ConfigError) as raised:
        load_config("u.yaml", text=f"input: [3, 4, 5]\nlayers:\n  - {layer}\n"
                                   "  - {type: flatten}\n  - {type: dense, units: 2}\n")
    line = raised.value.one_line()
    assert line.startswith(f"error: u.yaml:3: layers[0].{key}: ") and words in line, line


def test_upsample_of_a_vector_is_one_line():
    with pytest.raises(ConfigError) as raised:
        load_config("u.yaml", text="input: [3, 4, 5]\nlayers:\n  - {type: flatten}\n"
                                   "  - {type: upsample, scale: 2}\n  - {type: dense, units: 2}\n")
    line = raised.value.one_line()
    assert line.startswith("error: u.yaml:4: layers[1]: upsample needs an image input"), line
