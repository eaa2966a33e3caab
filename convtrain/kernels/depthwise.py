"""Depthwise convolution (groups = channels: MobileNet's), direct loops: where each group
has one channel, im2col's products are (m x KH*KW)·(KH*KW x OH*OW), too small for BLAS.

    x, dx   (N, C, H, W)
    w       (F, 1, KH, KW)    F = m·C: filter f reads channel f // m
    out     (N, F, OH, OW)    OH = (H + pad_top + pad_bottom - (KH-1)·DH - 1) // SH + 1
    xp      (HP, WP)          one channel plane, zero-padded, per iteration
Each output's sum runs over (kh, kw) in order, in float64, a tap at a time over the whole
output plane (the inner loop along a row vectorises). Iterations own disjoint outputs, so
results are the same for any number of threads. Indices are unsigned, as in
convtrain.kernels.conv, so that Numba adds no wrap-around check to each access.
"""

import numpy as np
from numba import njit, prange, uint64


@njit(cache=True)
def _padded_plane(plane, pad_top, pad_left, padded_h, padded_w):
    """plane (H, W) placed at (pad_top, pad_left) in zeros of (padded_h, padded_w)."""
    xp = np.zeros((padded_h, padded_w), dtype=plane.dtype)
    for h in range(plane.shape[0]):
        for w in range(plane.shape[1]):
            xp[pad_top + h, pad_left + w] = plane[h, w]
    return xp


@njit(parallel=True, cache=True)
def depthwise_forward(x, w, b, stride_h, stride_w, dilation_h, dilation_w, pad_top, pad_left,
                      padded_h, padded_w, out):
    """out[n, f] = b[f] + xp[n, f // m] ⋆ w[f], the window's taps DH, DW apart."""
    n_samples, channels = x.shape[0], x.shape[1]
    filters, _, kernel_h, kernel_w = w.shape
    multiplier = filters // channels
    out_h, out_w = out.shape[2], out.shape[3]
    for nf in prange(n_samples * filters):
        n, f = nf // filters, nf % filters
        xp = _padded_plane(x[n, f // multiplier], pad_top, pad_left, padded_h, padded_w)
        if stride_h == 1 and stride_w == 1:
            # Rows as long as the padded plane's: each tap one contiguous run over all the
            # output rows at once (the padded_w - OW columns past each row's end unused).
            flat = xp.reshape(padded_h * padded_w)
            span = uint64((out_h - 1) * padded_w + out_w)
            wide = np.zeros(span)
            for kh in range(kernel_h):
                for kw in range(kernel_w):
                    tap = w[f, 0, kh, kw]
                    start = uint64(kh * dilation_h * padded_w + kw * dilation_w)
                    for i in range(span):
                        wide[i] += tap * flat[start + i]
            for oh in range(out_h):
                for ow in range(uint64(out_w)):
                    out[n, f, oh, ow] = wide[uint64(oh * padded_w) + ow] + b[f]
            continue
        total = np.zeros((out_h, out_w))
        for kh in range(kernel_h):
            for kw in range(kernel_w):
                tap = w[f, 0, kh, kw]
                for oh in range(out_h):
                    row = xp[oh * stride_h + kh * dilation_h]
                    start, step = uint64(kw * dilation_w), uint64(stride_w)
                    for ow in range(uint64(out_w)):
                        total[oh, ow] += tap * row[start + ow * step]
        for oh in range(out_h):
            for ow in range(uint64(out_w)):
                out[n, f, oh, ow] = total[oh, ow] + b[f]


@njit(parallel=True, cache=True)
def depthwise_backward_input(dout, w, stride_h, stride_w, dilation_h, dilation_w, pad_top,
                             pad_left, padded_h, padded_w, dx):
    """dx[n, c] = the sum, over channel c's filters and their windows, of w times dout,
    added into a padded float64 plane in (filter, kh, kw, oh, ow) order, cut to the input."""
    n_samples, filters, out_h, out_w = dout.shape
    channels, in_h, in_w = dx.shape[1], dx.shape[2], dx.shape[3]
    kernel_h, kernel_w = w.shape[2], w.shape[3]
    multiplier = filters // channels
    for nc in prange(n_samples * channels):
        n, c = nc // channels, nc % channels
        dxp = np.zeros((padded_h, padded_w))
        for f in range(c * multiplier, (c + 1) * multiplier):
            for kh in range(kernel_h):
                for kw in range(kernel_w):
                    tap = w[f, 0, kh, kw]
                    for oh in range(out_h):
                        row = dxp[oh * stride_h + kh * dilation_h]
                        start, step = uint64(kw * dilation_w), uint64(stride_w)
                        for ow in range(uint64(out_w)):
                            row[start + ow * step] += tap * dout[n, f, oh, ow]
        for h in range(in_h):
            for iw in range(uint64(in_w)):
                dx[n, c, h, iw] = dxp[pad_top + h, pad_left + iw]


@njit(parallel=True, cache=True)
def depthwise_weight_per_sample(x, dout, kernel_h, kernel_w, stride_h, stride_w, dilation_h,
                                dilation_w, pad_top, pad_left, padded_h, padded_w, per_sample):
    """Each sample's own kernel gradient: per_sample[n, f, kh*KW + kw] = the sum over the
    output of dout[n, f] times the input its tap (kh, kw) saw, in float64: a running sum per
    output column over the rows (a vector of them, which vectorises), then the columns in
    order. per_sample (N, F, KH*KW) float64."""
    n_samples, filters, out_h, out_w = dout.shape
    channels = x.shape[1]
    multiplier = filters // channels
    for nf in prange(n_samples * filters):
        n, f = nf // filters, nf % filters
        xp = _padded_plane(x[n, f // multiplier], pad_top, pad_left, padded_h, padded_w)
        columns = np.empty(out_w)
        for kh in range(kernel_h):
            for kw in range(kernel_w):
                columns[:] = 0.0
                start, step = uint64(kw * dilation_w), uint64(stride_w)
                for oh in range(out_h):
                    row = xp[oh * stride_h + kh * dilation_h]
                    for ow in range(uint64(out_w)):
                        columns[ow] += dout[n, f, oh, ow] * row[start + ow * step]
                total = 0.0
                for ow in range(out_w):
                    total += columns[ow]
                per_sample[n, f, kh * kernel_w + kw] = total
