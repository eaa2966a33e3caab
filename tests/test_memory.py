"""What a step keeps in memory: validation keeps no layer's cache, a training step frees
each layer's cache and (unless asked to keep them) each delta as backward goes down, and
the log's delta norms, taken on the way, equal the norms of the kept deltas."""

import numpy as np

from convtrain.spec.config import load_config
from convtrain.model.network import Network
from convtrain.run.report import norm

RESNET = """input: [2, 8, 8]
seed: 1
layers:
  - {type: conv2d, filters: 4, kernel: 3, padding: 1}
  - {type: batchnorm}
  - {type: relu}
  - type: residual
    name: res
    body:
      - {type: conv2d, name: c1, filters: 4, kernel: 3, padding: 1}
      - {type: batchnorm, name: bn1}
      - {type: relu}
  - {type: maxpool, size: 2}
  - {type: dropout, rate: 0.2}
  - {type: flatten}
  - {type: dense, units: 3}
"""


def _network():
    return Network(load_config("m.yaml", text=RESNET))


def _batch():
    rng = np.random.default_rng(0)
    return rng.standard_normal((6, 2, 8, 8)).astype(np.float32), rng.integers(0, 3, size=6)


def _caches(network):
    return {layer.name: getattr(layer, "cache", None) for layer in network.all_layers()}


def test_validation_keeps_no_cache_and_a_step_frees_them_as_backward_goes():
    network = _network()
    x, y = _batch()
    network.forward(x)
    assert all(cache is None for cache in _caches(network).values())
    network.forward(x, training=True)
    assert _caches(network)["res.c1"] is not None and _caches(network)["relu3"] is not None
    network.mode.keep_deltas = False
    network.loss_and_gradients(x, y)
    assert all(cache is None for cache in _caches(network).values())
    assert network.deltas == {} and network.layers[3].nested_deltas() == {}


def test_the_logs_delta_norms_taken_during_backward_equal_the_kept_deltas_norms():
    x, y = _batch()
    keeping = _network()
    keeping.mode.step = 1
    keeping.loss_and_gradients(x, y)
    kept = {name: norm(delta) for name, delta in keeping.deltas.items()}
    assert "res.bn1" in kept and len(kept) == len(keeping.all_layers())
    lean = _network()
    lean.mode.step = 1  # the same dropout mask
    lean.mode.keep_deltas = False
    norms = {}
    lean.mode.delta_hook = lambda name, delta: norms.update({name: norm(delta)})
    lean.loss_and_gradients(x, y)
    assert norms == kept and lean.deltas == {}
    for (layer, key), (other, _) in zip(keeping.parameters(), lean.parameters()):
        np.testing.assert_array_equal(layer.grads[key], other.grads[key])
