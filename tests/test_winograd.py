"""Winograd F(2x2, 3x3) convolutions: which layers take them, their exactness against the
naive convolution on generated shapes, and their float32 error against float64.

The float64 gradient checks of each algorithm forced are in test_gradients.py; thread
and process bit-identity with Winograd layers in test_modern_layers.py and
test_distributed.py."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from naive import correlate

from convtrain.spec.config import ConfigError, load_config
from convtrain.model.gradcheck import TOLERANCE, check_gradients
from convtrain.model.network import Network

UNIT_ROUNDOFF_32 = 2.0 ** -24


def _network(input_shape, layer, dtype, seed=3):
    text = (f"input: {list(input_shape)}\nseed: {seed}\nlayers:\n  - {layer}\n"
            "  - {type: flatten}\n  - {type: dense, units: 3}\n")
    return Network(load_config("winograd.yaml", text=text), dtype=dtype)


def _config_network(input_shape, layer, dtype):
    """A network of a config that asks for `dtype`, computed in `dtype`."""
    text = (f"input: {list(input_shape)}\ndtype: {dtype}\nlayers:\n  - {layer}\n"
            "  - {type: flatten}\n  - {type: dense, units: 3}\n")
    return Network(load_config("winograd.yaml", text=text))


SAME_3x3 = "{type: conv2d, kernel: 3, padding: same, filters: "


@pytest.mark.parametrize("input_shape, layer, dtype, chosen", [
    ((16, 32, 32), SAME_3x3 + "16}", "float32", ("winograd", "winograd")),  # 16 x 32
    ((32, 16, 16), SAME_3x3 + "64}", "float32", ("winograd", "winograd")),  # 32 x 16
    ((16, 16, 16), SAME_3x3 + "16}", "float32", ("winograd", "winograd")),  # 16 x 16 = 256
    ((32, 12, 12), SAME_3x3 + "32}", "float32", ("winograd", "gemm")),  # a side under 16
    ((64, 8, 8), SAME_3x3 + "64}", "float32", ("winograd", "gemm")),
    ((128, 4, 4), SAME_3x3 + "128}", "float32", ("winograd", "gemm")),
    ((16, 12, 12), SAME_3x3 + "16}", "float32", ("gemm", "gemm")),  # 16 x 12 < 256
    ((32, 4, 4), SAME_3x3 + "32}", "float32", ("gemm", "gemm")),  # 32 x 4 < 256
    ((256, 2, 2), SAME_3x3 + "256}", "float32", ("gemm", "gemm")),  # a side under 4
    ((32, 40, 12), SAME_3x3 + "32}", "float32", ("winograd", "gemm")),  # the smaller side
    ((64, 32, 32), SAME_3x3 + "8}", "float32", ("gemm", "gemm")),  # 8 filters
    ((3, 32, 32), SAME_3x3 + "64}", "float32", ("gemm", "gemm")),  # 3 channels in
    ((16, 32, 32), SAME_3x3 + "16}", "float64", ("gemm", "gemm")),
    ((16, 32, 32), "{type: conv2d, filters: 16, kernel: 3, stride: 2}", "float32",
     ("gemm", "gemm")),
    ((16, 32, 32), "{type: conv2d, filters: 16, kernel: 5}", "float32", ("gemm", "gemm")),
    ((16, 32, 32), SAME_3x3 + "16, algorithm: gemm}", "float32", ("gemm", "gemm")),
    ((2, 5, 5), SAME_3x3 + "2, algorithm: winograd}", "float64", ("winograd", "winograd")),
])
def test_auto_takes_winograd_where_the_layer_is_wide_and_large_enough(input_shape, layer,
                                                                      dtype, chosen):
    conv = _config_network(input_shape, layer, dtype).layers[0]
    assert (conv.algorithm, conv.weight_algorithm) == chosen


def test_the_algorithm_follows_the_configs_dtype_so_gradcheck_checks_the_runs_path():
    config = load_config("winograd.yaml", text=f"input: [16, 32, 32]\nlayers:\n"
                                                f"  - {SAME_3x3}16}}\n")
    assert Network(config, dtype="float64").layers[0].algorithm == "winograd"


@pytest.mark.parametrize("layer, words", [
    ("{type: conv2d, filters: 2, kernel: 5, algorithm: winograd}", "a 5x5 kernel, stride 1"),
    ("{type: conv2d, filters: 2, kernel: 3, stride: 2, algorithm: winograd}", "stride 2"),
    ("{type: conv2d, filters: 2, kernel: 3, padding: 3, algorithm: winograd}", "padding 3:"),
    ("{type: conv2d, filters: 2, kernel: 3, padding: [0, 3], algorithm: winograd}",
     "padding [0, 3]:"),
])
def test_winograd_forced_where_it_cannot_compute_is_one_line_naming_the_key(layer, words):
    with pytest.raises(ConfigError) as error:
        _network((1, 9, 9), layer, "float64")
    message = error.value.one_line()
    assert message.startswith("error: winograd.yaml:4: layers[0].algorithm: winograd computes")
    assert words in message
    assert "use auto or gemm" in message and "\n" not in message


@st.composite
def winograd_layers(draw):
    padding = draw(st.one_of(st.just("same"), st.lists(st.integers(0, 2), min_size=2,
                                                        max_size=2)))
    pads = (1, 1) if padding == "same" else padding
    h = draw(st.integers(max(1, 3 - 2 * pads[0]), 9))
    w = draw(st.integers(max(1, 3 - 2 * pads[1]), 9))
    c, f = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    op = draw(st.sampled_from(["correlation", "convolution"]))
    bias = draw(st.booleans())
    layer = (f"{{type: conv2d, filters: {f}, kernel: 3, op: {op}, bias: {str(bias).lower()}, "
             f"padding: {padding if padding == 'same' else list(padding)}, "
             "algorithm: winograd}")
    return (c, h, w), layer


@settings(max_examples=15, deadline=None)
@given(winograd_layers(), st.integers(1, 3))
def test_generated_winograd_layers_match_the_naive_convolution(case, batch):
    shape, layer = case
    network = _network(shape, layer, "float64")
    conv = network.layers[0]
    x = np.random.default_rng(batch).standard_normal((batch,) + shape)
    weight = conv.params["weight"]
    if conv.spec.op == "convolution":
        weight = weight[:, :, ::-1, ::-1]
    bias = conv.params.get("bias", np.zeros(conv.spec.filters))
    expected = correlate(x, weight, bias, (1, 1), conv.spec.padding)
    np.testing.assert_allclose(conv.forward(x), expected, rtol=1e-11, atol=1e-12)


@settings(max_examples=8, deadline=None)
@given(winograd_layers())
def test_generated_winograd_layers_pass_the_gradient_check(case):
    shape, layer = case
    network = _network(shape, layer, "float64")
    rng = np.random.default_rng(0)
    rows = check_gradients(network, rng.standard_normal((2,) + shape),
                           rng.integers(0, 3, size=2))
    for row in rows:
        assert row.max_rel_err < TOLERANCE, row.describe()


def _layer_results(conv, x, dout):
    out = conv.forward(x)
    dx = conv.backward(dout)
    return out, dx, conv.grads["weight"]


def _error_in_units(approx, exact, magnitude):
    """|approx - exact| in units of float32's unit roundoff times the sum of the absolute
    terms: the scale at which any float32 sum of those terms is expected to err."""
    return np.abs(approx.astype(np.float64) - exact) / (UNIT_ROUNDOFF_32 * magnitude)


@pytest.mark.parametrize("channels, size", [(16, 8), (32, 16), (64, 8)])
def test_winograd_float32_error_is_within_a_few_roundoffs_of_the_terms_it_sums(channels, size):
    """Forward, delta and kernel gradient of float32 Winograd against float64 im2col on
    the same (float32-representable) numbers. Bound: 8 unit roundoffs of the sum of the
    absolute terms, elementwise, and a root-mean-square under 1. Any float32 sum of n
    terms may err by up to about n roundoffs of that sum (n = 9*C = 144..576 here), and
    im2col's own float32 error measures 2-4; Winograd's transforms only add or halve
    (entries 0, ±1, ±1/2), and it measured 1.8-2.9. So float32 training loses no more
    to Winograd than to the order of a sum, which the tests here already allow."""
    layer = f"{{type: conv2d, filters: {channels}, kernel: 3, padding: same, bias: false"
    shape, batch = (channels, size, size), 4
    fast = _network(shape, layer + ", algorithm: winograd}", "float32").layers[0]
    exact = _network(shape, layer + ", algorithm: gemm}", "float64").layers[0]
    absolute = _network(shape, layer + ", algorithm: gemm}", "float64").layers[0]
    rng = np.random.default_rng(channels)
    x = rng.standard_normal((batch,) + shape).astype(np.float32)
    dout = rng.standard_normal((batch,) + fast.spec.out_shape).astype(np.float32)
    exact.params["weight"] = fast.params["weight"].astype(np.float64)
    absolute.params["weight"] = np.abs(exact.params["weight"])
    got = _layer_results(fast, x, dout)
    want = _layer_results(exact, x.astype(np.float64), dout.astype(np.float64))
    scale = _layer_results(absolute, np.abs(x).astype(np.float64),
                           np.abs(dout).astype(np.float64))
    for name, approx, truth, magnitude in zip(("forward", "delta", "kernel gradient"), got,
                                               want, scale):
        error = _error_in_units(approx, truth, magnitude)
        assert error.max() < 8 and np.sqrt(np.mean(error ** 2)) < 1, (
            f"{name}: max {error.max():.2f}, rms {np.sqrt(np.mean(error ** 2)):.2f} roundoffs")


def test_time_and_summary_name_the_layers_winograd_computes(write_config):
    import json

    from click.testing import CliRunner

    from convtrain.cli import main

    config = write_config("input: [32, 12, 12]\nlayers:\n"
                          "  - {type: conv2d, name: auto, filters: 32, kernel: 3, padding: 1}\n"
                          "  - {type: conv2d, name: forced, filters: 4, kernel: 3, "
                          "algorithm: winograd}\n"
                          "  - {type: conv2d, name: plain, filters: 4, kernel: 3}\n")
    result = CliRunner().invoke(main, ["time", config, "--iters", "1", "--batch", "2"])
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split()[1:-2] for line in result.stdout.splitlines()[2:5]}
    assert rows == {"auto": ["conv2d", "winograd"], "forced": ["conv2d", "winograd+dw"],
                    "plain": ["conv2d"]}
    assert "winograd: the forward pass and the delta by Winograd's" in result.stdout
    result = CliRunner().invoke(main, ["summary", config])
    rows = {line.split()[0]: line.split()[1:-5] for line in result.stdout.splitlines()[2:5]}
    assert rows == {"auto": ["conv2d", "winograd"], "forced": ["conv2d", "winograd+dw"],
                    "plain": ["conv2d"]}
    assert result.stdout.rstrip().endswith("+dw: the kernel gradient by Winograd too, which "
                                           "`algorithm: auto` chooses only for outputs of at "
                                           "least 16x16")
    result = CliRunner().invoke(main, ["time", config, "--iters", "1", "--batch", "2",
                                       "--format", "json"])
    layers = json.loads(result.stdout)["layers"]
    assert layers[0]["algorithms"] == {"forward": "winograd", "delta": "winograd",
                                       "kernel_gradient": "gemm"}
