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

from dataclasses import dataclass, field

import numpy as np

from convtrain.layers.base import INITS, Layer, LayerSpec, initial_biases, initial_weights, kernels
from convtrain.layers.shapes import require_image, weights_and_biases, window

CONV_ALGORITHMS = ("auto", "gemm", "winograd")
# `algorithm: auto` is a rule on the layer's shape, never a timing (results must not depend
# on the machine's load), for float32 3x3 stride-1 convs: Winograd for the forward pass and
# the delta with at least WINOGRAD_MIN_CHANNELS channels in and out, an output of at least
# WINOGRAD_MIN_SIDE a side and channels x side of at least WINOGRAD_MIN_WORK; for the kernel
# gradient too from WINOGRAD_GRADIENT_MIN_SIDE a side. Smaller, its transforms do not pay:
# the measurements behind each threshold are in docs/performance.md ("The auto rule").
WINOGRAD_MIN_CHANNELS = 16
WINOGRAD_MIN_SIDE = 4
WINOGRAD_MIN_WORK = 256
WINOGRAD_GRADIENT_MIN_SIDE = 16


class Conv2d(Layer):
    # Seconds each kernel took to compile on an empty cache, the functions it calls included
    # (scripts/compile_times.py on the 2-core development machine).
    compile_s = {"depthwise_forward": 0.8, "depthwise_backward_input": 0.8,
                 "depthwise_weight_per_sample": 0.8,
                 "conv2d_forward": 3.4, "conv2d_weight_per_sample": 2.0,
                 "conv2d_backward_input": 2.2, "add_samples_in_order": 0.8,
                 "conv2d_bias_column_sums": 0.6, "row_totals": 0.2,
                 "winograd_forward": 3.6, "winograd_weight_per_sample": 3.5,
                 "winograd_transform_kernels": 0.6, "winograd_kernel_gradient": 1.2}

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
        """w (F, C/G, KH, KW) as a correlation applies it: rotated for op=convolution."""
        w = self.params["weight"]
        if self.spec.op == "convolution":
            w = w[:, :, ::-1, ::-1]
        return np.ascontiguousarray(w)

    def dilated_kernel(self):
        """The correlation kernel with dilation - 1 zeros between its taps, (F, C/G,
        (KH-1)·DH + 1, (KW-1)·DW + 1): the kernel the im2col kernels run with."""
        w = self.correlation_kernel()
        dilation_h, dilation_w = self.spec.dilation
        if dilation_h == dilation_w == 1:
            return w
        filters, channels, kernel_h, kernel_w = w.shape
        spread = np.zeros((filters, channels, (kernel_h - 1) * dilation_h + 1,
                           (kernel_w - 1) * dilation_w + 1), dtype=w.dtype)
        spread[:, :, ::dilation_h, ::dilation_w] = w
        return spread

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
        stride_h, stride_w = self.spec.stride
        top, _, left, _ = self.spec.padding
        out = np.empty((x.shape[0],) + self.spec.out_shape, dtype=self.dtype)
        bias = self.params.get("bias", self._zero_bias)
        w = self.running_kernel()
        if self.algorithm == "depthwise":
            kernels("depthwise").depthwise_forward(x, w, bias, stride_h, stride_w,
                                                   *self.spec.dilation, top, left,
                                                   *self.padded_size(), out)
        elif self.algorithm == "winograd":
            kernels("winograd").winograd_forward(x, _winograd_kernels(w), bias, top, left, out)
        else:
            kernels("conv").conv2d_forward(x, w, bias, stride_h, stride_w, top, left,
                                           *self.padded_size(), out, self.spec.groups)
        self.cache = (x, w)
        return out

    def running_kernel(self):
        """The kernel as the algorithm takes it: the depthwise kernels take the correlation
        kernel and the dilation apart, the others the dilated kernel."""
        if self.algorithm == "depthwise":
            return self.correlation_kernel()
        return self.dilated_kernel()

    def backward(self, dout, need_dx=True):
        """dout (N, F, OH, OW) -> dx (N, C, H, W); fills grads weight (F, C/G, KH, KW), bias
        (F,)."""
        x, w = self.cache
        dout = np.ascontiguousarray(dout)
        self.grads["weight"] = self._weight_gradient(x, dout, w)
        if self.spec.bias:
            self.grads["bias"] = bias_gradient(dout, self.mode.team, self.dtype)
        return self._input_delta(dout, w, x.shape) if need_dx else None

    def _weight_gradient(self, x, dout, w):
        """The kernel gradient as the weight holds it, from the correlation kernel w the
        forward pass ran with (dilated, or not)."""
        spec, groups = self.spec, self.spec.groups
        total = self.kernel_gradient_sum(x, dout)
        if self.weight_algorithm == "depthwise":  # (F, KH·KW)
            dw = total.reshape(w.shape).astype(self.dtype)
        else:  # (G·C/G·KH·KW, F/G), a group a block
            dw = total.reshape(groups, -1, w.shape[0] // groups).transpose(0, 2, 1)
            dw = dw.reshape(w.shape).astype(self.dtype)
        if self.algorithm != "depthwise" and tuple(spec.dilation) != (1, 1):  # the taps only
            dw = np.ascontiguousarray(dw[:, :, ::spec.dilation[0], ::spec.dilation[1]])
        if spec.op == "convolution":
            dw = np.ascontiguousarray(dw[:, :, ::-1, ::-1])
        return dw

    def _input_delta(self, dout, w, shape):
        stride_h, stride_w = self.spec.stride
        top, _, left, _ = self.spec.padding
        dx = np.empty(shape, dtype=self.dtype)
        if self.algorithm == "depthwise":
            kernels("depthwise").depthwise_backward_input(dout, w, stride_h, stride_w,
                                                          *self.spec.dilation, top, left,
                                                          *self.padded_size(), dx)
        elif self.algorithm == "winograd":
            # The full correlation of dout with w rotated by 180° and its axes F and C
            # swapped, cut to the unpadded input: a 3x3 correlation of dout placed in a
            # border of 2 - pad (convtrain.kernels.winograd).
            w_back = np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
            kernels("winograd").winograd_forward(dout, _winograd_kernels(w_back),
                                                 self._zero_input_bias, 2 - top, 2 - left, dx)
        else:
            kernels("conv").conv2d_backward_input(dout, w, stride_h, stride_w, top, left,
                                                  *self.padded_size(), dx, self.spec.groups)
        return dx

    def kernel_gradient_sum(self, x, dout):
        """The kernel gradient summed over the whole batch, (C*KH*KW, F) float64, rows
        r = (c*KH + kh)*KW + kw: each of this process's samples' share here, then their sum
        in sample order, as float64 totals that the processes before this one have started
        (team.chain), so that the sum is the one a single process makes over the batch.
        x (N, C, H, W) and dout (N, F, OH, OW) contiguous."""
        filters = self.params["weight"].shape[0]
        channels, groups = x.shape[1], self.spec.groups
        kernel_h, kernel_w = (self.spec.kernel if self.weight_algorithm == "depthwise"
                              else self.spec.dilated_kernel_size())
        stride_h, stride_w = self.spec.stride
        top, _, left, _ = self.spec.padding
        conv, winograd = kernels("conv"), kernels("winograd")
        if self.weight_algorithm == "depthwise":  # (N, F, KH*KW), float64 already
            per_sample = np.empty((x.shape[0], filters, kernel_h * kernel_w))
            kernels("depthwise").depthwise_weight_per_sample(
                x, dout, *self.spec.kernel, stride_h, stride_w, *self.spec.dilation, top, left,
                *self.padded_size(), per_sample)
        elif self.weight_algorithm == "winograd":  # dU, 16 values per (c, f) a sample
            per_sample = np.empty((x.shape[0], 16 * channels, filters), dtype=self.dtype)
            winograd.winograd_weight_per_sample(x, dout, top, left, per_sample)
        else:
            per_sample = np.empty((x.shape[0], channels * kernel_h * kernel_w,
                                   filters // groups), dtype=self.dtype)
            conv.conv2d_weight_per_sample(x, dout, kernel_h, kernel_w, stride_h, stride_w,
                                          top, left, *self.padded_size(), per_sample)
        add_in_order = kernels("ordered_sums").add_samples_in_order
        total = self.mode.team.chain(np.zeros(per_sample.shape[1:]),
                                     lambda total: add_in_order(per_sample, total))
        if self.weight_algorithm == "winograd":
            dw_rows = np.empty((channels * kernel_h * kernel_w, filters))
            winograd.winograd_kernel_gradient(total, dw_rows)
            return dw_rows
        return total

    def to_onnx(self, graph, x, rank):
        """A Conv of the correlation kernel (an op: convolution layer's flipped)."""
        spec = self.spec
        top, bottom, left, right = spec.padding
        inputs = [x, graph.weight(f"{spec.name}.weight", self.correlation_kernel())]
        if spec.bias:
            inputs.append(graph.weight(f"{spec.name}.bias", self.params["bias"]))
        return graph.node("Conv", inputs, spec.name, kernel_shape=list(spec.kernel),
                          strides=list(spec.stride), pads=[top, left, bottom, right],
                          group=spec.groups, dilations=list(spec.dilation))


def bias_gradient(dout, team, dtype):
    """Σ dout per filter, (F,) from dout (N, F, OH, OW) contiguous: column sums chained over
    the processes sharing the batch, then added in order."""
    column_sums = team.chain(np.zeros((dout.shape[1], dout.shape[3])),
                             lambda sums: kernels("conv").conv2d_bias_column_sums(dout, sums))
    db = np.empty(dout.shape[1], dtype=dtype)
    kernels("ordered_sums").row_totals(column_sums, db)
    return db


def _winograd_kernels(w):
    """w (F, C, 3, 3) -> u (16, C, F), Winograd's transformed kernels."""
    u = np.empty((16, w.shape[1], w.shape[0]), dtype=w.dtype)
    transform = kernels("winograd").winograd_transform_kernels
    transform(np.ascontiguousarray(w.transpose(1, 2, 3, 0)), u)
    return u


@dataclass(frozen=True)
class Conv2dSpec(LayerSpec):
    filters: int = 1
    kernel: tuple = (1, 1)
    stride: tuple = (1, 1)
    padding: tuple = (0, 0, 0, 0)
    op: str = "correlation"
    bias: bool = True
    init: str = "he_uniform"
    weights: np.ndarray = field(default=None, compare=False, repr=False)
    biases: np.ndarray = field(default=None, compare=False, repr=False)
    algorithm: str = "auto"
    groups: int = 1
    dilation: tuple = (1, 1)

    type = "conv2d"
    compute = Conv2d
    name_stem = "conv"
    weight_symbol = "K"

    @classmethod
    def parse(cls, section, index, name, in_shape):
        require_image(section, in_shape, cls.type)
        filters = section.get_int("filters", minimum=1)
        kernel = section.get_pair("kernel")
        stride = section.get_pair("stride", 1)
        padding = section.get_pair("padding", 0, minimum=0, allow=("same", "valid"), sides=True)
        op = section.get_choice("op", ("correlation", "convolution"), "correlation")
        bias = section.get_bool("bias", True)
        init = section.get_choice("init", INITS, "he_uniform")
        groups = section.get_int("groups", 1, minimum=1)
        for what, count in (("channels of its input", in_shape[0]), ("filters", filters)):
            if count % groups:
                raise section.error("groups", f"{groups} does not divide the {count} {what}")
        dilation = section.get_pair("dilation", 1)
        spread = tuple((k - 1) * d + 1 for k, d in zip(kernel, dilation))
        padding, (out_h, out_w) = window(section, name, in_shape, spread, stride, padding,
                                          "kernel" if spread == kernel else "dilated kernel")
        weights, biases = weights_and_biases(
            section, (filters, in_shape[0] // groups, kernel[0], kernel[1]), bias)
        algorithm = section.get_choice("algorithm", CONV_ALGORITHMS, "auto")
        spec = cls(index, name, tuple(in_shape), (filters, out_h, out_w), filters, kernel,
                   stride, padding, op, bias, init, weights, biases, algorithm, groups,
                   dilation)
        if algorithm == "winograd" and not spec.winograd_fits():
            raise section.error("algorithm", "winograd computes 3x3 kernels with stride 1, "
                                             "padding of at most 2 on every side, no groups "
                                             "and no dilation; this layer has "
                                             f"{spec._window_words()}: use auto or gemm")
        return spec

    def dilated_kernel_size(self):
        """(KH, KW) with the dilation's gaps: the window a kernel covers."""
        return tuple((k - 1) * d + 1 for k, d in zip(self.kernel, self.dilation))

    def winograd_fits(self):
        return (tuple(self.kernel) == (3, 3) and tuple(self.stride) == (1, 1)
                and max(self.padding) <= 2 and self.groups == 1
                and tuple(self.dilation) == (1, 1))

    def _window_words(self):
        kernel_h, kernel_w = self.kernel
        stride_h, stride_w = self.stride
        stride = stride_h if stride_h == stride_w else f"{stride_h}x{stride_w}"
        top, bottom, left, right = self.padding
        if top == bottom == left == right:
            padding = top
        elif top == bottom and left == right:
            padding = [top, left]
        else:
            padding = f"{top} {bottom} {left} {right} (top bottom left right)"
        extra = "".join(f", {what} {value}" for what, value in (
            ("groups", self.groups), ("dilation", list(self.dilation))) if value not in (1, [1, 1]))
        return f"a {kernel_h}x{kernel_w} kernel, stride {stride}{extra} and padding {padding}"

    def algorithms(self, dtype):
        """(forward and delta, kernel gradient): 'gemm' or 'winograd', for a run whose
        config asks for `dtype`."""
        if self.groups > 1 and self.groups == self.in_shape[0]:
            return "depthwise", "depthwise"
        if self.algorithm == "winograd":
            return "winograd", "winograd"
        if self.algorithm == "gemm" or not self.winograd_fits() or dtype != "float32":
            return "gemm", "gemm"
        channels, side = min(self.in_shape[0], self.filters), min(self.out_shape[1:])
        if (channels < WINOGRAD_MIN_CHANNELS or side < WINOGRAD_MIN_SIDE
                or channels * side < WINOGRAD_MIN_WORK):
            return "gemm", "gemm"
        return "winograd", "winograd" if side >= WINOGRAD_GRADIENT_MIN_SIDE else "gemm"

    def param_shapes(self):
        shapes = {"weight": (self.filters, self.in_shape[0] // self.groups) + tuple(self.kernel)}
        if self.bias:
            shapes["bias"] = (self.filters,)
        return shapes

    def flops(self):
        f, oh, ow = self.out_shape
        return (2 * f * oh * ow * (self.in_shape[0] // self.groups) * self.kernel[0]
                * self.kernel[1])

    def scratch_per_sample(self):
        """The padded input plus `convtrain.kernels.conv`'s shifted rows and window matrix."""
        channels, height, width = self.in_shape
        top, bottom, left, right = self.padding
        padded_h, padded_w = height + top + bottom, width + left + right
        _, out_h, out_w = self.out_shape
        kernel_h, kernel_w = self.dilated_kernel_size()
        return (channels * padded_h * padded_w + channels * kernel_w * padded_h * out_w
                + channels * kernel_h * kernel_w * out_h * out_w)

    def forward_formula(self, s):
        op = "∗" if self.op == "convolution" else "⋆"
        bias = f" + {s.bias(self)}" if self.bias else ""
        notes = []
        if tuple(self.stride) != (1, 1):
            notes.append(f"stride {tuple(self.stride)}")
        if any(self.padding):
            notes.append(f"padding {self.padding}")
        if tuple(self.dilation) != (1, 1):
            notes.append(f"dilation {tuple(self.dilation)}: the kernel's taps "
                         f"{self.dilation[0]} rows and {self.dilation[1]} columns apart")
        if self.groups > 1:
            notes.append(f"{self.groups} groups: filters g·F/{self.groups}.. see channels "
                         f"g·C/{self.groups}.. only")
        where = f" ({', '.join(notes)})" if notes else ""
        return f"{s.out(self)} = {s.inp(self)} {op} {s.kernel(self)}{bias}{where}"

    def backward_formulas(self, s, textbook):
        """(kernel_grad, input_delta), written for the stride and padding so that each can
        be applied as printed: a padded layer's kernel sees pad_p(A) and its δ_in is
        cropped back; a strided layer's δ is first spread out to the stride-1 grid."""
        d, di = s.delta(self), s.delta_in(self)
        k = s.kernel(self)
        if tuple(self.dilation) != (1, 1):
            k = f"dilate{_subscript(self.dilation)}({k})"
        padded = any(self.padding)
        a = f"pad{_subscript(self.padding)}({s.inp(self)})" if padded else s.inp(self)
        spread = (f"spread{_subscript(self.stride)}({d})" if tuple(self.stride) != (1, 1)
                  else d)

        def crop(text):
            return f"crop{_subscript(self.padding)}({text})" if padded else text

        if textbook:
            return f"d{k} = {a} ∗ {d} (valid convolution)", f"{di} = {crop(f'full({d} ∗ {k})')}"
        if self.op == "convolution":
            return (f"∂L/∂{k} = rot180({a} ⋆ {spread})",
                    f"{di} = {crop(f'full({spread} ⋆ {k})')}")
        return f"∂L/∂{k} = {a} ⋆ {spread}", f"{di} = {crop(f'full({spread} ∗ {k})')}"


def _subscript(values):
    """An operator's parameter: _2 when every entry is 2, else _(2,1) (rows, then columns;
    padding top,bottom,left,right)."""
    values = tuple(int(v) for v in values)
    if len(set(values)) == 1:
        return f"_{values[0]}"
    return "_(" + ",".join(map(str, values)) + ")"


TYPES = (Conv2dSpec,)
