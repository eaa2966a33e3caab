"""The gradient checks can fail: a planted bug in each backward kernel of the classic-CNN
layers (an output 5% off) fails the float64 finite-difference check through the training
path. The merges, upsample and conv_transpose2d plant their own (test_branches.py,
test_upsample_transpose.py)."""

import numpy as np
import pytest

from convtrain.layers import base
from convtrain.model.gradcheck import check_gradients
from convtrain.model.network import Network
from convtrain.spec.config import load_config

# case: (the layer under test, kernel module, backward kernel, index of the argument it
# writes). A 1x1 conv before it makes its input delta one that training needs.
PLANTED = {
    "maxpool padding, ceil_mode": ("{type: maxpool, size: 3, stride: 2, padding: 1, "
                                   "ceil_mode: true}", "pool", "maxpool_backward", 2),
    "avgpool padding, count_include_pad false": (
        "{type: avgpool, size: 3, stride: 2, padding: 1, count_include_pad: false}", "pool",
        "avgpool_padded_backward", 8),
    "conv2d groups 2: input delta": ("{type: conv2d, filters: 4, kernel: 3, groups: 2, "
                                     "padding: 1}", "conv", "conv2d_backward_input", 8),
    "conv2d groups 2, dilation 2: kernel gradient": (
        "{type: conv2d, filters: 4, kernel: 3, groups: 2, dilation: 2, padding: 2}", "conv",
        "conv2d_weight_per_sample", -1),
    "depthwise: input delta": ("{type: conv2d, filters: 4, kernel: 3, groups: 4, padding: 1}",
                               "depthwise", "depthwise_backward_input", -1),
    "depthwise: kernel gradient": ("{type: conv2d, filters: 8, kernel: 3, groups: 4, "
                                   "stride: 2}", "depthwise", "depthwise_weight_per_sample", -1),
    "channel_shuffle": ("{type: channel_shuffle, groups: 2}", "channels", "scatter_channels",
                        -1),
    "lrn": ("{type: lrn, size: 3, alpha: 0.5}", "lrn", "lrn_backward", -1),
    "relu6": ("{type: relu6}", "elementwise", "clip_backward", -1),
    "hardsigmoid": ("{type: hardsigmoid}", "elementwise", "hardsigmoid_backward", -1),
    "hardswish": ("{type: hardswish}", "elementwise", "hardswish_backward", -1),
    "silu": ("{type: silu}", "elementwise", "silu_backward", -1),
    "gelu": ("{type: gelu}", "elementwise", "gelu_backward", -1),
    "prelu: input delta": ("{type: prelu}", "elementwise", "prelu_backward", 3),
    "prelu: slope gradient": ("{type: prelu}", "elementwise", "prelu_backward", 4),
}


def _network(layer):
    return Network(load_config("p.yaml", text=f"""
dtype: float64
seed: 2
input: [4, 6, 6]
layers:
  - {{type: conv2d, filters: 4, kernel: 1}}
  - {{type: tanh}}
  - {layer}
  - {{type: flatten}}
  - {{type: dense, units: 3}}
"""))


def _check(network):
    x = 3 * np.random.default_rng(0).normal(size=(3, 4, 6, 6))  # past relu6's and ±3's kinks
    return check_gradients(network, x, np.array([0, 2, 1]))


@pytest.mark.parametrize("case", sorted(PLANTED))
def test_the_check_passes_and_a_planted_bug_fails_it(case, monkeypatch):
    layer, module, kernel, written = PLANTED[case]
    rows = _check(_network(layer))
    assert all(row.passed for row in rows), [row.describe() for row in rows]
    right = getattr(base.kernels(module), kernel)
    calls = []

    def five_percent_off(*args):
        right(*args)
        args[written][...] *= 1.05
        calls.append(kernel)

    monkeypatch.setattr(base.kernels(module), kernel, five_percent_off)
    rows = _check(_network(layer))
    assert calls, f"{kernel} was never called"
    assert not all(row.passed for row in rows)
