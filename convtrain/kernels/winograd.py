"""Winograd F(2x2, 3x3) kernels for 3x3, stride-1 convolutions: forward (which, with the
kernel rotated, is also the delta to the layer below) and each sample's kernel gradient.

With Lavin & Gray's matrices (2016, "Fast Algorithms for Convolutional Neural Networks"):

    B^T = [1  0 -1  0]     G = [ 1    0    0 ]     A^T = [1  1  1  0]
          [0  1  1  0]         [1/2  1/2  1/2]           [0  1 -1 -1]
          [0 -1  1  0]         [1/2 -1/2  1/2]
          [0  1  0 -1]         [ 0    0    1 ]

each 2x2 block of outputs is A^T [(G w G^T) * (B^T d B)] A, d the 4x4 window of the
padded input under it: 16 multiplications per (f, c) instead of 36, and the 16 sums over
channels are 16 matrix products that BLAS runs (`np.dot` inside Numba). That is 2.25x
fewer multiply-adds than `convtrain.kernels.conv`'s im2col product; the sums differ from
the direct ones only in rounding (`tests/test_winograd.py` bounds the float32 error).

The kernel gradient is the forward's adjoint: per tile, dU = (A dY A^T) * V, summed over
tiles by 16 products, then dw = G^T dU G. dU is computed per sample
(`winograd_weight_per_sample`), summed over the batch in sample order like im2col's
per-sample gradients (`add_samples_in_order`), and G^T dU G is applied once to the float64
sum (`winograd_kernel_gradient`): it is linear, and per sample it cost as much as the
products at 64 channels (its F-long passes, 7 per channel, do not vectorise well).

Layout. Tile (ty, tx) is the 4x4 window at rows 2*ty .. 2*ty+3, columns 2*tx .. 2*tx+3 of
the padded input; TH, TW = ceil(OH / 2), ceil(OW / 2) tiles (a last odd row or column of
outputs reads zeros past the input and is dropped). The padded input, split by the
parity of its rows and columns (`_deinterleave_input`), is four grids of (TH + 1) x
(TW + 1) values, and tile (ty, tx) takes its d[i, j] from one of them at
(ty + i // 2, tx + j // 2): at a fixed distance from slot s = ty*(TW + 1) + tx. So each
transform is a few passes over all S = TH * (TW + 1) slots and every channel at once, one
unit-stride loop each, instead of short loops over one row of tiles (those ran 5-8x
slower per value). The last slot of each row is junk, computed and never used: 6% more
rows in the products at 32x32 outputs, 12% at 16x16, 25% at 8x8.

Shapes, channels last within a slot (the product's faster orientation here, and it keeps
the passes unit-stride):
    u    (16, C, F)           U = G w[f, c] G^T stored by position: u[4*i + j, c, f] = U[i, j]
    q    (4, (S + TW + 2)*C)  the padded input by parity: q[2*a + b, (Y*(TW+1) + X)*C + c]
                              = padded[c, 2*Y + a, 2*X + b], Y <= TH, X <= TW
    v    (16, S*C + SKEW)     V = B^T d B of every slot, v[4*i + j, s*C + c] = V[i, j]
    m    (16, S*F + SKEW)     the products, m[k] = v[k] @ u[k] as (S, C) @ (C, F)
    dm   (4, S*F + SKEW)      A dY A^T of every slot, zeros in the junk ones, row i of
                              the 4x4 at a time: dm[j, s*F + f] = (A dY A^T)[i, j]
                              (the kernel gradient holds v a row i at a time too)
The planes of v, m and dm are SKEW values longer than their contents, so that at
power-of-two sizes the streams of one pass do not all fall into the same cache sets.

Determinism: each `prange` iteration owns one sample, and every product has shapes fixed
by the layer (never by the batch or a process's share of it): results are bit-identical
for any number of threads or processes.
"""

import numpy as np
from numba import njit, prange, uint64

SKEW = 16  # values: one 64-byte cache line of float32


@njit(cache=True)
def winograd_transform_kernels(wt, u):
    """u[:, c, f] = G w[f, c] G^T. wt (C, 3, 3, F), the kernels w (F, C, 3, 3) with their
    filter axis last, so that every load and store runs over the F filters; writes
    u (16, C, F)."""
    channels, filters = wt.shape[0], uint64(wt.shape[3])
    half = wt.dtype.type(0.5)
    for c in range(channels):
        g = wt[c]
        # Row by row of G g (rows 0 and 3 are g's first and last), each times G^T: four
        # stores a filter, where all sixteen at once fell into the same cache sets (the
        # planes of u lie C*F apart).
        for f in range(filters):
            _kernel_row(g[0, 0, f], g[0, 1, f], g[0, 2, f], half, u, 0, c, f)
        for f in range(filters):
            _kernel_row(half * (g[0, 0, f] + g[1, 0, f] + g[2, 0, f]),
                        half * (g[0, 1, f] + g[1, 1, f] + g[2, 1, f]),
                        half * (g[0, 2, f] + g[1, 2, f] + g[2, 2, f]), half, u, 4, c, f)
        for f in range(filters):
            _kernel_row(half * (g[0, 0, f] - g[1, 0, f] + g[2, 0, f]),
                        half * (g[0, 1, f] - g[1, 1, f] + g[2, 1, f]),
                        half * (g[0, 2, f] - g[1, 2, f] + g[2, 2, f]), half, u, 8, c, f)
        for f in range(filters):
            _kernel_row(g[2, 0, f], g[2, 1, f], g[2, 2, f], half, u, 12, c, f)


@njit(cache=True, inline="always")
def _kernel_row(a, b, d, half, u, first, c, f):
    """u[first .. first+3, c, f] = (a, b, d) G^T."""
    u[first, c, f] = a
    u[first + 1, c, f] = half * (a + b + d)
    u[first + 2, c, f] = half * (a - b + d)
    u[first + 3, c, f] = d


@njit(cache=True)
def _deinterleave_input(xs, pad_top, pad_left, tiles_h, tiles_w, q):
    """q[2*a + b, (Y*(TW+1) + X)*C + c] = padded[c, 2*Y + a, 2*X + b]: xs (C, H, W) placed
    at (pad_top, pad_left) in zeros, split by the parity of its rows and columns, channels
    last; writes q (4, (S + TW + 2)*C), S = TH*(TW+1), zeros past the last value."""
    channels, in_h, in_w = xs.shape
    row = uint64(tiles_w + 1)
    stride = uint64(channels)
    q[:] = 0.0
    for b in range(2):
        first_iw = (b + pad_left) & 1  # the first input column of parity b once padded
        first_x = uint64((first_iw + pad_left - b) >> 1)
        count = uint64(max(in_w - first_iw + 1, 0) // 2)
        first_iw = uint64(first_iw)
        for ih in range(uint64(in_h)):
            y = ih + uint64(pad_top)
            k = uint64(2) * (y & uint64(1)) + uint64(b)
            start = ((y >> uint64(1)) * row + first_x) * stride
            for c in range(uint64(channels)):
                for t in range(count):
                    q[k, start + t * stride + c] = xs[c, ih, first_iw + uint64(2) * t]


@njit(cache=True)
def _apply_bt(src, even, odd, shift, dst, first, step, length):
    """B^T along one axis of every tile: with (d0, d1, d2, d3) = (src[even, p],
    src[odd, p], src[even, p + shift], src[odd, p + shift]), dst[first + i*step, p] =
    (B^T d)[i] for p < length."""
    shift, step, first = uint64(shift), uint64(step), uint64(first)
    even, odd = uint64(even), uint64(odd)
    k0, k1 = first, first + step
    k2, k3 = first + uint64(2) * step, first + uint64(3) * step
    for p in range(uint64(length)):
        d0, d1 = src[even, p], src[odd, p]
        d2, d3 = src[even, p + shift], src[odd, p + shift]
        dst[k0, p] = d0 - d2
        dst[k1, p] = d1 + d2
        dst[k2, p] = d2 - d1
        dst[k3, p] = d1 - d3


@njit(cache=True)
def _transform_input(q, tiles_w, channels, r, v, length):
    """v[4*i + j, p*C + c] = (B^T d B)[i, j] for every tile slot p, p*C + c < length, from
    q of `_deinterleave_input`; r (8, length + C) is scratch for B^T d."""
    _transform_input_rows(q, tiles_w, channels, r, length)
    for i in range(4):  # columns
        _apply_bt(r, 2 * i, 2 * i + 1, channels, v, 4 * i, 1, length)


@njit(cache=True)
def _transform_input_rows(q, tiles_w, channels, r, length):
    """r[2*i + b, p*C + c] = (B^T d)[i] at the tile columns of parity b, for p*C + c <
    length + C, from q of `_deinterleave_input`; writes r (8, length + C)."""
    for b in range(2):
        _apply_bt(q, b, 2 + b, (tiles_w + 1) * channels, r, b, 2, length + channels)


@njit(cache=True)
def _untransform(m, o, length):
    """o[2*a + b, p] = (A^T M A)[a, b] for p < length. m (16, >= length); writes o (4, length)."""
    for p in range(uint64(length)):
        s00 = m[0, p] + m[4, p] + m[8, p]
        s01 = m[1, p] + m[5, p] + m[9, p]
        s02 = m[2, p] + m[6, p] + m[10, p]
        s03 = m[3, p] + m[7, p] + m[11, p]
        s10 = m[4, p] - m[8, p] - m[12, p]
        s11 = m[5, p] - m[9, p] - m[13, p]
        s12 = m[6, p] - m[10, p] - m[14, p]
        s13 = m[7, p] - m[11, p] - m[15, p]
        o[0, p] = s00 + s01 + s02
        o[1, p] = s01 - s02 - s03
        o[2, p] = s10 + s11 + s12
        o[3, p] = s11 - s12 - s13


@njit(cache=True)
def _interleave_output(o, b, tiles_w, outs):
    """outs[f, 2*ty + a, 2*tx + b'] = b[f] + o[2*a + b', (ty*(TW+1) + tx)*F + f]; writes
    outs (F, OH, OW), dropping a last odd row or column."""
    filters, out_h, out_w = outs.shape
    row = uint64(tiles_w + 1)
    stride = uint64(filters)
    pairs = uint64(out_w // 2)
    for oh in range(uint64(out_h)):  # one row of slots at a time: they stay in cache
        k = uint64(2) * (oh & uint64(1))
        for f in range(uint64(filters)):
            bias = b[f]
            start = (oh >> uint64(1)) * row * stride + f
            for tx in range(pairs):
                slot = start + tx * stride
                outs[f, oh, uint64(2) * tx] = bias + o[k, slot]
                outs[f, oh, uint64(2) * tx + uint64(1)] = bias + o[k + uint64(1), slot]
            if out_w & 1:
                outs[f, oh, out_w - 1] = bias + o[k, start + pairs * stride]


@njit(parallel=True, cache=True)
def winograd_forward(x, u, b, pad_top, pad_left, out):
    """out = x ⋆ w + b for a 3x3 kernel, stride 1, x placed at (pad_top, pad_left) in
    zeros. x (N, C, H, W), u (16, C, F) from `winograd_transform_kernels`, b (F,); writes
    out (N, F, OH, OW).

    With u made from w rotated by 180° and its axes F and C swapped, x = dout and pads
    2 - pad, this is the delta to the layer below: the full correlation of dout with w,
    cut to the unpadded input."""
    n_samples, channels = x.shape[0], x.shape[1]
    filters, out_h, out_w = out.shape[1], out.shape[2], out.shape[3]
    tiles_h, tiles_w = (out_h + 1) // 2, (out_w + 1) // 2
    slots = tiles_h * (tiles_w + 1)
    length = slots * channels
    for n in prange(n_samples):
        q = np.empty((4, (slots + tiles_w + 2) * channels), dtype=x.dtype)
        r = np.empty((8, length + channels), dtype=x.dtype)
        v = np.empty((16, length + SKEW), dtype=x.dtype)
        m = np.empty((16, slots * filters + SKEW), dtype=x.dtype)
        o = np.empty((4, slots * filters), dtype=x.dtype)
        _deinterleave_input(x[n], pad_top, pad_left, tiles_h, tiles_w, q)
        _transform_input(q, tiles_w, channels, r, v, length)
        for k in range(16):
            np.dot(v[k, :length].reshape((slots, channels)), u[k],
                   m[k, :slots * filters].reshape((slots, filters)))
        _untransform(m, o, slots * filters)
        _interleave_output(o, b, tiles_w, out[n])


@njit(cache=True)
def _deinterleave_output_gradients(douts, tiles_w, d):
    """d[2*a + b, (ty*(TW+1) + tx)*F + f] = douts[f, 2*ty + a, 2*tx + b], zeros past the
    last row or column and in the junk slots; writes d (4, S*F)."""
    filters, out_h, out_w = douts.shape
    row = uint64(tiles_w + 1)
    stride = uint64(filters)
    pairs = uint64(out_w // 2)
    d[:] = 0.0
    for oh in range(uint64(out_h)):  # one row of slots at a time: they stay in cache
        k = uint64(2) * (oh & uint64(1))
        for f in range(uint64(filters)):
            start = (oh >> uint64(1)) * row * stride + f
            for tx in range(pairs):
                slot = start + tx * stride
                d[k, slot] = douts[f, oh, uint64(2) * tx]
                d[k + uint64(1), slot] = douts[f, oh, uint64(2) * tx + uint64(1)]
            if out_w & 1:
                d[k, start + pairs * stride] = douts[f, oh, out_w - 1]


@njit(cache=True)
def _apply_a(src, even, odd, dst, first, step, length):
    """A along one axis of every tile: with (y0, y1) = (src[even, p], src[odd, p]),
    dst[first + i*step, p] = (A y)[i] = (y0, y0 + y1, y0 - y1, -y1)[i] for p < length."""
    even, odd, first, step = uint64(even), uint64(odd), uint64(first), uint64(step)
    k1, k2, k3 = first + step, first + uint64(2) * step, first + uint64(3) * step
    for p in range(uint64(length)):
        y0, y1 = src[even, p], src[odd, p]
        dst[first, p] = y0
        dst[k1, p] = y0 + y1
        dst[k2, p] = y0 - y1
        dst[k3, p] = -y1


@njit(parallel=True, cache=True)
def winograd_weight_per_sample(x, dout, pad_top, pad_left, per_sample):
    """Each sample's dU, the kernel gradient before G^T . G: per_sample[n, k*C + c, f] =
    the sum over sample n's tiles of (A dY A^T) * V at position k (the junk slots' dY are
    zeros, so they add nothing), 16 products. x (N, C, H, W) placed at (pad_top, pad_left)
    in zeros, dout (N, F, OH, OW); writes per_sample (N, 16*C, F).

    Both transforms' first passes (along the tiles' rows: A dY and B^T d) run whole; their
    second passes, and the products, a row i of the 4x4 transforms at a time: four planes
    of V and of A dY A^T, then their four products. A sample's scratch is then about
    half of what all 16 planes of each would hold, and each plane is read back while it
    is still in cache (CIFAR-plain's conv2, 32 channels at 32x32: 1.1 against 2.0 MB; 1-6%
    faster, the same results)."""
    n_samples, channels = x.shape[0], x.shape[1]
    filters, out_h, out_w = dout.shape[1], dout.shape[2], dout.shape[3]
    tiles_h, tiles_w = (out_h + 1) // 2, (out_w + 1) // 2
    slots = tiles_h * (tiles_w + 1)
    length, gradient_length = slots * channels, slots * filters
    for n in prange(n_samples):
        d = np.empty((4, gradient_length), dtype=x.dtype)
        z = np.empty((8, gradient_length), dtype=x.dtype)
        dm = np.empty((4, gradient_length + SKEW), dtype=x.dtype)
        _deinterleave_output_gradients(dout[n], tiles_w, d)
        for b in range(2):  # z[2*i + b] = (A dY)[i, b]
            _apply_a(d, b, 2 + b, z, b, 2, gradient_length)
        q = np.empty((4, (slots + tiles_w + 2) * channels), dtype=x.dtype)
        r = np.empty((8, length + channels), dtype=x.dtype)
        v = np.empty((4, length + SKEW), dtype=x.dtype)
        _deinterleave_input(x[n], pad_top, pad_left, tiles_h, tiles_w, q)
        _transform_input_rows(q, tiles_w, channels, r, length)  # r[2*i + b] = (B^T d)[i]
        du = per_sample[n]
        for i in range(4):
            _apply_a(z, 2 * i, 2 * i + 1, dm, 0, 1, gradient_length)  # dm[j] = (A dY A^T)[i, j]
            _apply_bt(r, 2 * i, 2 * i + 1, channels, v, 0, 1, length)  # v[j] = V[i, j]
            for j in range(4):
                k = 4 * i + j
                np.dot(v[j, :length].reshape((slots, channels)).T,
                       dm[j, :gradient_length].reshape((slots, filters)),
                       du[k * channels:(k + 1) * channels])


@njit(cache=True)
def winograd_kernel_gradient(du, dw_rows):
    """The kernel gradient from the batch's dU (the sum of winograd_weight_per_sample's):
    dw_rows[(c*3 + kh)*3 + kw, f] = (G^T dU G)[kh, kw] = dL/dw[f, c, kh, kw], im2col's
    layout. du (16*C, F) float64; writes dw_rows (C*9, F) float64."""
    _kernel_gradient_rows(du, np.empty((3, 4, du.shape[1])), dw_rows)


@njit(cache=True)
def _kernel_gradient_rows(du, t, dw_rows):
    """dw_rows[(c*3 + kh)*3 + kw, f] = (G^T dU G)[kh, kw], dU = du[k*C + c, f] over k
    as 4x4. du (16*C, F); t (3, 4, F) is scratch for G^T dU; writes dw_rows (C*9, F).
    Each pass runs over the F filters, one unit-stride loop."""
    channels, filters = du.shape[0] // 16, uint64(du.shape[1])
    half = 0.5
    for c in range(channels):
        for j in range(4):  # G^T dU: combinations of dU's rows
            d0, d1 = du[j * channels + c], du[(4 + j) * channels + c]
            d2, d3 = du[(8 + j) * channels + c], du[(12 + j) * channels + c]
            t0, t1, t2 = t[0, j], t[1, j], t[2, j]
            for f in range(filters):
                t0[f] = d0[f] + half * (d1[f] + d2[f])
                t1[f] = half * (d1[f] - d2[f])
                t2[f] = half * (d1[f] + d2[f]) + d3[f]
        for kh in range(3):  # (G^T dU) G: of its columns
            r0, r1, r2, r3 = t[kh, 0], t[kh, 1], t[kh, 2], t[kh, 3]
            base = (c * 3 + kh) * 3
            out0, out1, out2 = dw_rows[base], dw_rows[base + 1], dw_rows[base + 2]
            for f in range(filters):
                out0[f] = r0[f] + half * (r1[f] + r2[f])
                out1[f] = half * (r1[f] - r2[f])
                out2[f] = half * (r1[f] + r2[f]) + r3[f]
