"""How a `branches` block puts its paths' outputs together, and hands the delta back.

    part  (N, C_i, L)   one path's output: L = H*W of an image, 1 for a vector of features
    out   (N, C, L)     the block's output
    gate  (N, C)        a path's output of one value per channel (squeeze-and-excitation)

concat places each path's channels after the previous path's; multiply scales each channel's
L values by the gate. Sums run over a sample's own values, in order, so no result depends on
how many threads share the batch.
"""

from numba import njit, prange


@njit(parallel=True, cache=True)
def place_channels(part, out, first):
    """out[:, first:first + C_i] = part: concat's forward, a path at a time. part (N, C_i, L),
    out (N, C, L)."""
    for n in prange(part.shape[0]):
        for c in range(part.shape[1]):
            out[n, first + c, :] = part[n, c, :]


@njit(parallel=True, cache=True)
def take_channels(dout, first, dpart):
    """dpart = dout[:, first:first + C_i]: the share of concat's delta a path takes.
    dout (N, C, L), dpart (N, C_i, L)."""
    for n in prange(dpart.shape[0]):
        for c in range(dpart.shape[1]):
            dpart[n, c, :] = dout[n, first + c, :]


@njit(parallel=True, cache=True)
def multiply(a, b, out):
    """out = a * b elementwise. a, b, out (M,)."""
    for i in prange(a.shape[0]):
        out[i] = a[i] * b[i]


@njit(parallel=True, cache=True)
def scale_channels(x, gate, out):
    """out[n, c, l] = x[n, c, l] * gate[n, c]. x, out (N, C, L); gate (N, C)."""
    for n in prange(x.shape[0]):
        for c in range(x.shape[1]):
            scale = gate[n, c]
            for i in range(x.shape[2]):
                out[n, c, i] = x[n, c, i] * scale


@njit(parallel=True, cache=True)
def channel_dot(x, dout, dgate):
    """dgate[n, c] = Σ_l dout[n, c, l] * x[n, c, l], l in order, in float64: a gate's
    gradient, the scaled values' deltas summed over the plane. x, dout (N, C, L);
    dgate (N, C)."""
    for n in prange(x.shape[0]):
        for c in range(x.shape[1]):
            total = 0.0
            for i in range(x.shape[2]):
                total += float(dout[n, c, i]) * float(x[n, c, i])
            dgate[n, c] = total
