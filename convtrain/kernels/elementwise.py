"""Element-wise kernels: activations, sums and optimizer updates.

Every array here is 1-D and C-contiguous (callers pass `a.reshape(-1)` views),
x (M,), out (M,), dout (M,), dx (M,). Each `prange` iteration owns element i.
"""

import math

from numba import njit, prange


@njit(parallel=True, cache=True)
def leaky_relu_forward(x, slope, out, positive):
    """out = x if x > 0 else slope * x (slope 0 is ReLU); positive = x > 0, all backward
    needs, a quarter of x's bytes in float32. x, out, positive (M,)."""
    for i in prange(x.shape[0]):
        positive[i] = x[i] > 0
        out[i] = x[i] if positive[i] else slope * x[i]


@njit(parallel=True, cache=True)
def leaky_relu_backward(positive, dout, slope, dx):
    """dx = dout * (1 if x > 0 else slope), positive = x > 0 (M,) from the forward. The
    derivative at exactly 0 is taken as `slope`."""
    for i in prange(positive.shape[0]):
        dx[i] = dout[i] if positive[i] else slope * dout[i]


@njit(parallel=True, cache=True)
def clip_forward(x, low, high, out, inside):
    """out = x clipped to [low, high] (relu6: 0, 6), NaN kept; inside = not (x <= low or
    x >= high), all backward needs: NaN counts as inside, as in PyTorch's hardtanh backward.
    x, out, inside (M,)."""
    for i in prange(x.shape[0]):
        inside[i] = not (x[i] <= low or x[i] >= high)
        if x[i] < low:
            out[i] = low
        elif x[i] > high:
            out[i] = high
        else:
            out[i] = x[i]


@njit(parallel=True, cache=True)
def clip_backward(inside, dout, dx):
    """dx = dout where low < x < high (or x is NaN), else 0: at both ends too, as PyTorch's
    hardtanh (and so ReLU6) takes it. inside (M,) from the forward, dout, dx (M,)."""
    for i in prange(inside.shape[0]):
        dx[i] = dout[i] if inside[i] else 0.0


@njit(cache=True, inline="always")
def _relu6_of_shifted(value):
    """min(max(value + 3, 0), 6), NaN kept: the clamp hardsigmoid and hardswish share."""
    shifted = value + 3.0
    if shifted < 0.0:
        return 0.0
    if shifted > 6.0:
        return 6.0
    return shifted


@njit(parallel=True, cache=True)
def hardsigmoid_forward(x, out):
    """out = min(max(x + 3, 0), 6) / 6, PyTorch's hardsigmoid, in its order of operations.
    x, out (M,)."""
    for i in prange(x.shape[0]):
        out[i] = _relu6_of_shifted(x[i]) / 6.0


@njit(parallel=True, cache=True)
def hardsigmoid_backward(x, dout, dx):
    """dx = dout/6 where -3 < x < 3, else 0 (at both ends too, as PyTorch's). (M,) each."""
    for i in prange(x.shape[0]):
        dx[i] = dout[i] / 6.0 if x[i] > -3.0 and x[i] < 3.0 else 0.0


@njit(parallel=True, cache=True)
def hardswish_forward(x, out):
    """out = x * min(max(x + 3, 0), 6) / 6, PyTorch's hardswish (so -inf gives NaN, as
    there). x, out (M,)."""
    for i in prange(x.shape[0]):
        out[i] = x[i] * _relu6_of_shifted(x[i]) / 6.0


@njit(parallel=True, cache=True)
def hardswish_backward(x, dout, dx):
    """dx = dout * (0 for x <= -3, x/3 + 1/2 for -3 < x < 3, 1 from 3 on): PyTorch's
    choice at the two kinks. x, dout, dx (M,)."""
    for i in prange(x.shape[0]):
        if x[i] <= -3.0:
            dx[i] = 0.0
        elif x[i] < 3.0:
            dx[i] = dout[i] * (x[i] / 3.0 + 0.5)
        else:
            dx[i] = dout[i]


@njit(cache=True, inline="always")
def _sigmoid(value):
    """1 / (1 + exp(-value)), written so that exp never overflows."""
    if value >= 0:
        return 1.0 / (1.0 + math.exp(-value))
    e = math.exp(value)
    return e / (1.0 + e)


@njit(parallel=True, cache=True)
def silu_forward(x, out):
    """out = x * sigmoid(x) (SiLU, swish). x, out (M,)."""
    for i in prange(x.shape[0]):
        out[i] = x[i] * _sigmoid(x[i])


@njit(parallel=True, cache=True)
def silu_backward(x, dout, dx):
    """dx = dout * s * (1 + x * (1 - s)), s = sigmoid(x). x, dout, dx (M,)."""
    for i in prange(x.shape[0]):
        s = _sigmoid(x[i])
        dx[i] = dout[i] * s * (1.0 + x[i] * (1.0 - s))


@njit(parallel=True, cache=True)
def gelu_forward(x, out):
    """out = x * Phi(x), Phi(x) = (1 + erf(x / sqrt 2)) / 2: GELU in its exact (erf) form,
    PyTorch's default. x, out (M,)."""
    for i in prange(x.shape[0]):
        out[i] = 0.5 * x[i] * (1.0 + math.erf(x[i] * 0.7071067811865476))


@njit(parallel=True, cache=True)
def gelu_backward(x, dout, dx):
    """dx = dout * (Phi(x) + x * phi(x)), phi(x) = exp(-x^2/2) / sqrt(2 pi). (M,) each."""
    for i in prange(x.shape[0]):
        cdf = 0.5 * (1.0 + math.erf(x[i] * 0.7071067811865476))
        pdf = 0.3989422804014327 * math.exp(-0.5 * x[i] * x[i])
        dx[i] = dout[i] * (cdf + x[i] * pdf)


@njit(parallel=True, cache=True)
def prelu_forward(x, slope, out):
    """out = x where x > 0, else slope[c] * x: one learnable slope per channel (PyTorch's
    PReLU). x, out (N, C, L), L = H*W (1 for a vector of C features); slope (C,)."""
    n_samples, channels, length = x.shape
    for n in prange(n_samples):
        for c in range(channels):
            for i in range(length):
                value = x[n, c, i]
                out[n, c, i] = value if value > 0 else slope[c] * value


@njit(parallel=True, cache=True)
def prelu_backward(x, dout, slope, dx, slope_per_sample):
    """dx = dout where x > 0, else slope[c] * dout; and each sample's share of the slopes'
    gradient, slope_per_sample[n, c] = sum over i of dout * x where x <= 0, in order, in
    float64 (ordered_sums adds the samples up). x, dout, dx (N, C, L); slope (C,);
    slope_per_sample (N, C) float64."""
    n_samples, channels, length = x.shape
    for n in prange(n_samples):
        for c in range(channels):
            total = 0.0
            for i in range(length):
                value = x[n, c, i]
                if value > 0:
                    dx[n, c, i] = dout[n, c, i]
                else:
                    dx[n, c, i] = slope[c] * dout[n, c, i]
                    total += dout[n, c, i] * value
            slope_per_sample[n, c] = total


@njit(parallel=True, cache=True)
def add(a, b, out):
    """out = a + b (a residual block's sum and its delta), on every core: NumPy's `+`
    runs on one (4 MB of float32: 0.49 against 0.25 ms on two). a, b, out (M,)."""
    for i in prange(a.shape[0]):
        out[i] = a[i] + b[i]


@njit(parallel=True, cache=True)
def sigmoid_forward(x, out):
    """out = 1 / (1 + exp(-x)), written so that exp never overflows. x, out (M,)."""
    for i in prange(x.shape[0]):
        out[i] = _sigmoid(x[i])


@njit(parallel=True, cache=True)
def sigmoid_backward(out, dout, dx):
    """dx = dout * s * (1 - s), with s the forward output. out, dout, dx (M,)."""
    for i in prange(out.shape[0]):
        dx[i] = dout[i] * out[i] * (1.0 - out[i])


@njit(parallel=True, cache=True)
def tanh_forward(x, out):
    """out = tanh(x). x, out (M,)."""
    for i in prange(x.shape[0]):
        out[i] = math.tanh(x[i])


@njit(parallel=True, cache=True)
def tanh_backward(out, dout, dx):
    """dx = dout * (1 - t^2), with t the forward output. out, dout, dx (M,)."""
    for i in prange(out.shape[0]):
        dx[i] = dout[i] * (1.0 - out[i] * out[i])


@njit(parallel=True, cache=True)
def sgd_update(w, g, velocity, lr, momentum, nesterov, weight_decay, update):
    """One SGD step in place, as PyTorch's SGD: v = momentum*v + (g + wd*w); w -= lr*v,
    or with Nesterov momentum w -= lr*((g + wd*w) + momentum*v).

    w, g, velocity, update (M,); `update` receives the change applied to w.
    """
    for i in prange(w.shape[0]):
        grad = g[i] + weight_decay * w[i]
        velocity[i] = momentum * velocity[i] + grad
        if nesterov:
            update[i] = -lr * (grad + momentum * velocity[i])
        else:
            update[i] = -lr * velocity[i]
        w[i] += update[i]


@njit(parallel=True, cache=True)
def adam_update(w, g, m, v, lr, beta1, beta2, eps, weight_decay, decoupled, step, update):
    """One Adam step in place (Kingma & Ba, bias-corrected). Weight decay is L2 added to g,
    or, with `decoupled` (AdamW, Loshchilov & Hutter), w shrinks by lr*wd*w before the
    Adam step, as PyTorch's AdamW.

    w, g, m, v, update (M,); `step` counts from 1.
    """
    correction1 = 1.0 - beta1 ** step
    correction2 = 1.0 - beta2 ** step
    for i in prange(w.shape[0]):
        if decoupled:
            grad = g[i]
            start = w[i] - lr * weight_decay * w[i]
        else:
            grad = g[i] + weight_decay * w[i]
            start = w[i]
        m[i] = beta1 * m[i] + (1.0 - beta1) * grad
        v[i] = beta2 * v[i] + (1.0 - beta2) * grad * grad
        new = start - lr * (m[i] / correction1) / (math.sqrt(v[i] / correction2) + eps)
        update[i] = new - w[i]
        w[i] = new
