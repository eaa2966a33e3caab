"""relu6 = min(max(x, 0), 6) with PyTorch's semantics: the derivative is 1 strictly inside
(0, 6) and 0 elsewhere, at x = 0 and x = 6 too (torch's hardtanh_backward); a NaN passes
through the forward, and its gradient through the backward, as torch's (whose relu6 of
these inputs gave the same bits, checked by hand with torch 2.13). Its other roles (trace, export, compile estimate) are walked with every
type's in test_layer_types.py; here both ends of the clip are exercised."""

import numpy as np
import pytest
from nets import assert_onnx_runtime_agrees

from convtrain.errors import ConfigError
from convtrain.model.gradcheck import check_gradients
from convtrain.model.network import Network
from convtrain.spec.config import load_config

NET = """
dtype: {dtype}
input: [1, 4, 4]
layers:
  - {{type: relu6}}
  - {{type: flatten}}
  - {{type: dense, units: 3}}
"""


def _network(dtype):
    config = load_config("relu6.yaml", text=NET.format(dtype=dtype))
    return config, Network(config)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_values_and_derivative_as_pytorch_at_and_beyond_both_ends(dtype):
    layer = _network(dtype)[1].layers[0]
    x = np.array([-2.0, -0.0, 0.0, 0.5, 5.99, 6.0, 6.5, np.nan, 1, 2, 3, 4, 5, 7, 8, -9],
                 dtype=dtype).reshape(1, 1, 4, 4)
    out = layer.forward(x).reshape(-1)
    expected = [0, 0, 0, 0.5, 5.99, 6, 6, np.nan, 1, 2, 3, 4, 5, 6, 6, 0]
    np.testing.assert_array_equal(out, np.array(expected, dtype=dtype))
    dx = layer.backward(np.full((1, 1, 4, 4), 3.0, dtype=dtype)).reshape(-1)
    np.testing.assert_array_equal(dx, [0, 0, 0, 3, 3, 0, 0, 3, 3, 3, 3, 3, 3, 0, 0, 0])
    assert out.dtype == dx.dtype == np.dtype(dtype)


def test_gradients_are_exact_on_inputs_spread_over_both_ends():
    _, network = _network("float64")
    x = np.random.default_rng(3).uniform(-3, 9, size=(5, 1, 4, 4))
    assert (x < 0).any() and (x > 6).any() and ((x > 0) & (x < 6)).any()
    rows = check_gradients(network, x, np.array([0, 1, 2, 0, 1]))
    assert all(row.passed for row in rows), [row.describe() for row in rows]
    inputs = next(row for row in rows if row.layer == "input")
    assert inputs.checked == x.size and inputs.kinks == 0  # no entry within 2e-4 of an end


def test_onnx_runtime_clips_at_both_ends_as_the_network_does():
    config, network = _network("float32")
    x = np.random.default_rng(4).uniform(-3, 9, size=(6, 1, 4, 4)).astype(np.float32)
    assert_onnx_runtime_agrees(config, network, x, atol=1e-6)


def test_it_takes_no_keys():
    with pytest.raises(ConfigError, match="max"):
        load_config("relu6.yaml", text="input: [1, 4, 4]\nlayers:\n  - {type: relu6, max: 5}\n"
                                       "  - {type: flatten}\n  - {type: dense, units: 2}\n")
