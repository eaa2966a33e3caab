"""Batch normalisation kernels. Shapes:
    x, out, dout, dx   (N, C, L)   L = H*W for an image, 1 for a vector of C features
    xhat               (N, C, L)   x normalised: (x - mean[c]) * inv_std[c]
    gamma, beta        (C,)        the scale and shift (γ, β)
    mean, var, inv_std (C,)        float64: the batch statistics (var biased), and
                                   inv_std = 1/sqrt(var + eps)
Statistics are over M = N*L values per channel: N for a vector, N*H*W for an image.

Each `prange` iteration owns one channel; its sums over the batch run in one fixed order
(n, then l) in float64, so results are the same for any number of threads.
"""

import numpy as np
from numba import njit, prange, uint64


@njit(parallel=True, cache=True)
def batchnorm_forward_train(x, gamma, beta, eps, out, xhat, mean, var, inv_std):
    """out = gamma * xhat + beta with the batch's own statistics (biased variance, two
    passes for accuracy). Writes out, xhat (N, C, L), mean, var and inv_std (C,)."""
    n_samples, channels, length = x.shape
    count = n_samples * length
    for c in prange(channels):
        total = 0.0
        for n in range(n_samples):
            for i in range(uint64(length)):
                total += x[n, c, i]
        mu = total / count
        squares = 0.0
        for n in range(n_samples):
            for i in range(uint64(length)):
                centred = x[n, c, i] - mu
                squares += centred * centred
        variance = squares / count
        scale = 1.0 / np.sqrt(variance + eps)
        mean[c], var[c], inv_std[c] = mu, variance, scale
        for n in range(n_samples):
            for i in range(uint64(length)):
                normalised = (x[n, c, i] - mu) * scale
                xhat[n, c, i] = normalised
                out[n, c, i] = gamma[c] * normalised + beta[c]


@njit(parallel=True, cache=True)
def batchnorm_forward_eval(x, gamma, beta, eps, running_mean, running_var, out):
    """out = gamma * (x - running_mean) / sqrt(running_var + eps) + beta. Writes out (N, C, L)."""
    n_samples, channels, length = x.shape
    for c in prange(channels):
        scale = gamma[c] / np.sqrt(running_var[c] + eps)
        shift = beta[c] - running_mean[c] * scale
        for n in range(n_samples):
            for i in range(uint64(length)):
                out[n, c, i] = x[n, c, i] * scale + shift


@njit(parallel=True, cache=True)
def batchnorm_backward(dout, xhat, gamma, inv_std, dx, dgamma, dbeta):
    """The full gradient through the batch statistics:
        dbeta = sum dout, dgamma = sum dout * xhat (over n and l, per channel),
        dx = gamma * inv_std / M * (M * dout - dbeta - xhat * dgamma).
    Writes dx (N, C, L), dgamma and dbeta (C,)."""
    n_samples, channels, length = dout.shape
    count = n_samples * length
    for c in prange(channels):
        sum_dout, sum_dout_xhat = 0.0, 0.0
        for n in range(n_samples):
            for i in range(uint64(length)):
                sum_dout += dout[n, c, i]
                sum_dout_xhat += dout[n, c, i] * xhat[n, c, i]
        dgamma[c], dbeta[c] = sum_dout_xhat, sum_dout
        scale = gamma[c] * inv_std[c] / count
        for n in range(n_samples):
            for i in range(uint64(length)):
                dx[n, c, i] = scale * (count * dout[n, c, i] - sum_dout
                                       - xhat[n, c, i] * sum_dout_xhat)
