"""hardsigmoid, hardswish, silu, gelu and prelu with PyTorch's semantics, on inputs that
reach past their kinks at ±3 (the guard in test_layer_types.py walks every role on inputs
near 0). Values at the kinks are PyTorch 2.13's, checked by hand against torch: hardswish's
derivative is 0 at x = -3 and 1 at x = 3; hardsigmoid's is 0 at both."""

import numpy as np
import pytest
from nets import assert_onnx_runtime_agrees

from convtrain.errors import ConfigError
from convtrain.model.gradcheck import check_gradients
from convtrain.model.network import Network
from convtrain.spec.config import load_config

KINDS = ["hardsigmoid", "hardswish", "silu", "gelu", "prelu"]


def _network(kind, dtype="float64", before=""):
    config = load_config(f"{kind}.yaml", text=f"""
dtype: {dtype}
input: [3, 4, 4]
layers:{before}
  - {{type: {kind}}}
  - {{type: flatten}}
  - {{type: dense, units: 3}}
""")
    return config, Network(config)


def _spread(shape, seed):
    return np.random.default_rng(seed).uniform(-5, 5, size=shape)


@pytest.mark.parametrize("kind, x, derivative", [
    ("hardsigmoid", [-4, -3, -2.9, 0, 2.9, 3, 4], [0, 0, 1 / 6, 1 / 6, 1 / 6, 0, 0]),
    ("hardswish", [-4, -3, -2.9, 0, 2.9, 3, 4], [0, 0, -2.9 / 3 + 0.5, 0.5, 2.9 / 3 + 0.5, 1, 1]),
])
def test_derivatives_at_and_around_the_kinks_are_pytorchs(kind, x, derivative):
    layer = _network(kind)[1].layers[0]
    values = np.zeros((1, 3, 4, 4))
    values.reshape(-1)[:len(x)] = x
    layer.forward(values)
    dx = layer.backward(np.ones_like(values)).reshape(-1)[:len(x)]
    np.testing.assert_allclose(dx, derivative, rtol=1e-15, atol=0)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("where", ["image", "vector"])
def test_gradients_are_exact_on_inputs_past_the_kinks(kind, where):
    before = "" if where == "image" else "\n  - {type: flatten}\n  - {type: dense, units: 6}"
    _, network = _network(kind, before=before)
    x = _spread((4, 3, 4, 4), 5)
    if where == "image":
        assert (x < -3).any() and (x > 3).any()
    rows = check_gradients(network, x, np.array([0, 1, 2, 1]))
    assert all(row.passed for row in rows), [row.describe() for row in rows]
    if kind == "prelu":
        slopes = next(row for row in rows if row.argument == "weight" and row.layer != "dense3")
        assert slopes.checked == slopes.total and slopes.max_rel_err < 1e-7


@pytest.mark.parametrize("kind", KINDS)
def test_onnx_runtime_agrees_past_the_kinks(kind):
    config, network = _network(kind, dtype="float32")
    x = _spread((7, 3, 4, 4), 6).astype(np.float32)
    assert_onnx_runtime_agrees(config, network, x)


def test_prelu_starts_at_a_quarter_and_takes_one_slope_per_channel():
    _, network = _network("prelu")
    np.testing.assert_array_equal(network.layers[0].params["weight"], [0.25, 0.25, 0.25])
    with pytest.raises(ConfigError) as raised:
        load_config("p.yaml", text="input: [3, 4, 4]\nlayers:\n  - {type: prelu, slope: [1, 2]}\n"
                                   "  - {type: flatten}\n  - {type: dense, units: 2}\n")
    assert raised.value.one_line() == ("error: p.yaml:3: layers[0].slope: has shape [2], "
                                       "expected [3]")
