"""Batch normalisation kernels. Shapes:
    x, out, dout, dx   (N, C, L)   L = H*W for an image, 1 for a vector of C features
    gamma, beta        (C,)        the scale and shift (γ, β)
    mean, var, inv_std (C,)        float64: the batch statistics (var biased), and
                                   inv_std = 1/sqrt(var + eps)
Statistics are over M = N*L values per channel: N for a vector, N*H*W for an image.

Every sum over the batch is made in two steps, each in a fixed order in float64: a partial
per sample (over L, in order; `*_per_sample`, one `prange` iteration per sample), then those
partials combined in sample order (`combine_moments_in_order`, `add_samples_up`). So results
are the same for any number of threads, and for any number of processes sharing the batch:
each computes its own samples' partials, and every process combines the whole batch's
(convtrain.team). The statistics take one pass over the batch in memory: each sample's mean
and squared deviations come from two passes over its own values, which stay in cache.

x normalised, xhat = (x - mean[c]) * inv_std[c], is never stored: the backward kernels
compute it again from x (`_normalised`), in float64, the same way in every kernel. Storing
it cost a batch-sized write in the forward pass, a quarter of its memory traffic.
"""

import numpy as np
from numba import njit, prange, uint64


@njit(parallel=True, cache=True)
def moments_per_sample(x, moments):
    """Each sample's own mean and sum of squared deviations per channel, by two passes over
    its L values (the second from cache): moments[n, 0, c] = mean of x[n, c, :] and
    moments[n, 1, c] = the sum of (x[n, c, :] - that mean)^2, in float64, in order.
    x (N, C, L); writes moments (N, 2, C) float64. One iteration per sample."""
    n_samples, channels, length = x.shape
    for n in prange(n_samples):
        for c in range(channels):
            total = 0.0
            for i in range(uint64(length)):
                total += x[n, c, i]
            mu = total / length
            squares = 0.0
            for i in range(uint64(length)):
                centred = x[n, c, i] - mu
                squares += centred * centred
            moments[n, 0, c], moments[n, 1, c] = mu, squares


@njit(cache=True)
def combine_moments_in_order(moments, length, mean, squares):
    """The whole batch's mean and sum of squared deviations per channel from every
    sample's (moments_per_sample, each over `length` values), combined sample by sample
    in order (Chan, Golub and LeVeque's update, as stable as two passes over the batch).
    moments (N, 2, C) float64, the whole batch's; writes mean and squares (C,) float64."""
    channels = mean.shape[0]
    for c in range(channels):
        mean[c], squares[c] = moments[0, 0, c], moments[0, 1, c]
    for n in range(1, moments.shape[0]):
        before = n * length
        weight = length / (before + length)
        for c in range(channels):
            delta = moments[n, 0, c] - mean[c]
            mean[c] += delta * weight
            squares[c] += moments[n, 1, c] + delta * delta * before * weight


@njit(cache=True)
def add_samples_up(partial, total):
    """total[m] = partial[0, m] + partial[1, m] + ... in sample order, in float64.
    partial (N, M) float64 (every sample's partial sums, the whole batch's); writes
    total (M,)."""
    for m in range(total.shape[0]):
        total[m] = 0.0
    for n in range(partial.shape[0]):
        for m in range(total.shape[0]):
            total[m] += partial[n, m]


@njit(cache=True, inline="always")
def _normalised(value, mu, scale):
    """xhat = (value - mean) * inv_std, in float64: forward and backward agree on it."""
    return (value - mu) * scale


@njit(parallel=True, cache=True)
def batchnorm_normalise(x, gamma, beta, mean, inv_std, out):
    """out = gamma * xhat + beta with the batch's statistics. x (N, C, L); writes out
    (N, C, L)."""
    n_samples, channels, length = x.shape
    for n in prange(n_samples):
        for c in range(channels):
            mu, scale = mean[c], inv_std[c]
            for i in range(uint64(length)):
                out[n, c, i] = gamma[c] * _normalised(x[n, c, i], mu, scale) + beta[c]


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
def backward_sums_per_sample(dout, x, mean, inv_std, partial):
    """partial[n, 0, c] = the sum of dout[n, c, :] (its share of dbeta) and partial[n, 1, c]
    = the sum of dout[n, c, :] * xhat[n, c, :] (of dgamma), in float64, in order.
    dout, x (N, C, L); mean, inv_std (C,) float64; writes partial (N, 2, C) float64."""
    n_samples, channels, length = dout.shape
    for n in prange(n_samples):
        for c in range(channels):
            mu, scale = mean[c], inv_std[c]
            sum_dout, sum_dout_xhat = 0.0, 0.0
            for i in range(uint64(length)):
                sum_dout += dout[n, c, i]
                sum_dout_xhat += dout[n, c, i] * _normalised(x[n, c, i], mu, scale)
            partial[n, 0, c], partial[n, 1, c] = sum_dout, sum_dout_xhat


@njit(parallel=True, cache=True)
def batchnorm_backward_input(dout, x, gamma, mean, inv_std, sums, count, dx):
    """The full gradient through the batch statistics, given the batch's sums (sums[0] =
    dbeta, sums[1] = dgamma, added up from backward_sums_per_sample) over its M = count
    values per channel:
        dx = gamma * inv_std / M * (M * dout - dbeta - xhat * dgamma).
    dout, x (N, C, L); gamma (C,); mean, inv_std (C,) float64; writes dx (N, C, L)."""
    n_samples, channels, length = dout.shape
    for n in prange(n_samples):
        for c in range(channels):
            sum_dout, sum_dout_xhat = sums[0, c], sums[1, c]
            mu, inv = mean[c], inv_std[c]
            scale = gamma[c] * inv / count
            for i in range(uint64(length)):
                dx[n, c, i] = scale * (count * dout[n, c, i] - sum_dout
                                       - _normalised(x[n, c, i], mu, inv) * sum_dout_xhat)
