"""Pooling kernels. Shapes as in `convtrain.kernels.conv`:
    x (N, C, H, W), out (N, C, OH, OW) with OH = (H - PH) // SH + 1 (no padding),
    argmax (N, C, OH, OW) int32: flat index h*W + w of each window's maximum in x[n, c].

Windows may overlap (stride < size); the backward kernels add every window's
share into dx inside one iteration that owns dx[n, c], so overlaps never race.
Rows or columns left over when the window does not fit get zero gradient.

Indices are unsigned (`uint64`) so Numba skips its negative-index wrap-around
check on each access (see `convtrain.kernels.conv`); here it made maxpool 4x faster.
"""

from numba import njit, prange, uint64

from convtrain.kernels.ordered_sums import row_total


@njit(parallel=True, cache=True)
def maxpool_forward(x, pool_h, pool_w, stride_h, stride_w, out, argmax):
    """Writes out (N, C, OH, OW) = window maxima of x (N, C, H, W) and their argmax.

    Ties go to the first maximum in row-major order within the window.
    """
    n_samples, channels, width = x.shape[0], x.shape[1], uint64(x.shape[3])
    out_h, out_w = uint64(out.shape[2]), uint64(out.shape[3])
    pool_h, pool_w = uint64(pool_h), uint64(pool_w)
    stride_h, stride_w = uint64(stride_h), uint64(stride_w)
    # Parallel over (sample, channel): iteration nc owns out[n, c] and argmax[n, c].
    for nc in prange(n_samples * channels):
        n = nc // channels
        c = nc - n * channels
        for oh in range(out_h):
            for ow in range(out_w):
                top, left = oh * stride_h, ow * stride_w
                best = x[n, c, top, left]
                best_index = top * width + left
                for ph in range(pool_h):
                    for pw in range(pool_w):
                        value = x[n, c, top + ph, left + pw]
                        if value > best:
                            best = value
                            best_index = (top + ph) * width + left + pw
                out[n, c, oh, ow] = best
                argmax[n, c, oh, ow] = best_index


@njit(parallel=True, cache=True)
def maxpool2x2_forward(x, out, argmax):
    """maxpool_forward for size 2, stride 2, the common case: the four loads written out,
    which runs 4x faster than the general loops (LeNet's maxpool3: 0.56 -> 0.14 ms).
    Same results, ties included. x (N, C, H, W) -> out, argmax (N, C, H // 2, W // 2)."""
    n_samples, channels, width = x.shape[0], x.shape[1], uint64(x.shape[3])
    out_h, out_w = uint64(out.shape[2]), uint64(out.shape[3])
    one, two = uint64(1), uint64(2)
    for nc in prange(n_samples * channels):
        n = nc // channels
        c = nc - n * channels
        for oh in range(out_h):
            top = oh * two
            for ow in range(out_w):
                left = ow * two
                best, index = x[n, c, top, left], top * width + left
                value = x[n, c, top, left + one]
                if value > best:  # strict: the first maximum in row-major order stays
                    best, index = value, top * width + left + one
                value = x[n, c, top + one, left]
                if value > best:
                    best, index = value, (top + one) * width + left
                value = x[n, c, top + one, left + one]
                if value > best:
                    best, index = value, (top + one) * width + left + one
                out[n, c, oh, ow] = best
                argmax[n, c, oh, ow] = index


@njit(parallel=True, cache=True)
def maxpool_backward(dout, argmax, dx_flat):
    """Routes dout (N, C, OH, OW) to each window's argmax; writes dx_flat (N, C, H*W),
    dx with each plane flattened (argmax holds flat indices: no division per element)."""
    n_samples, channels = dout.shape[0], dout.shape[1]
    out_h, out_w = uint64(dout.shape[2]), uint64(dout.shape[3])
    for nc in prange(n_samples * channels):
        n = nc // channels
        c = nc - n * channels
        dx_flat[n, c, :] = 0.0
        for oh in range(out_h):
            for ow in range(out_w):
                dx_flat[n, c, uint64(argmax[n, c, oh, ow])] += dout[n, c, oh, ow]


@njit(parallel=True, cache=True)
def avgpool_forward(x, pool_h, pool_w, stride_h, stride_w, out):
    """Writes out (N, C, OH, OW) = window means of x (N, C, H, W)."""
    n_samples, channels = x.shape[0], x.shape[1]
    out_h, out_w = uint64(out.shape[2]), uint64(out.shape[3])
    scale = 1.0 / (pool_h * pool_w)
    pool_h, pool_w = uint64(pool_h), uint64(pool_w)
    stride_h, stride_w = uint64(stride_h), uint64(stride_w)
    for nc in prange(n_samples * channels):
        n = nc // channels
        c = nc - n * channels
        for oh in range(out_h):
            for ow in range(out_w):
                top, left = oh * stride_h, ow * stride_w
                acc = 0.0
                for ph in range(pool_h):
                    for pw in range(pool_w):
                        acc += x[n, c, top + ph, left + pw]
                out[n, c, oh, ow] = acc * scale


@njit(parallel=True, cache=True)
def avgpool_backward(dout, pool_h, pool_w, stride_h, stride_w, dx):
    """Spreads dout (N, C, OH, OW) evenly over each window; writes dx (N, C, H, W)."""
    n_samples, channels = dout.shape[0], dout.shape[1]
    out_h, out_w = uint64(dout.shape[2]), uint64(dout.shape[3])
    scale = 1.0 / (pool_h * pool_w)
    pool_h, pool_w = uint64(pool_h), uint64(pool_w)
    stride_h, stride_w = uint64(stride_h), uint64(stride_w)
    for nc in prange(n_samples * channels):
        n = nc // channels
        c = nc - n * channels
        dx[n, c, :, :] = 0.0
        for oh in range(out_h):
            for ow in range(out_w):
                share = dout[n, c, oh, ow] * scale
                top, left = oh * stride_h, ow * stride_w
                for ph in range(pool_h):
                    for pw in range(pool_w):
                        dx[n, c, top + ph, left + pw] += share


@njit(parallel=True, cache=True)
def globalavgpool_forward(x_flat, out):
    """out[n, c] = the mean of x[n, c] over H and W. x_flat (N, C, H*W) -> out (N, C)."""
    n_samples, channels, plane = x_flat.shape
    scale = 1.0 / plane
    # Iteration nc owns out[n, c]; each plane is summed in order, in float64.
    for nc in prange(n_samples * channels):
        n = nc // channels
        c = nc - n * channels
        out[n, c] = row_total(x_flat[n], c) * scale


@njit(parallel=True, cache=True)
def globalavgpool_backward(dout, dx_flat):
    """Spreads dout (N, C) evenly over each plane: writes dx_flat (N, C, H*W)."""
    n_samples, channels, plane = dx_flat.shape
    scale = 1.0 / plane
    for nc in prange(n_samples * channels):
        n = nc // channels
        c = nc - n * channels
        share = dout[n, c] * scale
        for i in range(uint64(plane)):
            dx_flat[n, c, i] = share


# Padded windows (`padding`, `ceil_mode`), PyTorch's semantics. Window (oh, ow) starts at
# row oh*SH - PH and column ow*SW - PW (PH, PW the padding of the top and the left; a window
# may reach past the bottom and right into the padding, or with ceil_mode past it). Max
# pooling pads with -inf: a window's maximum is over the input entries it covers, which it
# always has (the padding is at most half the window). Average pooling sums those entries
# and divides by the window's size cut to the padded input (count_include_pad) or by the
# number of input entries it covers. Signed indices: slower than the unpadded kernels,
# which the layers keep for windows without padding.


@njit(cache=True, inline="always")
def _span(index, stride, pad, size, extent):
    """(first, last + 1) of a window along one axis, cut to the input [0, extent), and its
    length cut to the padded input [-pad, extent + pad) instead."""
    start = index * stride - pad
    end = min(start + size, extent + pad)
    padded_length = end - start
    return max(start, 0), min(end, extent), padded_length


@njit(cache=True, inline="always")
def _divisor(top, bottom, span_h, left, right, span_w, count_include_pad):
    """An average window's divisor: its size cut to the padded input, or its input entries."""
    return span_h * span_w if count_include_pad else (bottom - top) * (right - left)


@njit(parallel=True, cache=True)
def maxpool_padded_forward(x, pool_h, pool_w, stride_h, stride_w, pad_h, pad_w, out, argmax):
    """out (N, C, OH, OW) = the maxima of x (N, C, H, W) over each padded window, argmax
    their flat index h*W + w in x[n, c]. Ties go to the first maximum in row-major order."""
    n_samples, channels, height, width = x.shape
    out_h, out_w = out.shape[2], out.shape[3]
    for nc in prange(n_samples * channels):
        n = nc // channels
        c = nc - n * channels
        for oh in range(out_h):
            top, bottom, _ = _span(oh, stride_h, pad_h, pool_h, height)
            for ow in range(out_w):
                left, right, _ = _span(ow, stride_w, pad_w, pool_w, width)
                best, best_index = x[n, c, top, left], top * width + left
                for h in range(top, bottom):
                    for w in range(left, right):
                        if x[n, c, h, w] > best:
                            best, best_index = x[n, c, h, w], h * width + w
                out[n, c, oh, ow] = best
                argmax[n, c, oh, ow] = best_index


@njit(parallel=True, cache=True)
def avgpool_padded_forward(x, pool_h, pool_w, stride_h, stride_w, pad_h, pad_w,
                           count_include_pad, out):
    """out (N, C, OH, OW) = each padded window's sum over x (N, C, H, W), in row-major
    order in float64, over its divisor (above)."""
    n_samples, channels, height, width = x.shape
    out_h, out_w = out.shape[2], out.shape[3]
    for nc in prange(n_samples * channels):
        n = nc // channels
        c = nc - n * channels
        for oh in range(out_h):
            top, bottom, span_h = _span(oh, stride_h, pad_h, pool_h, height)
            for ow in range(out_w):
                left, right, span_w = _span(ow, stride_w, pad_w, pool_w, width)
                total = 0.0
                for h in range(top, bottom):
                    for w in range(left, right):
                        total += x[n, c, h, w]
                out[n, c, oh, ow] = total / _divisor(top, bottom, span_h, left, right, span_w,
                                                     count_include_pad)


@njit(parallel=True, cache=True)
def avgpool_padded_backward(dout, pool_h, pool_w, stride_h, stride_w, pad_h, pad_w,
                            count_include_pad, dx):
    """Each dout (N, C, OH, OW) entry over its window's divisor, added to every input entry
    the window covers; writes dx (N, C, H, W). Iteration nc owns dx[n, c]."""
    n_samples, channels, height, width = dx.shape
    out_h, out_w = dout.shape[2], dout.shape[3]
    for nc in prange(n_samples * channels):
        n = nc // channels
        c = nc - n * channels
        dx[n, c, :, :] = 0.0
        for oh in range(out_h):
            top, bottom, span_h = _span(oh, stride_h, pad_h, pool_h, height)
            for ow in range(out_w):
                left, right, span_w = _span(ow, stride_w, pad_w, pool_w, width)
                share = dout[n, c, oh, ow] / _divisor(top, bottom, span_h, left, right, span_w,
                                                       count_include_pad)
                for h in range(top, bottom):
                    for w in range(left, right):
                        dx[n, c, h, w] += share
