"""Convolution kernels: forward, delta to the layer below, kernel and bias gradients.

Shape vocabulary (used by every kernel module):
    x    (N, C, H, W)     a batch of N samples with C channels
    xp   (N, C, HP, WP)   x zero-padded: HP = H + pad_top + pad_bottom
    w    (F, C, KH, KW)   F filters
    b    (F,)
    out  (N, F, OH, OW)   OH = (HP - KH) // SH + 1, OW = (WP - KW) // SW + 1
    cols (C*KH*KW, OH*PITCH)  one sample's windows, one column per output pixel:
                          cols[(c*KH + kh)*KW + kw, oh*PITCH + ow] = xp[n, c, oh*SH + kh, ow*SW + kw]
    PITCH                 columns per output row in cols: OW, or WP for stride 1 (below)
    d<name>               the gradient of the loss w.r.t. <name>, same shape as <name>

All kernels compute cross-correlation, out[n, f, oh, ow] =
    b[f] + sum_{c, kh, kw} w[f, c, kh, kw] * xp[n, c, oh*SH + kh, ow*SW + kw];
a true convolution is the same with w flipped, which the layer does.

How: per sample, copy the windows into `cols` (im2col) and make the sum one matrix
product, w as (F, C*KH*KW) times cols, done by BLAS (`np.dot` inside Numba calls
SciPy's BLAS). The delta to the layer below is the transposed product, added back
into the windows (col2im). Each `prange` iteration owns one sample; BLAS runs
single-threaded inside it (`convtrain.runtime` sets that up).

Stride 1 uses "wide" rows (PITCH = WP): row (c, kh, kw) of cols is then one
contiguous run of the flattened input plane, xp[n, c].flat[kh*WP + kw + q], so
im2col and col2im copy runs of ~OH*WP elements instead of OH runs of OW, which
LLVM vectorises (runs of 10 stayed scalar: LeNet's conv2 forward went from 0.58 to
0.43 ms). Columns q = oh*WP + ow with ow >= OW are junk: the forward drops them,
and the backward kernels give them a zero delta, so they add exactly nothing.

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
def row_pitch(in_w, out_w, stride_h, stride_w):
    """Columns per output row in `cols`: the input width for stride 1 ("wide" rows)."""
    return in_w if stride_h == 1 and stride_w == 1 else out_w


@njit(cache=True)
def im2col(xs, kernel_h, kernel_w, stride_h, stride_w, out_h, out_w, pitch, cols):
    """Copies one sample's windows: xs (C, HP, WP) -> cols (C*KH*KW, OH*PITCH)."""
    channels, in_w = uint64(xs.shape[0]), uint64(xs.shape[2])
    kernel_h, kernel_w = uint64(kernel_h), uint64(kernel_w)
    stride_h, stride_w = uint64(stride_h), uint64(stride_w)
    out_h, out_w, pitch = uint64(out_h), uint64(out_w), uint64(pitch)
    width = uint64(cols.shape[1])
    planes = xs.reshape((xs.shape[0], xs.shape[1] * xs.shape[2]))
    # With wide rows (pitch == WP) the run ends at the last real column, inside the plane.
    run = (out_h - uint64(1)) * pitch + out_w
    row = uint64(0)
    for c in range(channels):
        for kh in range(kernel_h):
            for kw in range(kernel_w):
                if stride_h == uint64(1) and stride_w == uint64(1):  # wide rows
                    offset = kh * in_w + kw
                    for q in range(run):
                        cols[row, q] = planes[c, offset + q]
                    for q in range(run, width):
                        cols[row, q] = 0.0
                else:
                    for oh in range(out_h):
                        ih = oh * stride_h + kh
                        start = oh * pitch
                        for ow in range(out_w):
                            cols[row, start + ow] = xs[c, ih, ow * stride_w + kw]
                row += uint64(1)


@njit(cache=True)
def col2im(dcols, kernel_h, kernel_w, stride_h, stride_w, out_h, out_w, pitch, dxs):
    """Adds each window's gradient back where it came from: dcols (C*KH*KW, OH*PITCH) ->
    dxs (C, HP, WP), which it overwrites. Overlapping windows add up in a fixed order."""
    channels, in_w = uint64(dxs.shape[0]), uint64(dxs.shape[2])
    kernel_h, kernel_w = uint64(kernel_h), uint64(kernel_w)
    stride_h, stride_w = uint64(stride_h), uint64(stride_w)
    out_h, out_w, pitch = uint64(out_h), uint64(out_w), uint64(pitch)
    planes = dxs.reshape((dxs.shape[0], dxs.shape[1] * dxs.shape[2]))
    planes[:] = 0.0
    run = (out_h - uint64(1)) * pitch + out_w
    row = uint64(0)
    for c in range(channels):
        for kh in range(kernel_h):
            for kw in range(kernel_w):
                if stride_h == uint64(1) and stride_w == uint64(1):  # wide rows
                    offset = kh * in_w + kw
                    for q in range(run):
                        planes[c, offset + q] += dcols[row, q]
                else:
                    for oh in range(out_h):
                        ih = oh * stride_h + kh
                        start = oh * pitch
                        for ow in range(out_w):
                            dxs[c, ih, ow * stride_w + kw] += dcols[row, start + ow]
                row += uint64(1)


@njit(cache=True)
def widen(dout_f, pitch, wide):
    """One sample's delta in cols' column layout: dout_f (F, OH, OW) -> wide (F, OH*PITCH),
    junk columns zero."""
    filters, out_h, out_w = dout_f.shape
    wide[:] = 0.0
    for f in range(filters):
        for oh in range(uint64(out_h)):
            start = oh * uint64(pitch)
            for ow in range(uint64(out_w)):
                wide[f, start + ow] = dout_f[f, oh, ow]


@njit(parallel=True, cache=True)
def conv2d_forward(xp, w, b, stride_h, stride_w, out):
    """out = xp ⋆ w + b. xp (N, C, HP, WP), w (F, C, KH, KW), b (F,); writes out (N, F, OH, OW)."""
    n_samples = xp.shape[0]
    filters, channels, kernel_h, kernel_w = w.shape
    out_h, out_w = out.shape[2], out.shape[3]
    pitch = row_pitch(xp.shape[3], out_w, stride_h, stride_w)
    rows = channels * kernel_h * kernel_w
    w_rows = w.reshape((filters, rows))
    for n in prange(n_samples):
        cols = np.empty((rows, out_h * pitch), dtype=xp.dtype)
        product = np.empty((filters, out_h * pitch), dtype=xp.dtype)
        im2col(xp[n], kernel_h, kernel_w, stride_h, stride_w, out_h, out_w, pitch, cols)
        np.dot(w_rows, cols, product)
        for f in range(filters):
            for oh in range(uint64(out_h)):
                start = oh * uint64(pitch)
                for ow in range(uint64(out_w)):
                    out[n, f, oh, ow] = product[f, start + ow] + b[f]


@njit(parallel=True, cache=True)
def conv2d_backward_input(dout, w, stride_h, stride_w, dxp):
    """dxp = full correlation of dout with w. dout (N, F, OH, OW), w (F, C, KH, KW); writes dxp (N, C, HP, WP)."""
    n_samples, filters, out_h, out_w = dout.shape
    channels, kernel_h, kernel_w = w.shape[1], w.shape[2], w.shape[3]
    pitch = row_pitch(dxp.shape[3], out_w, stride_h, stride_w)
    rows = channels * kernel_h * kernel_w
    w_columns = np.ascontiguousarray(w.reshape((filters, rows)).T)
    for n in prange(n_samples):
        wide = np.empty((filters, out_h * pitch), dtype=dout.dtype)
        dcols = np.empty((rows, out_h * pitch), dtype=dout.dtype)
        widen(dout[n], pitch, wide)
        np.dot(w_columns, wide, dcols)
        col2im(dcols, kernel_h, kernel_w, stride_h, stride_w, out_h, out_w, pitch, dxp[n])


@njit(parallel=True, cache=True)
def conv2d_backward_weight(xp, dout, stride_h, stride_w, dw):
    """dw = sum over the batch of xp ⋆ dout. xp (N, C, HP, WP), dout (N, F, OH, OW); writes dw (F, C, KH, KW)."""
    n_samples, filters, out_h, out_w = dout.shape
    channels, kernel_h, kernel_w = dw.shape[1], dw.shape[2], dw.shape[3]
    pitch = row_pitch(xp.shape[3], out_w, stride_h, stride_w)
    rows = channels * kernel_h * kernel_w
    # Each sample's own gradient first (one iteration per sample, no shared output),
    # transposed: BLAS runs cols (rows, L) times wide^T faster than wide (F, L) times
    # cols^T (conv2: 12 against 22 us; the same for conv1)...
    per_sample = np.empty((n_samples, rows, filters), dtype=dw.dtype)
    for n in prange(n_samples):
        cols = np.empty((rows, out_h * pitch), dtype=xp.dtype)
        wide = np.empty((filters, out_h * pitch), dtype=dout.dtype)
        im2col(xp[n], kernel_h, kernel_w, stride_h, stride_w, out_h, out_w, pitch, cols)
        widen(dout[n], pitch, wide)
        np.dot(cols, wide.T, per_sample[n])
    # ...then their sum over the batch in sample order, in float64; iteration r owns
    # dw[:, r] and reads per_sample[:, r, :], F contiguous values per sample.
    for r in prange(rows):
        total = np.zeros(filters)
        for n in range(n_samples):
            for f in range(filters):
                total[f] += per_sample[n, r, f]
        c, k = r // (kernel_h * kernel_w), r % (kernel_h * kernel_w)
        for f in range(filters):
            dw[f, c, k // kernel_w, k % kernel_w] = total[f]


@njit(parallel=True, cache=True)
def conv2d_backward_bias(dout, db):
    """db[f] = sum of dout[:, f]. dout (N, F, OH, OW); writes db (F,)."""
    n_samples, filters, out_h, out_w = dout.shape
    # Parallel over filters: iteration f owns db[f]. One float64 partial sum per output
    # column keeps the inner loop independent and vectorised (a single running sum
    # would not vectorise without letting the compiler reorder it); the columns are
    # added up last, in order.
    for f in prange(filters):
        column_sums = np.zeros(out_w)
        for n in range(n_samples):
            for oh in range(out_h):
                for ow in range(uint64(out_w)):
                    column_sums[ow] += dout[n, f, oh, ow]
        acc = 0.0
        for ow in range(out_w):
            acc += column_sums[ow]
        db[f] = acc
