"""Analytic gradients against five-point central differences in float64, through
Network.loss_and_gradients' own path (the one training runs): every layer type,
both conv ops, stride 1 and 2, padding 0/1/same, rectangular kernels, every loss."""

import numpy as np
import pytest

from convtrain.spec.config import load_config
from convtrain.model.gradcheck import TOLERANCE, check_gradients
from convtrain.layers.conv2d import Conv2d
from convtrain.model.network import Network

CONV_CASES = {
    "corr-s1-p0-square": "{type: conv2d, filters: 3, kernel: 3}",
    "corr-s2-p1-rect": "{type: conv2d, filters: 2, kernel: [3, 2], stride: 2, padding: 1}",
    "corr-s1-same-rect": "{type: conv2d, filters: 2, kernel: [2, 3], padding: same}",
    "corr-s2-same": "{type: conv2d, filters: 2, kernel: 3, stride: 2, padding: same}",
    "corr-rect-stride": "{type: conv2d, filters: 2, kernel: [1, 3], stride: [2, 1], padding: [1, 0]}",
    "conv-s1-p0": "{type: conv2d, filters: 3, kernel: 3, op: convolution}",
    "conv-s2-p1-rect": "{type: conv2d, filters: 2, kernel: [2, 3], stride: 2, padding: 1, op: convolution}",
    "conv-same-nobias": "{type: conv2d, filters: 2, kernel: [3, 2], padding: same, op: convolution, bias: false}",
    # Each algorithm forced on 3x3 stride-1 kernels (auto takes im2col in float64); the
    # input (2, 7, 6) gives odd and even output sizes, so Winograd's last tile is cut.
    "gemm-3x3-same": "{type: conv2d, filters: 3, kernel: 3, padding: same, algorithm: gemm}",
    "winograd-p0": "{type: conv2d, filters: 3, kernel: 3, algorithm: winograd}",
    "winograd-same": "{type: conv2d, filters: 3, kernel: 3, padding: same, algorithm: winograd}",
    "winograd-p2-conv-nobias": "{type: conv2d, filters: 2, kernel: 3, padding: 2, op: convolution, bias: false, algorithm: winograd}",
    "winograd-p0-p2": "{type: conv2d, filters: 2, kernel: 3, padding: [0, 2], algorithm: winograd}",
}

LAYER_CASES = {
    "relu": "{type: relu}",
    "leaky_relu": "{type: leaky_relu, slope: 0.2}",
    "sigmoid": "{type: sigmoid}",
    "tanh": "{type: tanh}",
    "maxpool": "{type: maxpool, size: 2}",
    "maxpool-overlap": "{type: maxpool, size: 3, stride: 1}",
    "maxpool-rect-overlap": "{type: maxpool, size: [3, 2], stride: [2, 1]}",
    "avgpool": "{type: avgpool, size: 2}",
    "avgpool-overlap": "{type: avgpool, size: [2, 3], stride: 1}",
}


def _network(layers, loss="softmax_cross_entropy", input_shape=(2, 7, 6), classes=4):
    text = (f"input: {list(input_shape)}\nloss: {loss}\nseed: 3\nlayers:\n"
            + "".join(f"  - {layer}\n" for layer in layers)
            + f"  - {{type: flatten}}\n  - {{type: dense, units: {classes}}}\n")
    return Network(load_config("gradcheck.yaml", text=text), dtype="float64")


def _check(network, batch=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch,) + network.config.input)
    labels = rng.integers(0, network.config.num_outputs, size=batch)
    return check_gradients(network, x, labels)


def _assert_all_pass(rows):
    for row in rows:
        assert row.checked - row.kinks > 0, f"{row.layer}.{row.argument}: nothing checked"
        assert row.max_rel_err < TOLERANCE, row.describe()


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_gradients(case):
    rows = _check(_network([CONV_CASES[case], "{type: tanh}"]))
    assert {r.layer for r in rows} >= {"conv1", "input"}
    _assert_all_pass(rows)


@pytest.mark.parametrize("case", LAYER_CASES)
def test_layer_gradients(case):
    network = _network(["{type: conv2d, filters: 2, kernel: 2, padding: 1}", LAYER_CASES[case]])
    _assert_all_pass(_check(network))


@pytest.mark.parametrize("loss", ["softmax_cross_entropy", "mse", "hinge"])
def test_loss_gradients(loss):
    network = _network(["{type: conv2d, filters: 2, kernel: 3, stride: 2}", "{type: sigmoid}"],
                       loss=loss)
    _assert_all_pass(_check(network, batch=4))


def test_dense_without_bias_and_stacked_dense():
    text = ("input: [1, 3, 3]\nseed: 1\nlayers:\n  - {type: dense, units: 5, bias: false}\n"
            "  - {type: tanh}\n  - {type: dense, units: 3}\n")
    _assert_all_pass(_check(Network(load_config("d.yaml", text=text), dtype="float64")))


def test_dense_layer_split_among_the_cores():
    """A dense layer of 2^16 weights or more computes its products in blocks
    (convtrain.kernels.dense): 16*4*4 = 256 inputs to 256 units, 4 blocks of 64 units,
    and the batch of 5 in halves of 3 and 2 rows."""
    text = ("input: [16, 4, 4]\nseed: 1\nlayers:\n  - {type: flatten}\n"
            "  - {type: dense, units: 256}\n  - {type: tanh}\n  - {type: dense, units: 3}\n")
    network = Network(load_config("d.yaml", text=text), dtype="float64")
    assert network.layers[1]._split and not network.layers[3]._split
    rng = np.random.default_rng(0)
    # 200 sampled entries of each tensor (every one of the 65,536 weights took 17 s),
    # which reach all four blocks of units and both halves of the batch.
    rows = check_gradients(network, rng.standard_normal((5, 16, 4, 4)),
                           rng.integers(0, 3, size=5), max_entries=200)
    _assert_all_pass(rows)


def test_deep_stack_every_layer_type():
    network = _network([
        "{type: conv2d, filters: 3, kernel: [3, 2], stride: 2, padding: 1, op: convolution}",
        "{type: leaky_relu, slope: 0.1}",
        "{type: maxpool, size: 2, stride: 1}",
        "{type: conv2d, filters: 2, kernel: 2, padding: same}",
        "{type: tanh}",
        "{type: avgpool, size: 2, stride: 1}",
    ], loss="hinge", input_shape=(2, 9, 8))
    _assert_all_pass(_check(network))


def test_training_path_skips_only_the_input_gradient():
    network = _network([CONV_CASES["corr-s2-p1-rect"], "{type: relu}"])
    x = np.random.default_rng(5).standard_normal((3,) + network.config.input)
    labels = np.array([0, 1, 3])
    _, _, dx = network.loss_and_gradients(x, labels)
    full = {(l.name, k): l.grads[k].copy() for l, k in network.parameters()}
    _, _, none = network.loss_and_gradients(x, labels, input_grad=False)
    assert dx is not None and none is None
    for layer, key in network.parameters():
        assert np.array_equal(layer.grads[key], full[(layer.name, key)])


def test_checker_catches_a_wrong_gradient(monkeypatch):
    """A backward that forgets a tiny part of the gradient must fail the check."""
    original = Conv2d.backward

    def slightly_wrong(self, dout, need_dx=True):
        dx = original(self, dout, need_dx)
        self.grads["weight"] = self.grads["weight"] * 1.0001
        return dx

    monkeypatch.setattr(Conv2d, "backward", slightly_wrong)
    rows = _check(_network([CONV_CASES["corr-s2-p1-rect"]]))
    weight = next(r for r in rows if r.layer == "conv1" and r.argument == "weight")
    assert weight.max_rel_err > TOLERANCE


def test_checker_catches_stride_ignored_in_backward(monkeypatch):
    """The classic bug: a backward that ignores the forward's stride."""
    import convtrain.kernels.conv as conv_module  # the layer looks its kernels up at each call

    real = conv_module.conv2d_weight_per_sample
    monkeypatch.setattr(conv_module, "conv2d_weight_per_sample",
                        lambda x, dout, kh, kw, sh, sw, *padding_and_grads:
                        real(x, dout, kh, kw, 1, 1, *padding_and_grads))
    rows = _check(_network([CONV_CASES["corr-s2-same"]]))
    assert any(not r.passed for r in rows)


def test_relu_corner_reported_as_kink_not_failure():
    text = ("input: [1, 2, 2]\nlayers:\n  - {type: relu}\n  - {type: flatten}\n"
            "  - {type: dense, units: 2, weights: [[1, 2, 3, 4], [-1, 0, 1, 2]]}\n")
    network = Network(load_config("k.yaml", text=text), dtype="float64")
    x = np.array([[[[0.0, 1.0], [-1.0, 2.0]]]])
    rows = check_gradients(network, x, np.array([1]))
    inp = next(r for r in rows if r.layer == "input")
    assert inp.kinks == 1 and inp.passed


def test_maxpool_tie_reported_as_kink():
    text = ("input: [1, 2, 2]\nlayers:\n  - {type: maxpool, size: 2}\n  - {type: flatten}\n"
            "  - {type: dense, units: 2, weights: [[1], [-2]]}\n")
    network = Network(load_config("k.yaml", text=text), dtype="float64")
    x = np.array([[[[0.5, 0.5], [0.1, 0.2]]]])
    rows = check_gradients(network, x, np.array([0]))
    inp = next(r for r in rows if r.layer == "input")
    assert inp.kinks == 2 and inp.passed


def test_sampled_check_for_big_tensors():
    network = _network(["{type: conv2d, filters: 6, kernel: 3}"], classes=10)
    rows = check_gradients(network, np.random.default_rng(0).standard_normal((2, 2, 7, 6)),
                           np.array([1, 2]), max_entries=20)
    dense = next(r for r in rows if r.argument == "weight" and r.layer.startswith("dense"))
    assert dense.checked == 20 and dense.total == 10 * 6 * 5 * 4
    _assert_all_pass(rows)
