"""Every registered layer type, through every role its module holds (convtrain/layers/):
its spec parses and infers shapes, its compute gives exact gradients (float64 central
differences through the training path), `trace` prints its formulas, `export` writes ONNX
nodes that ONNX Runtime runs to the same scores, and every kernel it calls has a compile-time
estimate. A new type without an EXAMPLE here, or missing any role, fails."""

import numpy as np
import pytest
from nets import assert_onnx_runtime_agrees

from convtrain.layers import LAYER_TYPES, walk
from convtrain.model.gradcheck import check_gradients
from convtrain.model.network import Network
from convtrain.run import compiling
from convtrain.spec.config import load_config
from convtrain.views.trace import run_trace
from convtrain.views.trace_formulas import Symbols

# One layer of each type, as YAML, on an input of [2, 6, 6]; a flatten and a dense layer
# follow it so that it is trained as a classifier's inner layer.
EXAMPLE = {
    "conv2d": "{type: conv2d, filters: 3, kernel: 3, stride: 2, padding: 1}",
    "conv_transpose2d": "{type: conv_transpose2d, filters: 3, kernel: 3, stride: 2, padding: 1, "
                        "output_padding: 1}",
    "upsample": "{type: upsample, scale: 2, mode: bilinear}",
    "dense": "{type: dense, units: 4}",
    "relu": "{type: relu}",
    "leaky_relu": "{type: leaky_relu, slope: 0.1}",
    "relu6": "{type: relu6}",
    "hardsigmoid": "{type: hardsigmoid}",
    "hardswish": "{type: hardswish}",
    "silu": "{type: silu}",
    "gelu": "{type: gelu}",
    "prelu": "{type: prelu, slope: [0.25, -0.5]}",
    "sigmoid": "{type: sigmoid}",
    "tanh": "{type: tanh}",
    "maxpool": "{type: maxpool, size: 3, stride: 2}",
    "avgpool": "{type: avgpool, size: 2}",
    "globalavgpool": "{type: globalavgpool}",
    "flatten": "{type: flatten}",
    "batchnorm": "{type: batchnorm}",
    "lrn": "{type: lrn, size: 3, alpha: 0.5, beta: 0.75, k: 2}",
    "dropout": "{type: dropout, rate: 0.25}",
    "channel_shuffle": "{type: channel_shuffle, groups: 2}",
    "channel_pad": "{type: channel_pad, before: 1, after: 2}",
    "channel_slice": "{type: channel_slice, start: 1, stop: 2}",
    "branches": "{type: branches, merge: concat, paths: [[{type: conv2d, filters: 1, kernel: 1}, "
                "{type: tanh}], []]}",
    "residual": "{type: residual, body: [{type: conv2d, filters: 2, kernel: 3, padding: 1}, "
                "{type: tanh}]}",
}


def test_every_registered_type_has_an_example():
    assert set(EXAMPLE) == set(LAYER_TYPES), "add the new type to EXAMPLE"


def _config(kind, dtype="float64"):
    sample = np.round(_batch(2)[0][0], 3).tolist()
    return load_config(f"{kind}.yaml", text=f"""
dtype: {dtype}
seed: 4
input: [2, 6, 6]
layers:
  - {EXAMPLE[kind]}
  - {{type: flatten}}
  - {{type: dense, units: 3}}
trace: {{input: {sample}, target: 1}}
""")


def _batch(seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(4, 2, 6, 6)), np.array([0, 1, 2, 1])


@pytest.mark.parametrize("kind", sorted(LAYER_TYPES))
def test_spec_and_compute_agree_and_the_gradients_are_exact(kind):
    config = _config(kind)
    spec = config.layers[0]
    assert type(spec) is LAYER_TYPES[kind] and spec.type == kind
    network = Network(config)
    layer = network.layers[0]
    assert type(layer) is spec.compute
    assert {k: v.shape for k, v in layer.params.items()} == spec.param_shapes()
    assert {k: v.shape for k, v in layer.buffers.items()} == spec.buffer_shapes()
    x, y = _batch()
    network.mode.training = True
    assert network.forward(x, training=True).shape == (4, 3)
    assert layer.forward(x).shape == (4,) + spec.out_shape
    rows = check_gradients(network, x, y)
    assert rows and all(row.passed for row in rows), [r.describe() for r in rows]


@pytest.mark.parametrize("kind", sorted(LAYER_TYPES))
def test_trace_prints_its_forward_and_backward_formulas(kind):
    config = _config(kind)
    symbols = Symbols(config)
    steps = run_trace(config)["steps"]
    for spec in walk(config.layers[:1]):
        mine = {step["what"]: step["formula"] for step in steps if step["layer"] == spec.name}
        assert mine["output"] == spec.forward_formula(symbols)
        kernel_grad, input_delta = spec.backward_formulas(symbols, False)
        assert mine["input_delta"] == input_delta
        assert mine.get("kernel_grad") == kernel_grad
        assert (kernel_grad is not None) == bool(spec.param_shapes())


@pytest.mark.parametrize("kind", sorted(LAYER_TYPES))
def test_export_runs_in_onnx_runtime_to_the_same_scores(kind):
    config = _config(kind, dtype="float32")
    network = Network(config)
    x, y = _batch(1)
    for _ in range(2):  # trained a little: running statistics and weights away from their start
        network.loss_and_gradients(x.astype(np.float32), y)
    assert_onnx_runtime_agrees(config, network, x.astype(np.float32), rtol=1e-4)


@pytest.mark.parametrize("kind", sorted(LAYER_TYPES))
def test_every_kernel_it_calls_has_a_compile_estimate(kind):
    """What a training step of this layer (and the layers inside it) calls, recorded without
    running a kernel, against the compile_s of its compute class (and theirs)."""
    layer = Network(_config(kind, dtype="float32")).layers[0]
    x, _ = _batch()
    called = []

    def recorder(dispatcher):
        def record(*args):
            called.append(dispatcher.py_func.__name__)
        return record

    layer.mode.training = True
    with compiling._kernels_replaced(recorder), np.errstate(all="ignore"):
        out = layer.forward(x.astype(np.float32))
        layer.backward(np.ones_like(out))
        layer.mode.training = False
        layer.forward(x.astype(np.float32))
    estimated = {}
    for inner in [layer] + layer.children():
        estimated.update(type(inner).compile_s)
    assert set(called) <= set(estimated), sorted(set(called) - set(estimated))
    kernels = {d.py_func.__name__ for d in compiling.kernel_dispatchers()}
    assert set(type(layer).compile_s) <= kernels, "an estimate for a kernel that is gone"
