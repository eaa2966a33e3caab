"""conv2d: correlation or true convolution, stride, padding (incl. 'same'), bias.

Two algorithms compute the same sums (`convtrain.kernels.conv`'s im2col products,
`convtrain.kernels.winograd`'s for 3x3 stride-1 kernels); the spec picks one for the
forward pass and the delta, and one for the kernel gradient (`Conv2dSpec.algorithms`).

A true convolution (`op: convolution`, the worked example's forward) is a
cross-correlation with the kernel rotated by 180°. The layer stores the kernel as
the user wrote it, hands the kernels the rotated copy, and rotates the kernel
gradient back: dL/dK = rot180(dL/dK_rot). That keeps one set of kernels exact
for both conventions.
"""

import numpy as np

from convtrain.kernels.conv import (
    add_columns_in_order,
    add_samples_in_order,
    conv2d_backward_input,
    conv2d_bias_column_sums,
    conv2d_forward,
    conv2d_weight_per_sample,
)
from convtrain.kernels.winograd import (
    winograd_forward,
    winograd_kernel_gradient,
    winograd_transform_kernels,
    winograd_weight_per_sample,
)
from convtrain.model.layers.base import Layer, initial_biases, initial_weights


class Conv2d(Layer):
    def __init__(self, spec, dtype, rng):
        super().__init__(spec, dtype)
        shape = spec.param_shapes()["weight"]
        fan_in = shape[1] * shape[2] * shape[3]
        fan_out = shape[0] * shape[2] * shape[3]
        self.params["weight"] = initial_weights(spec, shape, fan_in, fan_out, rng).astype(dtype)
        if spec.bias:
            self.params["bias"] = initial_biases(spec, spec.filters).astype(dtype)
        self._zero_bias = np.zeros(spec.filters, dtype=dtype)
        self._zero_input_bias = np.zeros(spec.in_shape[0], dtype=dtype)
        self.choose_algorithms(np.dtype(dtype).name)

    def choose_algorithms(self, dtype):
        """The algorithms of a run whose config asks for `dtype` ('float32', 'float64'):
        `algorithm` for the forward pass and the delta, `weight_algorithm` for the kernel
        gradient, each 'gemm' or 'winograd'."""
        self.algorithm, self.weight_algorithm = self.spec.algorithms(dtype)

    def correlation_kernel(self):
        """w (F, C, KH, KW) as the correlation kernels expect it (rotated for op=convolution)."""
        w = self.params["weight"]
        if self.spec.op == "convolution":
            w = w[:, :, ::-1, ::-1]
        return np.ascontiguousarray(w)

    def pad(self, x):
        """x zero-padded (for `convtrain trace`'s textbook sums; the kernels pad a sample
        at a time)."""
        top, bottom, left, right = self.spec.padding
        if top == bottom == left == right == 0:
            return np.ascontiguousarray(x)
        n, c, h, w = x.shape
        # zeros + one assignment: 4x faster than np.pad here (0.02 against 0.1 ms).
        xp = np.zeros((n, c, h + top + bottom, w + left + right), dtype=x.dtype)
        xp[:, :, top:top + h, left:left + w] = x
        return xp

    def padded_size(self):
        """(HP, WP): the input's height and width with the padding."""
        top, bottom, left, right = self.spec.padding
        _, height, width = self.spec.in_shape
        return height + top + bottom, width + left + right

    def forward(self, x):
        """x (N, C, H, W) -> out (N, F, OH, OW)."""
        x = np.ascontiguousarray(x)
        w = self.correlation_kernel()
        stride_h, stride_w = self.spec.stride
        top, _, left, _ = self.spec.padding
        out = np.empty((x.shape[0],) + self.spec.out_shape, dtype=self.dtype)
        bias = self.params.get("bias", self._zero_bias)
        if self.algorithm == "winograd":
            winograd_forward(x, _winograd_kernels(w), bias, top, left, out)
        else:
            conv2d_forward(x, w, bias, stride_h, stride_w, top, left, *self.padded_size(), out)
        self.cache = (x, w)
        return out

    def backward(self, dout, need_dx=True):
        """dout (N, F, OH, OW) -> dx (N, C, H, W); fills grads weight (F, C, KH, KW), bias (F,)."""
        x, w = self.cache
        dout = np.ascontiguousarray(dout)
        stride_h, stride_w = self.spec.stride
        top, _, left, _ = self.spec.padding
        team = self.mode.team
        filters = w.shape[0]
        total = self.kernel_gradient_sum(x, dout)
        dw = total.T.reshape(w.shape).astype(self.dtype)
        if self.spec.op == "convolution":
            dw = np.ascontiguousarray(dw[:, :, ::-1, ::-1])
        self.grads["weight"] = dw
        if self.spec.bias:
            column_sums = team.chain(np.zeros((filters, dout.shape[3])),
                                     lambda sums: conv2d_bias_column_sums(dout, sums))
            db = np.empty(filters, dtype=self.dtype)
            add_columns_in_order(column_sums, db)
            self.grads["bias"] = db
        if not need_dx:
            return None
        dx = np.empty(x.shape, dtype=self.dtype)
        if self.algorithm == "winograd":
            # The full correlation of dout with w rotated by 180° and its axes F and C
            # swapped, cut to the unpadded input: a 3x3 correlation of dout placed in a
            # border of 2 - pad (convtrain.kernels.winograd).
            w_back = np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
            winograd_forward(dout, _winograd_kernels(w_back), self._zero_input_bias,
                             2 - top, 2 - left, dx)
        else:
            conv2d_backward_input(dout, w, stride_h, stride_w, top, left, *self.padded_size(),
                                  dx)
        return dx

    def kernel_gradient_sum(self, x, dout):
        """The kernel gradient summed over the whole batch, (C*KH*KW, F) float64, rows
        r = (c*KH + kh)*KW + kw: each of this process's samples' share here, then their sum
        in sample order, as float64 totals that the processes before this one have started
        (team.chain), so that the sum is the one a single process makes over the batch.
        x (N, C, H, W) and dout (N, F, OH, OW) contiguous."""
        filters, channels, kernel_h, kernel_w = self.params["weight"].shape
        stride_h, stride_w = self.spec.stride
        top, _, left, _ = self.spec.padding
        if self.weight_algorithm == "winograd":  # dU, 16 values per (c, f) a sample
            per_sample = np.empty((x.shape[0], 16 * channels, filters), dtype=self.dtype)
            winograd_weight_per_sample(x, dout, top, left, per_sample)
        else:
            per_sample = np.empty((x.shape[0], channels * kernel_h * kernel_w, filters),
                                  dtype=self.dtype)
            conv2d_weight_per_sample(x, dout, kernel_h, kernel_w, stride_h, stride_w, top,
                                     left, *self.padded_size(), per_sample)
        total = self.mode.team.chain(np.zeros(per_sample.shape[1:]),
                                     lambda total: add_samples_in_order(per_sample, total))
        if self.weight_algorithm == "winograd":
            dw_rows = np.empty((channels * kernel_h * kernel_w, filters))
            winograd_kernel_gradient(total, dw_rows)
            return dw_rows
        return total


def _winograd_kernels(w):
    """w (F, C, 3, 3) -> u (16, C, F), Winograd's transformed kernels."""
    u = np.empty((16, w.shape[1], w.shape[0]), dtype=w.dtype)
    winograd_transform_kernels(np.ascontiguousarray(w.transpose(1, 2, 3, 0)), u)
    return u
