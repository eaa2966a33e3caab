"""Every fast kernel against its naive twin, stride > 1 and padding included."""

import numpy as np
import pytest
from naive import convolve2d_full, convolve2d_valid, correlate, pool

from convtrain.spec.config import load_config
from convtrain.model.network import Network
from convtrain.views.trace import textbook_input_delta, textbook_kernel_delta

CASES = [
    # C, H, W, F, kernel, stride, padding
    (1, 5, 5, 2, (3, 3), (1, 1), 0),
    (3, 7, 6, 4, (3, 2), (2, 1), 1),
    (2, 8, 8, 3, (2, 3), (2, 2), "same"),
    (2, 6, 9, 2, (1, 4), (1, 3), [2, 0]),
    (4, 5, 5, 1, (5, 5), (1, 1), 0),
]


def _net(c, h, w, layers, dtype):
    text = f"input: [{c}, {h}, {w}]\ndtype: {dtype}\nlayers:\n" + "".join(
        f"  - {layer}\n" for layer in layers)
    return Network(load_config("test.yaml", text=text))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("op", ["correlation", "convolution"])
@pytest.mark.parametrize("case", CASES)
def test_conv_forward_matches_naive(case, op, dtype):
    c, h, w, f, kernel, stride, padding = case
    net = _net(c, h, w, [f"{{type: conv2d, filters: {f}, kernel: {list(kernel)}, stride: "
                         f"{list(stride)}, padding: {padding if isinstance(padding, (int, list)) else padding}, op: {op}, init: he_normal}}"],
               dtype)
    layer = net.layers[0]
    layer.params["bias"][...] = np.arange(f)
    x = np.random.default_rng(0).standard_normal((3, c, h, w)).astype(dtype)
    weight = layer.params["weight"].astype(np.float64)
    if op == "convolution":
        weight = weight[:, :, ::-1, ::-1]
    expected = correlate(x.astype(np.float64), weight, layer.params["bias"].astype(np.float64),
                         stride, layer.spec.padding)
    got = net.forward(x).reshape(expected.shape)
    tol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(got, expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("size,stride", [((2, 2), (2, 2)), ((3, 3), (1, 1)), ((3, 2), (2, 1)),
                                         ((2, 2), (3, 3))])
def test_pool_forward_matches_naive(kind, size, stride):
    net = _net(2, 7, 8, [f"{{type: {kind}pool, size: {list(size)}, stride: {list(stride)}}}"],
               "float64")
    x = np.random.default_rng(1).standard_normal((2, 2, 7, 8))
    expected = pool(x, size, stride, kind)
    np.testing.assert_allclose(net.forward(x).reshape(expected.shape), expected, rtol=1e-12)


def test_maxpool_backward_routes_to_first_max_on_ties():
    net = _net(1, 2, 2, ["{type: maxpool, size: 2}"], "float64")
    x = np.ones((1, 1, 2, 2))
    net.forward(x, training=True)  # keeps what backward needs
    dx = net.backward(np.array([[5.0]]))
    np.testing.assert_array_equal(dx[0, 0], [[5.0, 0.0], [0.0, 0.0]])


def test_textbook_helpers_match_definition_of_convolution():
    rng = np.random.default_rng(2)
    a, delta = rng.standard_normal((5, 4)), rng.standard_normal((3, 2))
    kernel = rng.standard_normal((2, 3))
    np.testing.assert_allclose(textbook_kernel_delta(a[None], delta[None])[0, 0],
                               convolve2d_valid(a, delta), rtol=1e-12)
    np.testing.assert_allclose(textbook_input_delta(delta[None], kernel[None, None])[0],
                               convolve2d_full(delta, kernel), rtol=1e-12)


@pytest.mark.parametrize("threads_first", [1, 2])
def test_kernels_deterministic_across_repeats(threads_first):
    """Every path that splits work among threads: im2col with stride and padding,
    Winograd for the forward pass and the delta only (as auto takes it) and for all three,
    and a dense layer large enough to be split. In float64, whose kernels the gradient
    checks compile too (float32's thread identity: test_modern_layers, test_train)."""
    import numba

    net = _net(3, 15, 15, ["{type: conv2d, filters: 4, kernel: 3, stride: 2, padding: 1}",
                           "{type: conv2d, filters: 4, kernel: 3, padding: 1, "
                           "algorithm: winograd}",
                           "{type: conv2d, filters: 4, kernel: 3, algorithm: winograd}",
                           "{type: flatten}", "{type: dense, units: 2048}",
                           "{type: dense, units: 3}"], "float64")
    net.layers[1].weight_algorithm = "gemm"  # auto's choice for a large float32 layer
    assert [(layer.algorithm, layer.weight_algorithm) for layer in net.layers[:3]] == [
        ("gemm", "gemm"), ("winograd", "gemm"), ("winograd", "winograd")]
    assert net.layers[4]._split
    x = np.random.default_rng(3).standard_normal((8, 3, 15, 15))
    results = []
    for threads in (threads_first, 3 - threads_first):
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        out = net.forward(x, training=True)
        dx = net.backward(np.ones_like(out))
        results.append([out, dx] + [layer.grads[key].copy() for layer in net.layers
                                    for key in layer.grads])
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    assert len(results[0]) == 2 + 10
    assert all(np.array_equal(a, b) for a, b in zip(*results))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_maxpool2x2_kernel_equals_the_general_one_ties_included(dtype):
    from convtrain.kernels.pool import maxpool2x2_forward, maxpool_forward

    rng = np.random.default_rng(5)
    x = rng.integers(-2, 3, size=(3, 2, 9, 8)).astype(dtype)  # small integers: many ties
    shape = (3, 2, 4, 4)
    general = np.empty(shape, dtype), np.empty(shape, np.int32)
    special = np.empty(shape, dtype), np.empty(shape, np.int32)
    maxpool_forward(x, 2, 2, 2, 2, *general)
    maxpool2x2_forward(x, *special)
    np.testing.assert_array_equal(general[0], special[0])
    np.testing.assert_array_equal(general[1], special[1])


@pytest.mark.parametrize("kernel,stride", [((3, 3), (1, 1)), ((2, 3), (2, 1)), ((3, 2), (1, 3)),
                                           ((1, 4), (3, 2))])
def test_window_copies_and_their_add_backs_are_adjoint(kernel, stride):
    """col2im's two steps must be the exact transposes of im2col's: <A x, y> = <x, A^T y>,
    so the input delta adds each window's gradient back exactly where im2col took it."""
    from convtrain.kernels.conv import col2im, im2col

    (kernel_h, kernel_w), (stride_h, stride_w) = kernel, stride
    rng = np.random.default_rng(6)
    xs = rng.standard_normal((2, 7, 9))
    out_h, out_w = (7 - kernel_h) // stride_h + 1, (9 - kernel_w) // stride_w + 1
    rows = 2 * kernel_h * kernel_w
    shifted = np.empty((2, kernel_w, 7, out_w))
    cols = np.empty((rows, out_h * out_w))
    im2col(xs, kernel_h, stride_h, stride_w, shifted, cols)
    picks = np.eye(rows).reshape(rows, 2, kernel_h, kernel_w)  # filter r picks window entry r
    expected = correlate(xs[None], picks, np.zeros(rows), stride, (0, 0, 0, 0))
    np.testing.assert_array_equal(cols, expected.reshape(cols.shape))

    dcols = rng.standard_normal(cols.shape)
    dshifted, dxs = np.empty_like(shifted), np.empty_like(xs)
    col2im(dcols, kernel_h, stride_h, stride_w, dshifted, dxs)
    np.testing.assert_allclose(np.sum(cols * dcols), np.sum(xs * dxs), rtol=1e-12)


@pytest.mark.parametrize("shape", [(5, 37, 29), (3, 1, 1), (4, 64, 32)])
def test_add_samples_in_order_is_the_sample_by_sample_float64_sum(shape):
    """Blocks of entries (one partial last block included), a running total handed on
    (as by the process before): the same bits as adding sample after sample in float64."""
    from convtrain.kernels.ordered_sums import add_samples_in_order

    rng = np.random.default_rng(1)
    per_sample = (rng.standard_normal(shape) * 10.0 ** rng.integers(-4, 4, shape)).astype(
        np.float32)
    start = rng.standard_normal(shape[1:])
    want = start.copy()
    for sample in per_sample:
        want += sample.astype(np.float64)
    got = start.copy()
    add_samples_in_order(per_sample, got)
    assert np.array_equal(got, want)


def _in_lanes(values):
    """A float64 sum over `values` the way convtrain.kernels.norm documents it: up to 32
    lanes (at least 8 rows of them), lane j adding values j, j + lanes, ... in order, then the
    lanes added up in order."""
    lanes = 32
    while lanes > 1 and lanes * 8 > values.size:
        lanes //= 2
    rows = values.size // lanes
    lane_sums = np.zeros(lanes)
    for r in range(rows):
        lane_sums += values[r * lanes:(r + 1) * lanes]
    lane_sums[:values.size - rows * lanes] += values[rows * lanes:]
    total = 0.0
    for lane_sum in lane_sums:
        total += lane_sum
    return total


@pytest.mark.parametrize("length", [1, 13, 16, 64, 1000, 1024])
def test_batchnorm_sums_are_the_documented_lane_sums(length):
    """moments_per_sample and backward_sums_per_sample, bit for bit, against the lane order
    written out in NumPy; 1000 leaves a partial last row, 1 and 13 take one lane. Shifted
    values, so that the mean and the deviations both matter."""
    from convtrain.kernels.norm import backward_sums_per_sample, moments_per_sample

    rng = np.random.default_rng(2)
    x = (rng.standard_normal((3, 2, length)) * 3.0 + 5.0).astype(np.float32)
    dout = rng.standard_normal(x.shape).astype(np.float32)
    mean, inv_std = np.array([4.5, 5.5]), np.array([0.3, 0.4])
    moments, partial = np.empty((3, 2, 2)), np.empty((3, 2, 2))
    moments_per_sample(x, moments)
    backward_sums_per_sample(dout, x, mean, inv_std, partial)
    for n in range(3):
        for c in range(2):
            values, grads = x[n, c].astype(np.float64), dout[n, c].astype(np.float64)
            mu = _in_lanes(values) / length
            centred = values - mu
            assert moments[n, 0, c] == mu
            assert moments[n, 1, c] == _in_lanes(centred * centred)
            assert partial[n, 0, c] == _in_lanes(grads)
            assert partial[n, 1, c] == _in_lanes(grads * ((values - mean[c]) * inv_std[c]))
