"""Local response normalisation across channels (AlexNet's; PyTorch's LocalResponseNorm and
ONNX's LRN):

    s[n, c, i] = k + alpha/size · Σ over c' in [c - (size-1)/2, c + (size-1)/2] ∩ [0, C) of
                 x[n, c', i]²
    out = x · s^(-beta)

    x, out, scale (N, C, L)   L = H*W; scale keeps s for the backward pass
The window's sum runs over the channels in order, in float64.
"""

from numba import njit, prange


@njit(parallel=True, cache=True)
def lrn_forward(x, size, alpha, beta, k, out, scale):
    """out = x · s^(-beta); writes scale = s. One iteration per sample."""
    n_samples, channels, length = x.shape
    half = (size - 1) // 2
    for n in prange(n_samples):
        for c in range(channels):
            first, last = max(c - half, 0), min(c + half, channels - 1)
            for i in range(length):
                total = 0.0
                for j in range(first, last + 1):
                    total += x[n, j, i] * x[n, j, i]
                s = k + alpha / size * total
                scale[n, c, i] = s
                out[n, c, i] = x[n, c, i] * s ** -beta


@njit(parallel=True, cache=True)
def lrn_backward(x, dout, scale, size, alpha, beta, dx):
    """dx[j] = dout[j]·s[j]^(-beta) - 2·alpha·beta/size · x[j] · Σ over the c whose window
    holds j of dout[c]·x[c]·s[c]^(-beta-1); the window's sum over the channels in order."""
    n_samples, channels, length = x.shape
    half = (size - 1) // 2
    factor = 2.0 * alpha * beta / size
    for n in prange(n_samples):
        for j in range(channels):
            first, last = max(j - half, 0), min(j + half, channels - 1)
            for i in range(length):
                total = 0.0
                for c in range(first, last + 1):
                    total += dout[n, c, i] * x[n, c, i] * scale[n, c, i] ** (-beta - 1.0)
                dx[n, j, i] = (dout[n, j, i] * scale[n, j, i] ** -beta
                               - factor * x[n, j, i] * total)
