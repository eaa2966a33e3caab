"""Batch normalisation kernels. Shapes:
    x, out, dout, dx   (N, C, L)   L = H*W for an image, 1 for a vector of C features
    xhat               (N, C, L)   x normalised: (x - mean[c]) * inv_std[c]
    gamma, beta        (C,)        the scale and shift (γ, β)
    mean, var, inv_std (C,)        float64: the batch statistics (var biased), and
                                   inv_std = 1/sqrt(var + eps)
Statistics are over M = N*L values per channel: N for a vector, N*H*W for an image.

Each `prange` iteration owns one channel; its sums over the batch run in one fixed order
(n, then l) in float64, so results are the same for any number of threads. The sums are
kernels of their own (`add_*`), apart from the passes that use them, so that a batch split
between processes sums as one (convtrain.team).
"""

import numpy as np
from numba import njit, prange, uint64


@njit(parallel=True, cache=True)
def add_channel_sums(x, total):
    """total[c] += the sum of x[:, c, :], in float64, in (n, l) order. x (N, C, L);
    total (C,) float64. Starting from a total handed on by the process before keeps the
    additions those of one process summing the whole batch (convtrain.team)."""
    n_samples, channels, length = x.shape
    for c in prange(channels):
        running = total[c]
        for n in range(n_samples):
            for i in range(uint64(length)):
                running += x[n, c, i]
        total[c] = running


@njit(parallel=True, cache=True)
def add_centred_squares(x, mean, total):
    """total[c] += the sum of (x[:, c, :] - mean[c])^2, in float64, in (n, l) order: the
    second pass of a two-pass variance. x (N, C, L); mean, total (C,) float64."""
    n_samples, channels, length = x.shape
    for c in prange(channels):
        running = total[c]
        mu = mean[c]
        for n in range(n_samples):
            for i in range(uint64(length)):
                centred = x[n, c, i] - mu
                running += centred * centred
        total[c] = running


@njit(parallel=True, cache=True)
def batchnorm_normalise(x, gamma, beta, mean, inv_std, out, xhat):
    """xhat = (x - mean[c]) * inv_std[c] and out = gamma * xhat + beta with the batch's
    statistics. x (N, C, L); writes out and xhat (N, C, L)."""
    n_samples, channels, length = x.shape
    for c in prange(channels):
        mu, scale = mean[c], inv_std[c]
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
def add_backward_sums(dout, xhat, sums):
    """sums[0, c] += the sum of dout[:, c, :] (dbeta) and sums[1, c] += the sum of
    dout * xhat over the same values (dgamma), in float64, in (n, l) order.
    dout, xhat (N, C, L); sums (2, C) float64."""
    n_samples, channels, length = dout.shape
    for c in prange(channels):
        sum_dout, sum_dout_xhat = sums[0, c], sums[1, c]
        for n in range(n_samples):
            for i in range(uint64(length)):
                sum_dout += dout[n, c, i]
                sum_dout_xhat += dout[n, c, i] * xhat[n, c, i]
        sums[0, c], sums[1, c] = sum_dout, sum_dout_xhat


@njit(parallel=True, cache=True)
def batchnorm_backward_input(dout, xhat, gamma, inv_std, sums, count, dx):
    """The full gradient through the batch statistics, given the batch's sums (sums[0] =
    dbeta, sums[1] = dgamma, from add_backward_sums) over its M = count values per channel:
        dx = gamma * inv_std / M * (M * dout - dbeta - xhat * dgamma).
    dout, xhat (N, C, L); gamma (C,); inv_std (C,) float64; writes dx (N, C, L)."""
    n_samples, channels, length = dout.shape
    for c in prange(channels):
        sum_dout, sum_dout_xhat = sums[0, c], sums[1, c]
        scale = gamma[c] * inv_std[c] / count
        for n in range(n_samples):
            for i in range(uint64(length)):
                dx[n, c, i] = scale * (count * dout[n, c, i] - sum_dout
                                       - xhat[n, c, i] * sum_dout_xhat)
