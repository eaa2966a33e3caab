"""Convolution kernels: forward, delta to the layer below, kernel and bias gradients.

Shape vocabulary (used by every kernel module):
    x    (N, C, H, W)     a batch of N samples with C channels
    xp   (N, C, HP, WP)   x zero-padded: HP = H + pad_top + pad_bottom
    w    (F, C, KH, KW)   F filters
    b    (F,)
    out  (N, F, OH, OW)   OH = (HP - KH) // SH + 1, OW = (WP - KW) // SW + 1
    cols (C*KH*KW, OH*OW) one sample's windows, one column per output pixel:
                          cols[(c*KH + kh)*KW + kw, oh*OW + ow] = xp[n, c, oh*SH + kh, ow*SW + kw]
    d<name>               the gradient of the loss w.r.t. <name>, same shape as <name>

All kernels compute cross-correlation, out[n, f, oh, ow] =
    b[f] + sum_{c, kh, kw} w[f, c, kh, kw] * xp[n, c, oh*SH + kh, ow*SW + kw];
a true convolution is the same with w flipped, which the layer does.

How: per sample, copy the windows into `cols` (im2col) and make the sum one matrix
product, w as (F, C*KH*KW) times cols, done by BLAS (`np.dot` inside Numba calls
SciPy's BLAS). The delta to the layer below is the transposed product, added back
into the windows (col2im). Each `prange` iteration owns one sample; BLAS runs
single-threaded inside it (`convtrain.runtime` sets that up).

Determinism: every `prange` iteration owns a disjoint slice of its output, and every
sum over the batch runs serially inside one iteration in a fixed order, so results
are race-free and bit-identical for any number of threads.

Index arithmetic in the copy loops is unsigned (`uint64`): Numba then skips its
negative-index wrap-around on each access, which otherwise keeps LLVM from
vectorising them (im2col of LeNet's conv2 ran 7x slower with signed indices).
"""

import numpy as np
from numba import njit, prange, uint64


@njit(cache=True)
def im2col(xs, kernel_h, kernel_w, stride_h, stride_w, out_h, out_w, cols):
    """Copies one sample's windows: xs (C, HP, WP) -> cols (C*KH*KW, OH*OW)."""
    channels = uint64(xs.shape[0])
    kernel_h, kernel_w = uint64(kernel_h), uint64(kernel_w)
    stride_h, stride_w = uint64(stride_h), uint64(stride_w)
    out_h, out_w = uint64(out_h), uint64(out_w)
    row = uint64(0)
    for c in range(channels):
        for kh in range(kernel_h):
            for kw in range(kernel_w):
                for oh in range(out_h):
                    ih = oh * stride_h + kh
                    start = oh * out_w
                    # A unit-stride copy of the inner loop vectorises; same values.
                    if stride_w == uint64(1):
                        for ow in range(out_w):
                            cols[row, start + ow] = xs[c, ih, ow + kw]
                    else:
                        for ow in range(out_w):
                            cols[row, start + ow] = xs[c, ih, ow * stride_w + kw]
                row += uint64(1)


@njit(cache=True)
def col2im(dcols, kernel_h, kernel_w, stride_h, stride_w, out_h, out_w, dxs):
    """Adds each window's gradient back where it came from: dcols (C*KH*KW, OH*OW) ->
    dxs (C, HP, WP), which it overwrites. Overlapping windows add up in a fixed order."""
    channels = uint64(dxs.shape[0])
    kernel_h, kernel_w = uint64(kernel_h), uint64(kernel_w)
    stride_h, stride_w = uint64(stride_h), uint64(stride_w)
    out_h, out_w = uint64(out_h), uint64(out_w)
    dxs[:] = 0.0
    row = uint64(0)
    for c in range(channels):
        for kh in range(kernel_h):
            for kw in range(kernel_w):
                for oh in range(out_h):
                    ih = oh * stride_h + kh
                    start = oh * out_w
                    if stride_w == uint64(1):
                        for ow in range(out_w):
                            dxs[c, ih, ow + kw] += dcols[row, start + ow]
                    else:
                        for ow in range(out_w):
                            dxs[c, ih, ow * stride_w + kw] += dcols[row, start + ow]
                row += uint64(1)


@njit(parallel=True, cache=True)
def conv2d_forward(xp, w, b, stride_h, stride_w, out):
    """out = xp ⋆ w + b. xp (N, C, HP, WP), w (F, C, KH, KW), b (F,); writes out (N, F, OH, OW)."""
    n_samples = xp.shape[0]
    filters, channels, kernel_h, kernel_w = w.shape
    out_h, out_w = out.shape[2], out.shape[3]
    plane = out_h * out_w
    w_rows = w.reshape((filters, channels * kernel_h * kernel_w))
    for n in prange(n_samples):
        cols = np.empty((channels * kernel_h * kernel_w, plane), dtype=xp.dtype)
        im2col(xp[n], kernel_h, kernel_w, stride_h, stride_w, out_h, out_w, cols)
        out_n = out[n].reshape((filters, plane))
        np.dot(w_rows, cols, out_n)
        for f in range(filters):
            out_n[f] += b[f]


@njit(parallel=True, cache=True)
def conv2d_backward_input(dout, w, stride_h, stride_w, dxp):
    """dxp = full correlation of dout with w. dout (N, F, OH, OW), w (F, C, KH, KW); writes dxp (N, C, HP, WP)."""
    n_samples, filters = dout.shape[0], dout.shape[1]
    out_h, out_w = dout.shape[2], dout.shape[3]
    plane = out_h * out_w
    channels, kernel_h, kernel_w = w.shape[1], w.shape[2], w.shape[3]
    w_columns = np.ascontiguousarray(w.reshape((filters, channels * kernel_h * kernel_w)).T)
    for n in prange(n_samples):
        dcols = np.empty((channels * kernel_h * kernel_w, plane), dtype=dout.dtype)
        np.dot(w_columns, dout[n].reshape((filters, plane)), dcols)
        col2im(dcols, kernel_h, kernel_w, stride_h, stride_w, out_h, out_w, dxp[n])


@njit(parallel=True, cache=True)
def conv2d_backward_weight(xp, dout, stride_h, stride_w, dw):
    """dw = sum over the batch of xp ⋆ dout. xp (N, C, HP, WP), dout (N, F, OH, OW); writes dw (F, C, KH, KW)."""
    n_samples, filters = dout.shape[0], dout.shape[1]
    out_h, out_w = dout.shape[2], dout.shape[3]
    plane = out_h * out_w
    channels, kernel_h, kernel_w = dw.shape[1], dw.shape[2], dw.shape[3]
    rows = channels * kernel_h * kernel_w
    # Each sample's own gradient first (one iteration per sample, no shared output)...
    per_sample = np.empty((n_samples, filters, rows), dtype=dw.dtype)
    for n in prange(n_samples):
        cols = np.empty((rows, plane), dtype=xp.dtype)
        im2col(xp[n], kernel_h, kernel_w, stride_h, stride_w, out_h, out_w, cols)
        np.dot(dout[n].reshape((filters, plane)), cols.T, per_sample[n])
    # ...then their sum over the batch in sample order, in float64, per filter.
    dw_rows = dw.reshape((filters, rows))
    for f in prange(filters):
        total = np.zeros(rows)
        for n in range(n_samples):
            for r in range(rows):
                total[r] += per_sample[n, f, r]
        for r in range(rows):
            dw_rows[f, r] = total[r]


@njit(parallel=True, cache=True)
def conv2d_backward_bias(dout, db):
    """db[f] = sum of dout[:, f]. dout (N, F, OH, OW); writes db (F,)."""
    n_samples, filters, out_h, out_w = dout.shape
    # Parallel over filters: iteration f owns db[f]; fixed summation order inside.
    for f in prange(filters):
        acc = 0.0
        for n in range(n_samples):
            for oh in range(out_h):
                for ow in range(out_w):
                    acc += dout[n, f, oh, ow]
        db[f] = acc
