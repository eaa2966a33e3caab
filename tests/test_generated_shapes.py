"""Hypothesis-generated conv and pool layers: fast kernels against the naive twins, and the
float64 gradient check, on shapes nobody chose by hand."""

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from naive import correlate

from convtrain.spec.config import load_config
from convtrain.model.gradcheck import check_gradients
from convtrain.model.network import Network


@st.composite
def conv_layers(draw):
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    padding = draw(st.one_of(st.just("same"), st.lists(st.integers(0, 2), min_size=2,
                                                        max_size=2)))
    pads = [0, 0] if padding == "same" else padding
    h = draw(st.integers(max(1, kh - 2 * pads[0]), 9))
    w = draw(st.integers(max(1, kw - 2 * pads[1]), 9))
    c, f = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    op = draw(st.sampled_from(["correlation", "convolution"]))
    layer = (f"{{type: conv2d, filters: {f}, kernel: [{kh}, {kw}], stride: [{sh}, {sw}], "
             f"padding: {padding if padding == 'same' else list(padding)}, op: {op}}}")
    return (c, h, w), layer


def _network(shape, layers, dtype="float64"):
    text = (f"input: {list(shape)}\ndtype: {dtype}\nlayers:\n"
            + "".join(f"  - {layer}\n" for layer in layers))
    return Network(load_config("generated.yaml", text=text))


@settings(max_examples=40, deadline=None)
@given(conv_layers(), st.integers(1, 3))
def test_generated_conv_forward_matches_naive(case, batch):
    shape, layer = case
    network = _network(shape, [layer])
    conv = network.layers[0]
    x = np.random.default_rng(batch).standard_normal((batch,) + shape)
    weight = conv.params["weight"]
    if conv.spec.op == "convolution":
        weight = weight[:, :, ::-1, ::-1]
    expected = correlate(x, weight, conv.params["bias"], conv.spec.stride, conv.spec.padding)
    np.testing.assert_allclose(network.forward(x).reshape(expected.shape), expected,
                               rtol=1e-11, atol=1e-12)


@settings(max_examples=15, deadline=None)
@given(conv_layers(), st.sampled_from(["maxpool", "avgpool", None]))
def test_generated_stacks_pass_the_gradient_check(case, pool):
    shape, layer = case
    layers = [layer, "{type: tanh}"]
    network = _network(shape, layers)
    out_shape = network.config.layers[-1].out_shape
    if pool and out_shape[1] >= 2 and out_shape[2] >= 2:
        layers.append(f"{{type: {pool}, size: 2, stride: 1}}")
    layers += ["{type: flatten}", "{type: dense, units: 3}"]
    network = _network(shape, layers)
    rng = np.random.default_rng(0)
    rows = check_gradients(network, rng.standard_normal((2,) + shape), np.array([0, 2]),
                           max_entries=12)
    for row in rows:
        assert row.passed, row.describe()


@settings(max_examples=15, deadline=None)
@given(conv_layers(), st.sampled_from(["batchnorm", "residual", "globalavgpool", "dropout"]),
       st.booleans(), st.integers(2, 3))
def test_generated_stacks_with_the_modern_layers_pass_the_gradient_check(case, modern,
                                                                         projection, batch):
    """A generated conv, then batchnorm, a residual block (identity, or a 1x1 projection
    shortcut with batchnorm), globalavgpool or dropout: each through the gradient check."""
    shape, layer = case
    channels = _network(shape, [layer]).config.layers[-1].out_shape[0]
    extra = {
        "batchnorm": ["{type: batchnorm, gamma: " + str([1.2] * channels) + "}"],
        "globalavgpool": ["{type: globalavgpool}"],
        "dropout": ["{type: dropout, rate: 0.3}"],
        "residual": ["{type: residual, body: [{type: conv2d, filters: 4, kernel: 3, padding: 1}, "
                     "{type: batchnorm}, {type: tanh}]"
                     + (", shortcut: [{type: conv2d, filters: 4, kernel: 1}, {type: batchnorm}]}"
                        if projection or channels != 4 else "}")],
    }[modern]
    layers = [layer, "{type: tanh}"] + extra + ["{type: flatten}", "{type: dense, units: 3}"]
    network = _network(shape, layers)
    network.mode.step = 5
    x = np.random.default_rng(1).standard_normal((batch,) + shape)
    # A conv whose windows see only padding gives every sample the same output; a batchnorm
    # of values that do not vary divides by √eps, where the loss curves so sharply that no
    # finite difference step is right (its slope at the point is 0, and the analytic 0 is).
    first = network.layers[0].forward(x)
    assume(np.all(first.var(axis=(0, 2, 3)) > 1e-4))
    rows = check_gradients(network, x, np.arange(batch) % 3, max_entries=12)
    for row in rows:
        assert row.passed, row.describe()


@st.composite
def classic_stacks(draw):
    """A generated conv with groups (depthwise among them), dilation and 4-number padding,
    then two of the classic CNN layers, each drawn with its options."""
    groups = draw(st.sampled_from([1, 2, 3]))
    channels = groups * draw(st.integers(1, 2))
    filters = channels if draw(st.booleans()) else groups * draw(st.integers(1, 2))
    kernel = [draw(st.integers(1, 3)), draw(st.integers(1, 3))]
    dilation = [draw(st.integers(1, 2)), draw(st.integers(1, 2))]
    padding = draw(st.lists(st.integers(0, 2), min_size=4, max_size=4))
    stride = [draw(st.integers(1, 2)), draw(st.integers(1, 2))]
    height = draw(st.integers(max(1, (kernel[0] - 1) * dilation[0] + 1 - padding[0]
                                  - padding[2]), 7))
    width = draw(st.integers(max(1, (kernel[1] - 1) * dilation[1] + 1 - padding[1]
                                 - padding[3]), 7))
    conv = (f"{{type: conv2d, filters: {filters}, kernel: {kernel}, groups: {groups}, "
            f"dilation: {dilation}, padding: {padding}, stride: {stride}}}")
    pool = draw(st.sampled_from(["maxpool", "avgpool"]))
    choices = [
        "{type: branches, merge: concat, paths: [[{type: conv2d, filters: 2, kernel: 1}, "
        "{type: tanh}], []]}",
        "{type: branches, merge: multiply, paths: [[], [{type: globalavgpool}, {type: dense, "
        "units: 2}, {type: tanh}, {type: dense, units: CHANNELS}, {type: sigmoid}]]}",
        "{type: branches, merge: add, paths: [[{type: tanh}], [], [{type: sigmoid}]]}",
        "{type: lrn, size: 3, alpha: 0.5}",
        f"{{type: upsample, scale: {draw(st.integers(1, 3))}, "
        f"mode: {draw(st.sampled_from(['nearest', 'bilinear']))}}}",
        f"{{type: conv_transpose2d, filters: 2, kernel: {draw(st.integers(1, 3))}, "
        f"stride: {draw(st.integers(1, 2))}, padding: {draw(st.integers(0, 1))}}}",
        f"{{type: {pool}, size: 2, stride: {draw(st.integers(1, 2))}, padding: 1, "
        f"ceil_mode: {draw(st.booleans())}}}",
        f"{{type: {draw(st.sampled_from(['relu6', 'hardswish', 'hardsigmoid', 'silu', 'gelu', 'prelu']))}}}",
    ]
    extras = [draw(st.sampled_from(choices)) for _ in range(2)]
    return (channels, height, width), conv, extras


@settings(max_examples=40, deadline=None)
@given(classic_stacks())
def test_generated_stacks_of_the_classic_layers_pass_the_gradient_check(case):
    from convtrain.errors import ConfigError

    shape, conv, extras = case
    layers = [conv, "{type: tanh}"]
    try:
        for extra in extras:
            channels = _network(shape, layers).config.layers[-1].out_shape[0]
            layers.append(extra.replace("CHANNELS", str(channels)))
        network = _network(shape, layers + ["{type: flatten}", "{type: dense, units: 3}"])
    except ConfigError:  # a pool window starting in the padding, a transposed conv too small
        assume(False)
    x = np.random.default_rng(2).standard_normal((2,) + shape)
    rows = check_gradients(network, x, np.array([0, 2]), max_entries=12)
    for row in rows:
        assert row.passed, row.describe()
