"""Upsampling by whole factors, PyTorch's nn.Upsample: nearest, and bilinear with
align_corners false.

    x    (N, C, H, W)
    out  (N, C, H·SH, W·SW)

Nearest copies x[i // SH, j // SW]. Bilinear reads output row i at the input position
src = (i + 0.5)/SH − 0.5 (0 where negative): rows r0 = ⌊src⌋ and r1 = min(r0 + 1, H − 1),
r1's weight src − r0, r0's one minus that (convtrain.layers.upsample.bilinear_taps;
columns likewise). Backward hands
each output's delta back to the inputs it read, with the same weights, per (sample, channel)
plane in output order: one thread a plane, so no two threads add into one value, and the
sums are float64 in a fixed order.
"""

import numpy as np
from numba import njit, prange


@njit(parallel=True, cache=True)
def nearest_forward(x, scale_h, scale_w, out):
    """out[n, c, i, j] = x[n, c, i // SH, j // SW]."""
    n_samples, channels = x.shape[0], x.shape[1]
    for plane in prange(n_samples * channels):
        n, c = plane // channels, plane % channels
        for i in range(out.shape[2]):
            for j in range(out.shape[3]):
                out[n, c, i, j] = x[n, c, i // scale_h, j // scale_w]


@njit(parallel=True, cache=True)
def nearest_backward(dout, scale_h, scale_w, dx):
    """dx[n, c, p, q] = Σ dout over the SH×SW outputs that copied it, row by row."""
    n_samples, channels = dx.shape[0], dx.shape[1]
    for plane in prange(n_samples * channels):
        n, c = plane // channels, plane % channels
        for p in range(dx.shape[2]):
            for q in range(dx.shape[3]):
                total = 0.0
                for a in range(scale_h):
                    for b in range(scale_w):
                        total += float(dout[n, c, p * scale_h + a, q * scale_w + b])
                dx[n, c, p, q] = total


@njit(parallel=True, cache=True)
def bilinear_forward(x, row0, row1, row_weight, col0, col1, col_weight, out):
    """out[n, c, i, j] = (1 − λh)·((1 − λw)·x[r0, c0] + λw·x[r0, c1])
                        + λh·((1 − λw)·x[r1, c0] + λw·x[r1, c1]),
    λh = row_weight[i], λw = col_weight[j], in float64."""
    n_samples, channels = x.shape[0], x.shape[1]
    for plane in prange(n_samples * channels):
        n, c = plane // channels, plane % channels
        for i in range(out.shape[2]):
            lh = row_weight[i]
            r0, r1 = row0[i], row1[i]
            for j in range(out.shape[3]):
                lw = col_weight[j]
                c0, c1 = col0[j], col1[j]
                top = (1.0 - lw) * x[n, c, r0, c0] + lw * x[n, c, r0, c1]
                bottom = (1.0 - lw) * x[n, c, r1, c0] + lw * x[n, c, r1, c1]
                out[n, c, i, j] = (1.0 - lh) * top + lh * bottom


@njit(parallel=True, cache=True)
def bilinear_backward(dout, row0, row1, row_weight, col0, col1, col_weight, dx):
    """dx: each output's delta added back to its four inputs with forward's weights,
    outputs in row order, into a float64 plane. dout (N, C, OH, OW), dx (N, C, H, W)."""
    n_samples, channels = dx.shape[0], dx.shape[1]
    for plane in prange(n_samples * channels):
        n, c = plane // channels, plane % channels
        total = np.zeros((dx.shape[2], dx.shape[3]))
        for i in range(dout.shape[2]):
            lh = row_weight[i]
            r0, r1 = row0[i], row1[i]
            for j in range(dout.shape[3]):
                lw = col_weight[j]
                c0, c1 = col0[j], col1[j]
                d = float(dout[n, c, i, j])
                total[r0, c0] += (1.0 - lh) * (1.0 - lw) * d
                total[r0, c1] += (1.0 - lh) * lw * d
                total[r1, c0] += lh * (1.0 - lw) * d
                total[r1, c1] += lh * lw * d
        for p in range(dx.shape[2]):
            for q in range(dx.shape[3]):
                dx[n, c, p, q] = total[p, q]
