"""Channel moves: a layer's output channels each copied from one input channel, or zero.

    x      (N, C, L)    L = H*W of an image (1 for a vector of C features)
    source (C_out,)     int64: the input channel each output channel copies, -1 for zeros
    out    (N, C_out, L)

channel_shuffle, channel_pad and channel_slice are each such a map (convtrain.layers.
channels). No input channel is copied twice, so the backward pass is the same copy the
other way, and an input channel no output copies gets zero gradient.
"""

from numba import njit, prange


@njit(parallel=True, cache=True)
def gather_channels(x, source, out):
    """out[n, c] = x[n, source[c]], or 0 where source[c] < 0. One iteration per sample."""
    for n in prange(x.shape[0]):
        for c in range(source.shape[0]):
            if source[c] < 0:
                out[n, c, :] = 0.0
            else:
                out[n, c, :] = x[n, source[c], :]


@njit(parallel=True, cache=True)
def scatter_channels(dout, source, dx):
    """dx[n, source[c]] = dout[n, c] for each c with source[c] >= 0; every other channel of
    dx zero. dout (N, C_out, L); writes dx (N, C, L)."""
    for n in prange(dout.shape[0]):
        dx[n, :, :] = 0.0
        for c in range(source.shape[0]):
            if source[c] >= 0:
                dx[n, source[c], :] = dout[n, c, :]
