"""Winograd F(2x2, 3x3) kernels for 3x3, stride-1 convolutions: forward (which, with the
kernel rotated, is also the delta to the layer below) and each sample's kernel gradient.

Shape vocabulary: that of `convtrain.kernels.conv`, and
    u    (16, F, C)       the kernels transformed, U = G w[f, c] G^T, one 4x4 per (f, c),
                          stored by position: u[4*i + j, f, c] = U[i, j]
    v    (16, C*P + SKEW) one sample's input tiles transformed, V = B^T d B, P = TH*TW
                          tiles, v[4*i + j, c*P + p] = V[i, j] of channel c's tile p;
                          tile p = ty*TW + tx is the 4x4 window of the padded input at
                          rows 2*ty .. 2*ty+3, columns 2*tx .. 2*tx+3
    m    (16, F*P + SKEW) the products, m[k] = u[k] @ v[k] as (F, C) @ (C, P), which
                          give 2x2 outputs per tile: out[2*ty + a, 2*tx + b] = (A^T M A)[a, b]
    TH, TW                ceil(OH / 2), ceil(OW / 2): a last odd row or column of
                          outputs reads zeros past the input and is dropped

The 16 planes of v, m and their gradients are SKEW values longer than their contents: at
power-of-two sizes (C*P*4 bytes = 32 KiB for 32 channels of 16x16 tiles) the 16 streams
that a tile's transform writes would all map to the same cache sets, and the transforms
ran 5-10x slower.

with Lavin & Gray's matrices (2016, "Fast Algorithms for Convolutional Neural Networks"):

    B^T = [1  0 -1  0]     G = [ 1    0    0 ]     A^T = [1  1  1  0]
          [0  1  1  0]         [1/2  1/2  1/2]           [0  1 -1 -1]
          [0 -1  1  0]         [1/2 -1/2  1/2]
          [0  1  0 -1]         [ 0    0    1 ]

Why: each 2x2 block of outputs costs 16 multiplications per (f, c) instead of 36, and
the 16 sums over channels are 16 matrix products that BLAS runs (`np.dot` inside Numba):
2.25x fewer multiply-adds than `convtrain.kernels.conv`'s im2col product. The sums differ
from the direct ones only in rounding (`tests/test_winograd.py` bounds the float32 error).

The kernel gradient is the adjoint of the forward: per tile, dU = (A dY A^T) * V, summed
over tiles by 16 products, then dw = G^T dU G. It is computed per sample, like
`conv2d_weight_per_sample`, so that the sum over the batch is `add_samples_in_order`'s.

Determinism: each `prange` iteration owns one sample, and every product has shapes fixed
by the layer (never by the batch or a process's share of it): results are bit-identical
for any number of threads or processes.
"""

import numpy as np
from numba import njit, prange, uint64

from convtrain.kernels.conv import pad_sample

SKEW = 16  # values: one 64-byte cache line of float32


@njit(cache=True)
def winograd_transform_kernels(w, u):
    """u[:, f, c] = G w[f, c] G^T. w (F, C, 3, 3); writes u (16, F, C)."""
    filters, channels = w.shape[0], w.shape[1]
    half = w.dtype.type(0.5)
    for f in range(filters):
        for c in range(channels):
            g = w[f, c]
            rows = np.empty((4, 3), dtype=w.dtype)  # G g
            for j in range(3):
                rows[0, j] = g[0, j]
                rows[1, j] = half * (g[0, j] + g[1, j] + g[2, j])
                rows[2, j] = half * (g[0, j] - g[1, j] + g[2, j])
                rows[3, j] = g[2, j]
            for i in range(4):  # (G g) G^T
                u[4 * i + 0, f, c] = rows[i, 0]
                u[4 * i + 1, f, c] = half * (rows[i, 0] + rows[i, 1] + rows[i, 2])
                u[4 * i + 2, f, c] = half * (rows[i, 0] - rows[i, 1] + rows[i, 2])
                u[4 * i + 3, f, c] = rows[i, 2]


@njit(cache=True)
def _transform_tiles(padded, rows, v):
    """v[:, c*P + p] = B^T d B for every 4x4 tile d of padded (C, 2*TH + 2, 2*TW + 2), the
    input in zeros with room for every tile (`pad_sample`), so that no tile tests a bound;
    rows (4, 2*TW + 2) is scratch; writes v (16, C*P + SKEW).

    B^T d combines four whole rows of padded (one vectorised pass each), then each
    row of that times B combines columns 2*tx .. 2*tx+3, a pass over the tiles."""
    channels, padded_h, padded_w = padded.shape
    tiles_h, tiles_w = uint64((padded_h - 2) // 2), uint64((padded_w - 2) // 2)
    two = uint64(2)
    for c in range(uint64(channels)):
        for ty in range(tiles_h):
            d0, d1 = padded[c, two * ty], padded[c, two * ty + uint64(1)]
            d2, d3 = padded[c, two * ty + two], padded[c, two * ty + uint64(3)]
            for col in range(uint64(padded_w)):
                rows[0, col] = d0[col] - d2[col]
                rows[1, col] = d1[col] + d2[col]
                rows[2, col] = d2[col] - d1[col]
                rows[3, col] = d1[col] - d3[col]
            first = (c * tiles_h + ty) * tiles_w
            for i in range(uint64(4)):
                t, k = rows[i], uint64(4) * i
                for tx in range(tiles_w):
                    left, p = two * tx, first + tx
                    v[k, p] = t[left] - t[left + two]
                    v[k + uint64(1), p] = t[left + uint64(1)] + t[left + two]
                    v[k + uint64(2), p] = t[left + two] - t[left + uint64(1)]
                    v[k + uint64(3), p] = t[left + uint64(1)] - t[left + uint64(3)]


@njit(parallel=True, cache=True)
def winograd_forward(x, u, b, pad_top, pad_left, out):
    """out = x ⋆ w + b for a 3x3 kernel, stride 1, x placed at (pad_top, pad_left) in
    zeros. x (N, C, H, W), u (16, F, C) from `winograd_transform_kernels`, b (F,); writes
    out (N, F, OH, OW).

    With u made from w rotated by 180° and its axes F and C swapped, x = dout and pads
    2 - pad, this is the delta to the layer below: the full correlation of dout with w,
    cut to the unpadded input."""
    n_samples, channels = x.shape[0], x.shape[1]
    filters, out_h, out_w = out.shape[1], out.shape[2], out.shape[3]
    tiles_h, tiles_w = (out_h + 1) // 2, (out_w + 1) // 2
    tiles = tiles_h * tiles_w
    for n in prange(n_samples):
        padded = np.empty((channels, 2 * tiles_h + 2, 2 * tiles_w + 2), dtype=x.dtype)
        rows = np.empty((4, 2 * tiles_w + 2), dtype=x.dtype)
        v = np.empty((16, channels * tiles + SKEW), dtype=x.dtype)
        pad_sample(x[n], pad_top, pad_left, padded)
        _transform_tiles(padded, rows, v)
        m = np.empty((16, filters * tiles + SKEW), dtype=x.dtype)
        for k in range(16):
            np.dot(u[k], v[k, :channels * tiles].reshape((channels, tiles)),
                   m[k, :filters * tiles].reshape((filters, tiles)))
        pair = np.empty((2, 2 * tiles_w), dtype=x.dtype)
        _untransform_tiles(m, b, pair, out[n])


@njit(cache=True)
def _untransform_tiles(m, b, pair, outs):
    """outs[f, 2*ty + a, 2*tx + b] = b[f] + (A^T M A)[a, b] of tile p = ty*TW + tx.
    m (16, F*P + SKEW); pair (2, 2*TW) is scratch for one row of tiles; writes outs
    (F, OH, OW), dropping a last odd row or column."""
    filters, out_h, out_w = outs.shape
    tiles_w = uint64(pair.shape[1] // 2)
    tiles_h = uint64((out_h + 1) // 2)
    two = uint64(2)
    for f in range(uint64(filters)):
        bias = b[f]
        for ty in range(tiles_h):
            first = (f * tiles_h + ty) * tiles_w
            for tx in range(tiles_w):
                p = first + tx
                # s = A^T M (rows 0 and 1), then s A.
                s00 = m[0, p] + m[4, p] + m[8, p]
                s01 = m[1, p] + m[5, p] + m[9, p]
                s02 = m[2, p] + m[6, p] + m[10, p]
                s03 = m[3, p] + m[7, p] + m[11, p]
                s10 = m[4, p] - m[8, p] - m[12, p]
                s11 = m[5, p] - m[9, p] - m[13, p]
                s12 = m[6, p] - m[10, p] - m[14, p]
                s13 = m[7, p] - m[11, p] - m[15, p]
                pair[0, two * tx] = bias + (s00 + s01 + s02)
                pair[0, two * tx + uint64(1)] = bias + (s01 - s02 - s03)
                pair[1, two * tx] = bias + (s10 + s11 + s12)
                pair[1, two * tx + uint64(1)] = bias + (s11 - s12 - s13)
            for a in range(min(2, out_h - 2 * ty)):
                for ow in range(uint64(out_w)):
                    outs[f, 2 * ty + a, ow] = pair[a, ow]


@njit(parallel=True, cache=True)
def winograd_weight_per_sample(x, dout, pad_top, pad_left, per_sample):
    """Each sample's kernel gradient in the Winograd domain: per_sample[n, k*C + c, f] =
    dU_n[k][c, f], the sum over the sample's tiles of (A dY A^T) * V at position k.
    x (N, C, H, W) placed at (pad_top, pad_left) in zeros, dout (N, F, OH, OW); writes
    per_sample (N, 16*C, F), for `add_samples_in_order` and then
    `winograd_kernel_gradient`: G^T dU G is linear, so it is applied once to the sum."""
    n_samples, channels = x.shape[0], x.shape[1]
    filters, out_h, out_w = dout.shape[1], dout.shape[2], dout.shape[3]
    tiles_h, tiles_w = (out_h + 1) // 2, (out_w + 1) // 2
    tiles = tiles_h * tiles_w
    for n in prange(n_samples):
        pair = np.empty((2, 2 * tiles_w), dtype=x.dtype)
        dm = np.empty((16, filters * tiles + SKEW), dtype=x.dtype)
        _transform_output_gradients(dout[n], pair, dm)
        padded = np.empty((channels, 2 * tiles_h + 2, 2 * tiles_w + 2), dtype=x.dtype)
        rows = np.empty((4, 2 * tiles_w + 2), dtype=x.dtype)
        v = np.empty((16, channels * tiles + SKEW), dtype=x.dtype)
        pad_sample(x[n], pad_top, pad_left, padded)
        _transform_tiles(padded, rows, v)
        for k in range(16):
            np.dot(v[k, :channels * tiles].reshape((channels, tiles)),
                   dm[k, :filters * tiles].reshape((filters, tiles)).T,
                   per_sample[n, k * channels:(k + 1) * channels])


@njit(cache=True)
def _transform_output_gradients(douts, pair, dm):
    """dm[:, f*P + p] = A dY A^T, dY the 2x2 block of douts (F, OH, OW) that tile p made
    (zeros past a last odd row or column); pair (2, 2*TW) is scratch for one row of
    tiles; writes dm (16, F*P + SKEW)."""
    filters, out_h, out_w = douts.shape
    tiles_w = uint64(pair.shape[1] // 2)
    tiles_h = uint64((out_h + 1) // 2)
    two = uint64(2)
    for f in range(uint64(filters)):
        for ty in range(tiles_h):
            pair[:] = 0.0
            for a in range(min(2, out_h - 2 * ty)):
                for ow in range(uint64(out_w)):
                    pair[a, ow] = douts[f, 2 * ty + a, ow]
            first = (f * tiles_h + ty) * tiles_w
            for tx in range(tiles_w):
                p = first + tx
                y00, y01 = pair[0, two * tx], pair[0, two * tx + uint64(1)]
                y10, y11 = pair[1, two * tx], pair[1, two * tx + uint64(1)]
                # A dY, A = [[1, 0], [1, 1], [1, -1], [0, -1]]: rows (a_i, c_i); then times A^T.
                a1, c1 = y00 + y10, y01 + y11
                a2, c2 = y00 - y10, y01 - y11
                dm[0, p] = y00
                dm[1, p] = y00 + y01
                dm[2, p] = y00 - y01
                dm[3, p] = -y01
                dm[4, p] = a1
                dm[5, p] = a1 + c1
                dm[6, p] = a1 - c1
                dm[7, p] = -c1
                dm[8, p] = a2
                dm[9, p] = a2 + c2
                dm[10, p] = a2 - c2
                dm[11, p] = -c2
                dm[12, p] = -y10
                dm[13, p] = -y10 - y11
                dm[14, p] = y11 - y10
                dm[15, p] = y11


@njit(cache=True)
def winograd_kernel_gradient(du, dw_rows):
    """dw_rows[(c*3 + kh)*3 + kw, f] = (G^T dU G)[kh, kw], dU = du[k*C + c, f] over k as
    4x4. du (16*C, F), the batch's sum; writes dw_rows (C*9, F), the layout of
    `add_samples_in_order`'s total on the im2col path."""
    channels, filters = du.shape[0] // 16, du.shape[1]
    half = 0.5
    d = np.empty(16)
    r = np.empty((3, 4))  # G^T dU
    for c in range(channels):
        for f in range(filters):
            for k in range(16):
                d[k] = du[k * channels + c, f]
            for j in range(4):
                r[0, j] = d[j] + half * (d[4 + j] + d[8 + j])
                r[1, j] = half * (d[4 + j] - d[8 + j])
                r[2, j] = half * (d[4 + j] + d[8 + j]) + d[12 + j]
            for kh in range(3):
                base = (c * 3 + kh) * 3
                dw_rows[base, f] = r[kh, 0] + half * (r[kh, 1] + r[kh, 2])
                dw_rows[base + 1, f] = half * (r[kh, 1] - r[kh, 2])
                dw_rows[base + 2, f] = half * (r[kh, 1] + r[kh, 2]) + r[kh, 3]
