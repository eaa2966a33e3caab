"""Dense (fully connected) kernels: out = x w^T + b.

    x   (N, D)   the batch, flattened
    w   (U, D)   U units
    b   (U,)
    out (N, U)

The products are one BLAS call each (`np.dot` inside Numba calls SciPy's BLAS,
single-threaded as `convtrain.runtime` sets it). Going through Numba rather than
NumPy's `@` keeps NumPy's own BLAS thread pool asleep, so it never competes with
Numba's threads for the cores. Each call is serial: LeNet-sized dense layers take
tens of microseconds, less than splitting them would cost.
"""

import numpy as np
from numba import njit


@njit(cache=True)
def dense_forward(x, w, b, out):
    """out = x w^T + b. x (N, D), w (U, D), b (U,); writes out (N, U)."""
    np.dot(x, w.T, out)
    # Written as loops: the array expression `out[n] += b` cost 1.4 s of compilation
    # (scripts/compile_times.py), the loops nothing measurable.
    for n in range(out.shape[0]):
        for u in range(out.shape[1]):
            out[n, u] += b[u]


@njit(cache=True)
def dense_backward_input(dout, w, dx):
    """dx = dout w. dout (N, U), w (U, D); writes dx (N, D)."""
    np.dot(dout, w, dx)


@njit(cache=True)
def dense_backward_params(x, dout, dw, db):
    """dw = dout^T x and db = column sums of dout, both over the batch in a fixed order.
    x (N, D), dout (N, U); writes dw (U, D), db (U,)."""
    np.dot(dout.T, x, dw)
    total = np.zeros(db.shape[0])  # float64, one running sum per unit, samples in order
    for n in range(dout.shape[0]):
        for u in range(db.shape[0]):
            total[u] += dout[n, u]
    for u in range(db.shape[0]):
        db[u] = total[u]
