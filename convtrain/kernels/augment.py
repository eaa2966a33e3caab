"""Augmentation kernels. Shapes as in `convtrain.kernels.conv`: x, out (N, C, H, W).

Each `prange` iteration owns one sample's output; nothing is summed, so results are the
same for any number of threads.
"""

from numba import njit, prange


@njit(parallel=True, cache=True)
def crop_flip(x, rows, cols, flips, pad, out):
    """A random crop of x padded by `pad` on every side, then a horizontal flip:
        out[n, c, h, w] = xpad[n, c, rows[n] + h, cols[n] + w'],  w' = W-1-w where flips[n]
    else w, and xpad = x with `pad` rows and columns of zeros around it (torchvision's
    RandomCrop(padding) then RandomHorizontalFlip). x as stored, before normalisation, so
    zero is black. rows, cols (N,) in 0..2*pad, flips (N,) bool; writes out (N, C, H, W),
    x's type."""
    n_samples, channels, height, width = x.shape
    for n in prange(n_samples):
        for c in range(channels):
            for h in range(height):
                source_h = h + rows[n] - pad
                for w in range(width):
                    source_w = (width - 1 - w if flips[n] else w) + cols[n] - pad
                    if 0 <= source_h < height and 0 <= source_w < width:
                        out[n, c, h, w] = x[n, c, source_h, source_w]
                    else:
                        out[n, c, h, w] = 0
