"""Convolution kernels: forward, delta to the layer below, kernel and bias gradients.

Shape vocabulary (used by every kernel module):
    x    (N, C, H, W)     a batch of N samples with C channels
    xp   (N, C, HP, WP)   x zero-padded: HP = H + pad_top + pad_bottom; the kernels pad
                          one sample at a time (`pad_sample`), while it is in cache
    w    (F, C, KH, KW)   F filters
    b    (F,)
    out  (N, F, OH, OW)   OH = (HP - KH) // SH + 1, OW = (WP - KW) // SW + 1
    cols (C*KH*KW, OH*OW) one sample's windows, one column per output pixel:
                          cols[(c*KH + kh)*KW + kw, oh*OW + ow] = xp[n, c, oh*SH + kh, ow*SW + kw]
    shifted (C, KW, HP, OW)  a sample's columns shifted by each kw, the step between xp and cols:
                          shifted[c, kw, ih, ow] = xp[n, c, ih, ow*SW + kw]
    d<name>               the gradient of the loss w.r.t. <name>, same shape as <name>
All arrays are C-contiguous (the layer makes them so): the kernels view out[n] and dout[n]
as (F, OH*OW) matrices.

All kernels compute cross-correlation, out[n, f, oh, ow] =
    b[f] + sum_{c, kh, kw} w[f, c, kh, kw] * xp[n, c, oh*SH + kh, ow*SW + kw];
a true convolution is the same with w flipped, which the layer does.

How: per sample, copy the windows into `cols` (im2col) and make the sum one matrix
product, w as (F, C*KH*KW) times cols, done by BLAS (`np.dot` inside Numba calls
SciPy's BLAS); the product is out[n] itself, (F, OH*OW). The kernel gradient is cols
times dout[n]^T; the delta to the layer below is w^T times dout[n], added back into
the windows (col2im). Each `prange` iteration owns one sample; BLAS runs
single-threaded inside it (`convtrain.runtime` sets that up).

im2col in two steps, so that the copies run long enough to vectorise: first each
row of the sample, shifted by kw, into `shifted` (C*KW*HP runs of OW); then, for
stride 1, each row of cols is one run of OH*OW values of `shifted`: rows kh..kh+OH-1
of shifted[c, kw] are contiguous. Copying windows straight into cols takes C*KH*KW*OH
runs of OW, which stay scalar for small OW (LeNet's conv2: 1,500 runs of 10 per
sample). col2im is the same two steps backwards, adding.

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
def pad_sample(xs, pad_top, pad_left, padded):
    """padded (C, HP, WP) = zeros with xs (C, H, W) placed at (pad_top, pad_left)."""
    channels, in_h, in_w = xs.shape
    padded[:] = 0.0
    for c in range(channels):
        for ih in range(in_h):
            for iw in range(uint64(in_w)):
                padded[c, pad_top + ih, pad_left + iw] = xs[c, ih, iw]


@njit(cache=True)
def padded_sample(xs, pad_top, pad_left, xps):
    """xs (C, H, W) itself where xps (C, HP, WP) has its size, else xps holding xs padded."""
    if xps.shape[1] == xs.shape[1] and xps.shape[2] == xs.shape[2]:
        return xs
    pad_sample(xs, pad_top, pad_left, xps)
    return xps


# im2col and col2im each do both of their steps in one function: Numba re-optimizes a
# called function's machine code inside every caller, and the conv kernels' parallel loops
# already add two levels of callers, so one level fewer saves about 0.5 s of compilation
# per conv kernel (scripts/compile_times.py).
@njit(cache=True)
def im2col(xs, kernel_h, stride_h, stride_w, shifted, cols):
    """One sample's windows: xs (C, HP, WP) -> cols (C*KH*KW, OH*OW), through shifted
    (C, KW, HP, OW), a scratch buffer."""
    channels, kernel_w, in_h, out_w = shifted.shape
    # Step 1: shifted[c, kw, ih, ow] = xs[c, ih, ow*SW + kw].
    stride_w = uint64(stride_w)
    for c in range(uint64(channels)):
        for kw in range(uint64(kernel_w)):
            for ih in range(uint64(in_h)):
                for ow in range(uint64(out_w)):
                    shifted[c, kw, ih, ow] = xs[c, ih, ow * stride_w + kw]
    # Step 2: cols[(c*KH + kh)*KW + kw, oh*OW + ow] = shifted[c, kw, oh*SH + kh, ow].
    runs = shifted.reshape((channels, kernel_w, in_h * out_w))
    kernel_h, stride_h, out_w = uint64(kernel_h), uint64(stride_h), uint64(out_w)
    out_h = uint64(cols.shape[1]) // out_w
    row = uint64(0)
    for c in range(uint64(channels)):
        for kh in range(kernel_h):
            for kw in range(uint64(kernel_w)):
                if stride_h == uint64(1):  # one run: rows kh .. kh+OH-1 of shifted[c, kw]
                    start = kh * out_w
                    for q in range(out_h * out_w):
                        cols[row, q] = runs[c, kw, start + q]
                else:
                    for oh in range(out_h):
                        start = (oh * stride_h + kh) * out_w
                        for ow in range(out_w):
                            cols[row, oh * out_w + ow] = runs[c, kw, start + ow]
                row += uint64(1)


@njit(cache=True)
def col2im(dcols, kernel_h, stride_h, stride_w, dshifted, dxs):
    """The adjoint of im2col: dxs (C, HP, WP), which it overwrites, receives the sum of the
    dcols (C*KH*KW, OH*OW) entries copied from each of its entries, through dshifted
    (C, KW, HP, OW), a scratch buffer."""
    channels, kernel_w, in_h, out_w = dshifted.shape
    # The adjoint of step 2: dshifted receives each dcols entry at the place step 2 took it.
    runs = dshifted.reshape((channels, kernel_w, in_h * out_w))
    runs[:] = 0.0
    kernel_h, stride_h, out_w = uint64(kernel_h), uint64(stride_h), uint64(out_w)
    out_h = uint64(dcols.shape[1]) // out_w
    row = uint64(0)
    for c in range(uint64(channels)):
        for kh in range(kernel_h):
            for kw in range(uint64(kernel_w)):
                if stride_h == uint64(1):
                    start = kh * out_w
                    for q in range(out_h * out_w):
                        runs[c, kw, start + q] += dcols[row, q]
                else:
                    for oh in range(out_h):
                        start = (oh * stride_h + kh) * out_w
                        for ow in range(out_w):
                            runs[c, kw, start + ow] += dcols[row, oh * out_w + ow]
                row += uint64(1)
    # The adjoint of step 1, kw in order.
    stride_w = uint64(stride_w)
    dxs[:] = 0.0
    for c in range(uint64(channels)):
        for kw in range(uint64(kernel_w)):
            for ih in range(uint64(in_h)):
                for ow in range(out_w):
                    dxs[c, ih, ow * stride_w + kw] += dshifted[c, kw, ih, ow]


@njit(parallel=True, cache=True)
def conv2d_forward(x, w, b, stride_h, stride_w, pad_top, pad_left, padded_h, padded_w, out,
                   groups=1):
    """out = xp ⋆ w + b, xp = x placed at (pad_top, pad_left) in zeros of (padded_h,
    padded_w). x (N, C, H, W), w (F, C/G, KH, KW), b (F,); writes out (N, F, OH, OW).
    With G groups, filter group g (F/G filters) sees channel group g (C/G channels) only:
    a sample's window rows of group g are one block of cols, multiplied by its own."""
    n_samples, channels = x.shape[0], x.shape[1]
    filters, kernel_h, kernel_w = w.shape[0], w.shape[2], w.shape[3]
    out_h, out_w = out.shape[2], out.shape[3]
    rows = channels * kernel_h * kernel_w
    group_rows, group_filters = rows // groups, filters // groups
    w_rows = w.reshape((filters, group_rows))
    for n in prange(n_samples):
        xps = np.empty((channels, padded_h, padded_w), dtype=x.dtype)
        shifted = np.empty((channels, kernel_w, padded_h, out_w), dtype=x.dtype)
        cols = np.empty((rows, out_h * out_w), dtype=x.dtype)
        im2col(padded_sample(x[n], pad_top, pad_left, xps), kernel_h, stride_h, stride_w,
               shifted, cols)
        product = out[n].reshape((filters, out_h * out_w))
        if groups == 1:  # whole arrays: a slice would reach BLAS by another path (a copy)
            np.dot(w_rows, cols, product)
        else:
            for g in range(groups):
                np.dot(w_rows[g * group_filters:(g + 1) * group_filters],
                       cols[g * group_rows:(g + 1) * group_rows],
                       product[g * group_filters:(g + 1) * group_filters])
        for f in range(filters):
            for q in range(uint64(out_h * out_w)):
                product[f, q] += b[f]


@njit(parallel=True, cache=True)
def conv2d_backward_input(dout, w, stride_h, stride_w, pad_top, pad_left, padded_h, padded_w,
                          dx, groups=1):
    """dx = full correlation of dout with w, cut to the unpadded input. dout (N, F, OH, OW),
    w (F, C, KH, KW); the padded input was (padded_h, padded_w), x placed at (pad_top,
    pad_left); writes dx (N, C, H, W).

    Each sample's gradient is added up (col2im) in a padded buffer of its own and its
    inside copied to dx while in cache, so that dx is one contiguous array: a strided
    view of a padded batch made the layer below copy it (a ReLU's backward ran 3-6x
    slower). Without padding, col2im writes dx[n] itself."""
    n_samples, filters, out_h, out_w = dout.shape
    kernel_h, kernel_w = w.shape[2], w.shape[3]
    channels, in_h, in_w = dx.shape[1], dx.shape[2], dx.shape[3]
    padded = padded_h != in_h or padded_w != in_w
    rows = channels * kernel_h * kernel_w
    group_rows, group_filters = rows // groups, filters // groups
    w_rows = w.reshape((filters, group_rows))
    w_columns = np.empty((groups, group_rows, group_filters), dtype=w.dtype)
    for g in range(groups):  # each group's (C/G*KH*KW, F/G) block, contiguous
        w_columns[g] = w_rows[g * group_filters:(g + 1) * group_filters].T
    for n in prange(n_samples):
        dcols = np.empty((rows, out_h * out_w), dtype=dout.dtype)
        dshifted = np.empty((channels, kernel_w, padded_h, out_w), dtype=dout.dtype)
        douts = dout[n].reshape((filters, out_h * out_w))
        if groups == 1:
            np.dot(w_columns[0], douts, dcols)
        else:
            for g in range(groups):
                np.dot(w_columns[g], douts[g * group_filters:(g + 1) * group_filters],
                       dcols[g * group_rows:(g + 1) * group_rows])
        if padded:
            dxs = np.empty((channels, padded_h, padded_w), dtype=dout.dtype)
            col2im(dcols, kernel_h, stride_h, stride_w, dshifted, dxs)
            for c in range(channels):
                for ih in range(in_h):
                    for iw in range(uint64(in_w)):
                        dx[n, c, ih, iw] = dxs[c, pad_top + ih, pad_left + iw]
        else:
            col2im(dcols, kernel_h, stride_h, stride_w, dshifted, dx[n])


@njit(parallel=True, cache=True)
def conv2d_weight_per_sample(x, dout, kernel_h, kernel_w, stride_h, stride_w, pad_top,
                             pad_left, padded_h, padded_w, per_sample):
    """Each sample's own kernel gradient, xp[n] ⋆ dout[n], transposed, group by group:
    per_sample[n, g*R + r, f] = dw_n[g*F/G + f, c, kh, kw] with r = (c*KH + kh)*KW + kw
    over group g's C/G channels (R = C/G*KH*KW). x (N, C, H, W) padded as in
    `conv2d_forward`, dout (N, F, OH, OW); writes per_sample (N, G*R, F/G), G from its
    shape. One iteration per sample, no shared output."""
    n_samples, filters, out_h, out_w = dout.shape
    channels = x.shape[1]
    rows = channels * kernel_h * kernel_w
    group_filters = per_sample.shape[2]
    groups = filters // group_filters
    group_rows = rows // groups
    # Transposed because BLAS runs cols (rows, L) times dout[n]^T faster than dout[n]
    # (F, L) times cols^T (LeNet's conv2: 9 against 14 us per sample; conv1 about the same).
    for n in prange(n_samples):
        xps = np.empty((channels, padded_h, padded_w), dtype=x.dtype)
        shifted = np.empty((channels, kernel_w, padded_h, out_w), dtype=x.dtype)
        cols = np.empty((rows, out_h * out_w), dtype=x.dtype)
        im2col(padded_sample(x[n], pad_top, pad_left, xps), kernel_h, stride_h, stride_w,
               shifted, cols)
        douts = dout[n].reshape((filters, out_h * out_w))
        if groups == 1:
            np.dot(cols, douts.T, per_sample[n])
        else:
            for g in range(groups):
                np.dot(cols[g * group_rows:(g + 1) * group_rows],
                       douts[g * group_filters:(g + 1) * group_filters].T,
                       per_sample[n, g * group_rows:(g + 1) * group_rows])


@njit(parallel=True, cache=True)
def conv2d_bias_column_sums(dout, column_sums):
    """column_sums[f, ow] += sum over n and oh of dout[n, f, oh, ow], in (n, oh) order.
    dout (N, F, OH, OW); column_sums (F, OW) float64.

    One float64 partial sum per output column keeps the inner loop independent and
    vectorised (a single running sum would not vectorise without letting the compiler
    reorder it); `ordered_sums.row_totals` adds the columns up last. Parallel over filters:
    iteration f owns column_sums[f]."""
    n_samples, filters, out_h, out_w = dout.shape
    for f in prange(filters):
        columns = column_sums[f].copy()
        for n in range(n_samples):
            for oh in range(out_h):
                for ow in range(uint64(out_w)):
                    columns[ow] += dout[n, f, oh, ow]
        column_sums[f] = columns


@njit(parallel=True, cache=True)
def add_channel_bias(out, bias):
    """out[n, f] += bias[f] over each plane (conv_transpose2d's bias). out (N, F, OH, OW)."""
    for n in prange(out.shape[0]):
        for f in range(out.shape[1]):
            out[n, f] += bias[f]
