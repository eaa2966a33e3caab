"""Convolution kernels: forward, delta to the layer below, kernel and bias gradients.

Shape vocabulary (used by every kernel module):
    x    (N, C, H, W)     a batch of N samples with C channels
    xp   (N, C, HP, WP)   x zero-padded: HP = H + pad_top + pad_bottom
    w    (F, C, KH, KW)   F filters
    b    (F,)
    out  (N, F, OH, OW)   OH = (HP - KH) // SH + 1, OW = (WP - KW) // SW + 1
    d<name>               the gradient of the loss w.r.t. <name>, same shape as <name>

All kernels compute cross-correlation, out[n, f, oh, ow] =
    b[f] + sum_{c, kh, kw} w[f, c, kh, kw] * xp[n, c, oh*SH + kh, ow*SW + kw];
a true convolution is the same with w flipped, which the layer does.

Every `prange` iteration owns a disjoint slice of its output, and every sum over
the batch runs serially inside one iteration in a fixed order, so results are
race-free and bit-identical for any number of threads.
"""

import numpy as np
from numba import njit, prange


@njit(parallel=True, cache=True)
def conv2d_forward(xp, w, b, stride_h, stride_w, out):
    """out = xp ⋆ w + b. xp (N, C, HP, WP), w (F, C, KH, KW), b (F,); writes out (N, F, OH, OW)."""
    n_samples, channels = xp.shape[0], xp.shape[1]
    filters, kernel_h, kernel_w = w.shape[0], w.shape[2], w.shape[3]
    out_h, out_w = out.shape[2], out.shape[3]
    # Parallel over (sample, filter): iteration nf owns out[n, f].
    for nf in prange(n_samples * filters):
        n = nf // filters
        f = nf - n * filters
        for oh in range(out_h):
            for ow in range(out_w):
                out[n, f, oh, ow] = b[f]
        for c in range(channels):
            for kh in range(kernel_h):
                for kw in range(kernel_w):
                    weight = w[f, c, kh, kw]
                    for oh in range(out_h):
                        ih = oh * stride_h + kh
                        # A unit-stride copy of the inner loop lets LLVM vectorise it
                        # (3-4x here); the arithmetic and its order are the same.
                        if stride_w == 1:
                            for ow in range(out_w):
                                out[n, f, oh, ow] += weight * xp[n, c, ih, ow + kw]
                        else:
                            for ow in range(out_w):
                                out[n, f, oh, ow] += weight * xp[n, c, ih, ow * stride_w + kw]


@njit(parallel=True, cache=True)
def conv2d_backward_input(dout, w, stride_h, stride_w, dxp):
    """dxp = full correlation of dout with w. dout (N, F, OH, OW), w (F, C, KH, KW); writes dxp (N, C, HP, WP)."""
    n_samples, filters, out_h, out_w = dout.shape
    channels, kernel_h, kernel_w = w.shape[1], w.shape[2], w.shape[3]
    # Parallel over (sample, channel): iteration nc owns dxp[n, c]; the sum over
    # filters and overlapping windows happens inside it in a fixed order.
    for nc in prange(n_samples * channels):
        n = nc // channels
        c = nc - n * channels
        dxp[n, c, :, :] = 0.0
        for f in range(filters):
            for kh in range(kernel_h):
                for kw in range(kernel_w):
                    weight = w[f, c, kh, kw]
                    for oh in range(out_h):
                        ih = oh * stride_h + kh
                        if stride_w == 1:  # unit stride vectorises, as in conv2d_forward
                            for ow in range(out_w):
                                dxp[n, c, ih, ow + kw] += weight * dout[n, f, oh, ow]
                        else:
                            for ow in range(out_w):
                                dxp[n, c, ih, ow * stride_w + kw] += weight * dout[n, f, oh, ow]


@njit(parallel=True, cache=True)
def conv2d_backward_weight(xp, dout, stride_h, stride_w, dw):
    """dw = sum over the batch of xp ⋆ dout. xp (N, C, HP, WP), dout (N, F, OH, OW); writes dw (F, C, KH, KW)."""
    n_samples, channels = xp.shape[0], xp.shape[1]
    filters, kernel_h, kernel_w = dw.shape[0], dw.shape[2], dw.shape[3]
    out_h, out_w = dout.shape[2], dout.shape[3]
    # Parallel over (filter, channel): iteration fc owns dw[f, c]. No race, and the
    # summation order below is fixed, so every thread count gives the same bits.
    for fc in prange(filters * channels):
        f = fc // channels
        c = fc - f * channels
        # One float64 partial sum per output column: the inner loop then updates
        # independent elements and vectorises (a single scalar sum would not, without
        # letting the compiler reorder it). Columns are added up last, in order.
        column_sums = np.empty(out_w)
        for kh in range(kernel_h):
            for kw in range(kernel_w):
                column_sums[:] = 0.0
                for n in range(n_samples):
                    for oh in range(out_h):
                        ih = oh * stride_h + kh
                        if stride_w == 1:
                            for ow in range(out_w):
                                column_sums[ow] += dout[n, f, oh, ow] * xp[n, c, ih, ow + kw]
                        else:
                            for ow in range(out_w):
                                column_sums[ow] += (dout[n, f, oh, ow]
                                                    * xp[n, c, ih, ow * stride_w + kw])
                total = 0.0
                for ow in range(out_w):
                    total += column_sums[ow]
                dw[f, c, kh, kw] = total


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
