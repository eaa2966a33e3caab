"""Batch normalisation kernels. Shapes:
    x, out, dout, dx   (N, C, L)   L = H*W for an image, 1 for a vector of C features
    gamma, beta        (C,)        the scale and shift (γ, β)
    mean, var, inv_std (C,)        float64: the batch statistics (var biased), and
                                   inv_std = 1/sqrt(var + eps)
Statistics are over M = N*L values per channel: N for a vector, N*H*W for an image.

Every sum over the batch is made in two steps, each in a fixed order in float64: a partial
per sample (over L; `*_per_sample`, one `prange` iteration per sample), then those partials
combined in sample order (`combine_moments_in_order`; the backward's sums by
`ordered_sums.add_samples_in_order`). So results are the same for any number of threads,
and for any number of processes sharing the batch: each computes its own samples'
partials, and every process combines the whole batch's (convtrain.team). The statistics
take one pass over the batch in memory: each sample's mean and squared deviations come from
two passes over its own values, which stay in cache.

A sum over L runs in `lanes` (`_lane_count(L)`, up to 32; it depends on L alone): lane j adds
up values j, j + lanes, j + 2*lanes, ... in order, and the lanes are added up in order at the
end. One running float64 total waits four cycles for each addition; lanes side by side are
one vector addition per row of values (batch 64, 16 channels at 32x32: the moments 0.89 ->
0.17 ms). The order is fixed by L, so results stay the same for any number of threads.

x normalised, xhat = (x - mean[c]) * inv_std[c], is never stored: the backward kernels
compute it again from x (`_normalised`), in float64, the same way in every kernel. Storing
it cost a batch-sized write in the forward pass, a quarter of its memory traffic.
"""

import numpy as np
from numba import njit, prange, uint64

from convtrain.kernels.ordered_sums import row_total


@njit(cache=True, inline="always")
def _lane_count(length):
    """Lanes for a sum over `length` values: at least 8 rows of them, at most 32 lanes.
    Under 16 values (a vector's features, L = 1) take one lane, in order."""
    lanes = 32
    while lanes > 1 and lanes * 8 > length:
        lanes //= 2
    return lanes


@njit(cache=True, inline="always")
def _sum_of_powers(x, n, c, mu, power, lane_sums):
    """The sum of (x[n, c, i] - mu)**power over i, for power 1 or 2, in float64, in the
    lanes of lane_sums (scratch, (1, lanes) float64)."""
    lanes, length = lane_sums.shape[1], x.shape[2]
    rows = length // lanes
    for j in range(lanes):
        lane_sums[0, j] = 0.0
    for r in range(rows):
        for j in range(lanes):
            centred = x[n, c, r * lanes + j] - mu
            lane_sums[0, j] += centred * centred if power == 2 else centred
    for j in range(length - rows * lanes):
        centred = x[n, c, rows * lanes + j] - mu
        lane_sums[0, j] += centred * centred if power == 2 else centred
    return row_total(lane_sums, 0)


@njit(parallel=True, cache=True)
def moments_per_sample(x, moments):
    """Each sample's own mean and sum of squared deviations per channel, by two passes over
    its L values (the second from cache): moments[n, 0, c] = mean of x[n, c, :] and
    moments[n, 1, c] = the sum of (x[n, c, :] - that mean)^2, in float64, in lanes.
    x (N, C, L); writes moments (N, 2, C) float64. One iteration per sample."""
    n_samples, channels, length = x.shape
    lanes = _lane_count(length)
    for n in prange(n_samples):
        lane_sums = np.empty((1, lanes))
        for c in range(channels):
            mu = _sum_of_powers(x, n, c, 0.0, 1, lane_sums) / length
            moments[n, 0, c] = mu
            moments[n, 1, c] = _sum_of_powers(x, n, c, mu, 2, lane_sums)


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
    = the sum of dout[n, c, :] * xhat[n, c, :] (of dgamma), in float64, in lanes.
    dout, x (N, C, L); mean, inv_std (C,) float64; writes partial (N, 2, C) float64."""
    n_samples, channels, length = dout.shape
    lanes = _lane_count(length)
    rows = length // lanes
    for n in prange(n_samples):
        lane_sums = np.empty((2, lanes))
        for c in range(channels):
            mu, scale = mean[c], inv_std[c]
            for j in range(lanes):
                lane_sums[0, j], lane_sums[1, j] = 0.0, 0.0
            for r in range(rows):
                for j in range(lanes):
                    i = r * lanes + j
                    lane_sums[0, j] += dout[n, c, i]
                    lane_sums[1, j] += dout[n, c, i] * _normalised(x[n, c, i], mu, scale)
            for j in range(length - rows * lanes):
                i = rows * lanes + j
                lane_sums[0, j] += dout[n, c, i]
                lane_sums[1, j] += dout[n, c, i] * _normalised(x[n, c, i], mu, scale)
            partial[n, 0, c] = row_total(lane_sums, 0)
            partial[n, 1, c] = row_total(lane_sums, 1)


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
