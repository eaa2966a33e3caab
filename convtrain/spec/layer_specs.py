"""Validated, frozen layer specs: one class per YAML `type`, with shape inference.

This module is the config boundary for layers. It knows every layer's keys,
defaults, output shape, parameter shapes and forward FLOPs, and it imports
neither numba nor the kernels, so validation and `convtrain summary` are fast.
The compute side lives in `convtrain.model.layers`, keyed by the same `type`.

Shapes: an image is (C, H, W); after `flatten` or `dense` a sample is (D,).
Output size of a window op: OH = (H + pad_top + pad_bottom - KH) // SH + 1.
"""

from dataclasses import dataclass, field

import numpy as np

from convtrain.spec.shapes import as_array, require_image, window

INITS = ("he_uniform", "he_normal", "glorot_uniform", "zeros")
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


@dataclass(frozen=True)
class LayerSpec:
    index: int
    name: str
    in_shape: tuple
    out_shape: tuple

    def param_shapes(self):
        return {}

    def flops(self):
        """Forward floating-point operations per sample (a multiply-add is 2)."""
        return 0

    def scratch_per_sample(self):
        """Values of working memory the kernels need per sample beyond input and output."""
        return 0

    def buffer_shapes(self):
        """State that is not trained but kept in checkpoints (batchnorm's running statistics)."""
        return {}

    def children(self):
        """The layers inside this one (a residual block's), in order."""
        return ()

    @property
    def param_count(self):
        return int(sum(np.prod(s) for s in self.param_shapes().values()))


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

    type = "conv2d"

    @classmethod
    def parse(cls, section, index, name, in_shape):
        require_image(section, in_shape, cls.type)
        filters = section.get_int("filters", minimum=1)
        kernel = section.get_pair("kernel")
        stride = section.get_pair("stride", 1)
        padding = section.get_pair("padding", 0, minimum=0, allow=("same", "valid"))
        op = section.get_choice("op", ("correlation", "convolution"), "correlation")
        bias = section.get_bool("bias", True)
        init = section.get_choice("init", INITS, "he_uniform")
        padding, (out_h, out_w) = window(section, name, in_shape, kernel, stride, padding,
                                          "kernel")
        weights = as_array(section, "weights", (filters, in_shape[0], kernel[0], kernel[1]))
        biases = as_array(section, "biases", (filters,))
        if biases is not None and not bias:
            raise section.error("biases", "given, but the layer has `bias: false`")
        algorithm = section.get_choice("algorithm", CONV_ALGORITHMS, "auto")
        spec = cls(index, name, tuple(in_shape), (filters, out_h, out_w), filters, kernel,
                   stride, padding, op, bias, init, weights, biases, algorithm)
        if algorithm == "winograd" and not spec.winograd_fits():
            raise section.error("algorithm", "winograd computes 3x3 kernels with stride 1 "
                                             "and padding of at most 2 on every side; this "
                                             "layer has "
                                             f"{spec._window_words()}: use auto or gemm")
        return spec

    def winograd_fits(self):
        return (tuple(self.kernel) == (3, 3) and tuple(self.stride) == (1, 1)
                and max(self.padding) <= 2)

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
        return f"a {kernel_h}x{kernel_w} kernel, stride {stride} and padding {padding}"

    def algorithms(self, dtype):
        """(forward and delta, kernel gradient): 'gemm' or 'winograd', for a run whose
        config asks for `dtype`."""
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
        shapes = {"weight": (self.filters, self.in_shape[0]) + tuple(self.kernel)}
        if self.bias:
            shapes["bias"] = (self.filters,)
        return shapes

    def flops(self):
        f, oh, ow = self.out_shape
        return 2 * f * oh * ow * self.in_shape[0] * self.kernel[0] * self.kernel[1]

    def scratch_per_sample(self):
        """The padded input plus `convtrain.kernels.conv`'s shifted rows and window matrix."""
        channels, height, width = self.in_shape
        top, bottom, left, right = self.padding
        padded_h, padded_w = height + top + bottom, width + left + right
        _, out_h, out_w = self.out_shape
        kernel_h, kernel_w = self.kernel
        return (channels * padded_h * padded_w + channels * kernel_w * padded_h * out_w
                + channels * kernel_h * kernel_w * out_h * out_w)


@dataclass(frozen=True)
class DenseSpec(LayerSpec):
    units: int = 1
    bias: bool = True
    init: str = "he_uniform"
    weights: np.ndarray = field(default=None, compare=False, repr=False)
    biases: np.ndarray = field(default=None, compare=False, repr=False)

    type = "dense"

    @classmethod
    def parse(cls, section, index, name, in_shape):
        units = section.get_int("units", minimum=1)
        bias = section.get_bool("bias", True)
        init = section.get_choice("init", INITS, "he_uniform")
        fan_in = int(np.prod(in_shape))
        weights = as_array(section, "weights", (units, fan_in))
        biases = as_array(section, "biases", (units,))
        if biases is not None and not bias:
            raise section.error("biases", "given, but the layer has `bias: false`")
        return cls(index, name, tuple(in_shape), (units,), units, bias, init, weights, biases)

    def param_shapes(self):
        shapes = {"weight": (self.units, int(np.prod(self.in_shape)))}
        if self.bias:
            shapes["bias"] = (self.units,)
        return shapes

    def flops(self):
        return 2 * self.units * int(np.prod(self.in_shape))


@dataclass(frozen=True)
class ActivationSpec(LayerSpec):
    slope: float = 0.0

    @classmethod
    def parse(cls, section, index, name, in_shape):
        return cls(index, name, tuple(in_shape), tuple(in_shape))

    def flops(self):
        return int(np.prod(self.in_shape))


class ReluSpec(ActivationSpec):
    type = "relu"


class SigmoidSpec(ActivationSpec):
    type = "sigmoid"


class TanhSpec(ActivationSpec):
    type = "tanh"


@dataclass(frozen=True)
class LeakyReluSpec(ActivationSpec):
    type = "leaky_relu"

    @classmethod
    def parse(cls, section, index, name, in_shape):
        slope = section.get_float("slope", 0.01, minimum=0.0, below=1.0)
        return cls(index, name, tuple(in_shape), tuple(in_shape), slope)


@dataclass(frozen=True)
class PoolSpec(LayerSpec):
    size: tuple = (2, 2)
    stride: tuple = (2, 2)

    @classmethod
    def parse(cls, section, index, name, in_shape):
        require_image(section, in_shape, cls.type)
        size = section.get_pair("size", (2, 2))
        stride = section.get_pair("stride", size)
        _, (out_h, out_w) = window(section, name, in_shape, size, stride, (0, 0), "window")
        return cls(index, name, tuple(in_shape), (in_shape[0], out_h, out_w), size, stride)

    def flops(self):
        return int(np.prod(self.out_shape)) * self.size[0] * self.size[1]


class MaxPoolSpec(PoolSpec):
    type = "maxpool"


class AvgPoolSpec(PoolSpec):
    type = "avgpool"


@dataclass(frozen=True)
class FlattenSpec(LayerSpec):
    type = "flatten"

    @classmethod
    def parse(cls, section, index, name, in_shape):
        return cls(index, name, tuple(in_shape), (int(np.prod(in_shape)),))


@dataclass(frozen=True)
class BatchNormSpec(LayerSpec):
    """Per channel of an image (over N, H, W), or per feature of a vector (over N)."""
    momentum: float = 0.1
    eps: float = 1e-5
    affine: bool = True
    gamma: np.ndarray = field(default=None, compare=False, repr=False)
    beta: np.ndarray = field(default=None, compare=False, repr=False)
    running_mean: np.ndarray = field(default=None, compare=False, repr=False)
    running_var: np.ndarray = field(default=None, compare=False, repr=False)

    type = "batchnorm"

    @classmethod
    def parse(cls, section, index, name, in_shape):
        momentum = section.get_float("momentum", 0.1, minimum=0.0, maximum=1.0)
        eps = section.get_float("eps", 1e-5, positive=True)
        affine = section.get_bool("affine", True)
        channels = (in_shape[0],)
        gamma, beta = as_array(section, "gamma", channels), as_array(section, "beta", channels)
        for key, given in (("gamma", gamma), ("beta", beta)):
            if given is not None and not affine:
                raise section.error(key, "given, but the layer has `affine: false`")
        running_mean = as_array(section, "running_mean", channels)
        running_var = as_array(section, "running_var", channels)
        if running_var is not None and np.any(running_var < 0):
            raise section.error("running_var", "has a negative variance")
        return cls(index, name, tuple(in_shape), tuple(in_shape), momentum, eps, affine,
                   gamma, beta, running_mean, running_var)

    def param_shapes(self):
        return {"weight": self.in_shape[:1], "bias": self.in_shape[:1]} if self.affine else {}

    def buffer_shapes(self):
        return {"running_mean": self.in_shape[:1], "running_var": self.in_shape[:1]}

    def flops(self):
        return 4 * int(np.prod(self.in_shape))


@dataclass(frozen=True)
class GlobalAvgPoolSpec(LayerSpec):
    type = "globalavgpool"

    @classmethod
    def parse(cls, section, index, name, in_shape):
        require_image(section, in_shape, cls.type)
        return cls(index, name, tuple(in_shape), (in_shape[0],))

    def flops(self):
        return int(np.prod(self.in_shape))


@dataclass(frozen=True)
class DropoutSpec(LayerSpec):
    rate: float = 0.5

    type = "dropout"

    @classmethod
    def parse(cls, section, index, name, in_shape):
        rate = section.get_float("rate", 0.5, minimum=0.0, below=1.0)
        return cls(index, name, tuple(in_shape), tuple(in_shape), rate)


@dataclass(frozen=True)
class ResidualSpec(LayerSpec):
    """output = body(x) + shortcut(x); no shortcut layers: the identity. Its layers' names
    are full names, the block's name first: `res1.conv1`."""
    body: tuple = ()
    shortcut: tuple = ()

    type = "residual"

    def children(self):
        return self.body + self.shortcut

    @property
    def param_count(self):
        return sum(child.param_count for child in self.children())

    def flops(self):
        return sum(child.flops() for child in self.children()) + int(np.prod(self.out_shape))


def walk(specs):
    """Every layer spec, depth first: a residual block, then its body, then its shortcut."""
    for spec, _ in walk_with_depth(specs):
        yield spec


def walk_with_depth(specs, depth=0):
    """(spec, nesting depth) of every layer, in walk's order; top-level layers are depth 0."""
    for spec in specs:
        yield spec, depth
        yield from walk_with_depth(spec.children(), depth + 1)


LAYER_SPECS = {spec.type: spec for spec in (
    Conv2dSpec, DenseSpec, ReluSpec, LeakyReluSpec, SigmoidSpec, TanhSpec,
    MaxPoolSpec, AvgPoolSpec, FlattenSpec, BatchNormSpec, GlobalAvgPoolSpec, DropoutSpec,
    ResidualSpec)}
