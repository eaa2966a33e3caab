"""Plain-loop reference implementations, written for obviousness, not speed.

Each fast kernel in convtrain.kernels is compared with its twin here.
Shapes: x (N, C, H, W), w (F, C, KH, KW), b (F,), out (N, F, OH, OW).
"""

import numpy as np


def correlate(x, w, b, stride, padding):
    """out[n, f, i, j] = b[f] + Σ_{c,a,e} w[f, c, a, e] · xpad[n, c, i·SH + a, j·SW + e]."""
    top, bottom, left, right = padding
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    n_samples, channels, height, width = xp.shape
    filters, _, kh, kw = w.shape
    out_h = (height - kh) // stride[0] + 1
    out_w = (width - kw) // stride[1] + 1
    out = np.zeros((n_samples, filters, out_h, out_w))
    for n in range(n_samples):
        for f in range(filters):
            for i in range(out_h):
                for j in range(out_w):
                    total = b[f]
                    for c in range(channels):
                        for a in range(kh):
                            for e in range(kw):
                                total += w[f, c, a, e] * xp[n, c, i * stride[0] + a, j * stride[1] + e]
                    out[n, f, i, j] = total
    return out


def convolve2d_full(a, k):
    """Textbook full 2-D true convolution, straight from its definition."""
    out = np.zeros((a.shape[0] + k.shape[0] - 1, a.shape[1] + k.shape[1] - 1))
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            for p in range(k.shape[0]):
                for q in range(k.shape[1]):
                    out[i + p, j + q] += a[i, j] * k[p, q]
    return out


def convolve2d_valid(a, k):
    full = convolve2d_full(a, k)
    kh, kw = k.shape
    return full[kh - 1:a.shape[0], kw - 1:a.shape[1]]


def pool(x, size, stride, kind):
    n_samples, channels, height, width = x.shape
    out_h = (height - size[0]) // stride[0] + 1
    out_w = (width - size[1]) // stride[1] + 1
    out = np.zeros((n_samples, channels, out_h, out_w))
    for n in range(n_samples):
        for c in range(channels):
            for i in range(out_h):
                for j in range(out_w):
                    window = x[n, c, i * stride[0]:i * stride[0] + size[0],
                               j * stride[1]:j * stride[1] + size[1]]
                    out[n, c, i, j] = window.max() if kind == "max" else window.mean()
    return out
