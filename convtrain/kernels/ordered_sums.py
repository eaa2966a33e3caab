"""Sums in a fixed order, in float64: the one home of every sum over a batch (and of the
short sums the kernels finish with), so that a gradient's bits never depend on the number
of threads or of processes sharing the batch.

    per_sample (N, R, F)   one value per sample and entry, float32 or float64
    values     (N, M)      the same, flattened to M entries a sample
    rows       (R, K)      float64: K partial sums per row, to be added up last

A sum over samples runs sample after sample, one float64 running total per entry; a row's
partial sums are added left to right. Floating-point addition is not associative: any other
order (a tree, threads splitting the samples) would round differently.
"""

import numpy as np
from numba import njit, prange, uint64

SUM_BLOCK_VALUES = 1024  # of a sample's gradient: 4 KiB of float32, read in one stretch


@njit(parallel=True, cache=True)
def add_samples_in_order(per_sample, total):
    """total += per_sample[0] + per_sample[1] + ..., one float64 running sum per entry,
    samples in order. per_sample (N, R, F) float32 or float64; total (R, F) float64.
    Iteration b owns a block of SUM_BLOCK_VALUES entries of total (the last one fewer) and
    reads that block of every sample in turn: contiguous stretches, where a row at a time
    (F values, a page apart from sample to sample) left the reads waiting on memory.
    Starting from a total handed on by the process before keeps the additions those of
    one process summing the whole batch (convtrain.team)."""
    n_samples, rows, filters = per_sample.shape
    samples = per_sample.reshape((n_samples, rows * filters))
    totals = total.reshape(rows * filters)
    size, block_values = uint64(rows * filters), uint64(SUM_BLOCK_VALUES)
    for block in prange((size + block_values - uint64(1)) // block_values):
        first = uint64(block) * block_values
        count = min(size - first, block_values)
        running = np.empty(SUM_BLOCK_VALUES)
        for i in range(count):
            running[i] = totals[first + i]
        for n in range(n_samples):
            for i in range(count):
                running[i] += samples[n, first + i]
        for i in range(count):
            totals[first + i] = running[i]


@njit(cache=True)
def sum_over_samples(values, out):
    """out[m] = values[0, m] + values[1, m] + ..., samples in order, in float64; serial, for
    the inside of a kernel (a dense layer's bias gradient). values (N, M); writes out (M,),
    of any float type (rounded once, at the end)."""
    total = np.zeros(out.shape[0])
    for n in range(values.shape[0]):
        for m in range(out.shape[0]):
            total[m] += values[n, m]
    for m in range(out.shape[0]):
        out[m] = total[m]


@njit(cache=True, inline="always")
def row_total(rows, r):
    """rows[r, 0] + rows[r, 1] + ..., in order, in float64. rows (R, K)."""
    total = 0.0
    for k in range(uint64(rows.shape[1])):
        total += rows[r, k]
    return total


@njit(cache=True)
def row_totals(rows, out):
    """out[r] = row_total(rows, r) for every row. rows (R, K) float64; writes out (R,)."""
    for r in range(rows.shape[0]):
        out[r] = row_total(rows, r)
