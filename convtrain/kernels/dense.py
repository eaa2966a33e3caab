"""Dense (fully connected) kernels: out = x w^T + b.

    x   (N, D)   the batch, flattened
    w   (U, D)   U units
    b   (U,)
    out (N, U)

The products are BLAS calls (`np.dot` inside Numba calls SciPy's BLAS, single-threaded
as `convtrain.runtime` sets it). Going through Numba rather than NumPy's `@` keeps
NumPy's own BLAS thread pool asleep, so it never competes with Numba's threads for the
cores. The plain kernels make each product one serial call: LeNet-sized dense layers
take tens of microseconds, less than splitting them would cost (and they compile in a
quarter of the time). The `*_split` kernels cut it into blocks, one `prange` iteration
each, so that both cores work (a CIFAR network's
4096 -> 256 layer took 6 ms of a step on one core): blocks of UNITS of the weight's
rows for the output and the weight gradient, and the batch's two halves for the delta,
whose every block reads all of w (blocks of 16 or 32 rows re-read it so often that
they were slower than one call at batch 256).

Determinism: BLAS rounds a row differently with a different number of rows beside it,
so the blocks are fixed by the product's shape alone, never by the number of threads.
"""

import numpy as np
from numba import njit, prange

from convtrain.kernels.ordered_sums import sum_over_samples

UNITS = 64  # the weight's rows per block


@njit(cache=True)
def dense_forward(x, w, b, out):
    """out = x w^T + b. x (N, D), w (U, D), b (U,); writes out (N, U)."""
    np.dot(x, w.T, out)
    # Written as loops: the array expression `out[n] += b` cost 1.4 s of compilation
    # (scripts/compile_times.py), the loops nothing measurable.
    for n in range(out.shape[0]):
        for u in range(out.shape[1]):
            out[n, u] += b[u]


@njit(parallel=True, cache=True)
def dense_forward_split(x, w, b, out):
    """dense_forward, in blocks of UNITS of w's rows: out^T a block at a time, each block
    reading its own part of w, then out = out^T + b."""
    out_t = np.empty((w.shape[0], x.shape[0]), dtype=out.dtype)
    for block in prange((w.shape[0] + UNITS - 1) // UNITS):
        units = slice(block * UNITS, min(w.shape[0], (block + 1) * UNITS))
        np.dot(w[units], x.T, out_t[units])
    for n in range(out.shape[0]):
        for u in range(out.shape[1]):
            out[n, u] = out_t[u, n] + b[u]


@njit(cache=True)
def dense_backward_input(dout, w, dx):
    """dx = dout w. dout (N, U), w (U, D); writes dx (N, D)."""
    np.dot(dout, w, dx)


@njit(parallel=True, cache=True)
def dense_backward_input_split(dout, w, dx):
    """dense_backward_input, the batch's two halves in parallel."""
    half = (dout.shape[0] + 1) // 2
    for block in prange(2):
        rows = slice(block * half, min(dout.shape[0], (block + 1) * half))
        np.dot(dout[rows], w, dx[rows])


@njit(cache=True)
def dense_backward_params(x, dout, dw, db):
    """dw = dout^T x and db = column sums of dout, both over the batch in a fixed order.
    x (N, D), dout (N, U); writes dw (U, D), db (U,)."""
    np.dot(dout.T, x, dw)
    sum_over_samples(dout, db)


@njit(parallel=True, cache=True)
def dense_backward_params_split(x, dout, dw, db):
    """dense_backward_params, dw in blocks of UNITS of its rows."""
    dout_t = np.ascontiguousarray(dout.T)
    for block in prange((dw.shape[0] + UNITS - 1) // UNITS):
        units = slice(block * UNITS, min(dw.shape[0], (block + 1) * UNITS))
        np.dot(dout_t[units], x, dw[units])
    sum_over_samples(dout, db)
