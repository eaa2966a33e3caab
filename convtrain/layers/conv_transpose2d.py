"""conv_transpose2d: PyTorch's ConvTranspose2d, the transpose of a conv2d (its gradient with
respect to the input), with stride, padding, output_padding, groups and dilation.

Each input value x[c, h, w] adds x[c, h, w]·K[c, f] to the output window that starts at row
h·s − p, column w·s − p (taps d apart). That is exactly how a conv2d of the same kernel,
stride, padding and dilation hands its delta down, from F = this layer's filters channels to
C: this layer runs that conv2d (its *mirror*, whose weight is this layer's weight, [C,
F/groups, kh, kw]) backwards. Forward is the mirror's input delta; the input delta is the
mirror's forward; the kernel gradient is the mirror's, with the roles of input and delta
swapped. So every conv kernel (im2col's, the depthwise ones) serves both layers.

Output size: (H − 1)·s − 2p + d·(k − 1) + output_padding + 1, output_padding < s or < d
adding rows at the bottom (columns at the right) that only the window's tail reaches.
"""

from dataclasses import dataclass, field

import numpy as np

from convtrain.layers.base import INITS, Layer, LayerSpec, initial_biases, kernels
from convtrain.layers.conv2d import Conv2d, Conv2dSpec, bias_gradient
from convtrain.layers.shapes import as_array, require_image


class ConvTranspose2d(Layer):
    compile_s = {**Conv2d.compile_s, "add_channel_bias": 0.4}

    def __init__(self, spec, dtype, rng):
        super().__init__(spec, dtype)
        self.mirror = Conv2d(spec.mirror(), dtype, rng)
        self.params["weight"] = self.mirror.params["weight"]
        if spec.bias:
            self.params["bias"] = initial_biases(spec, spec.filters).astype(dtype)

    def choose_algorithms(self, dtype):
        self.mirror.choose_algorithms(dtype)

    def _ready_mirror(self):
        """The mirror with this layer's current weight and mode (the optimizer and the
        network set those on this layer)."""
        self.mirror.params["weight"] = self.params["weight"]
        self.mirror.mode = self.mode
        return self.mirror

    def forward(self, x):
        """x (N, C, H, W) -> out (N, F, OH, OW): the mirror's delta to its input."""
        x = np.ascontiguousarray(x)
        mirror = self._ready_mirror()
        out = mirror._input_delta(x, mirror.running_kernel(),
                                  (x.shape[0],) + self.spec.out_shape)
        if self.spec.bias:
            kernels("conv").add_channel_bias(out, self.params["bias"])
        self.cache = x
        return out

    def backward(self, dout, need_dx=True):
        """dout (N, F, OH, OW) -> dx (N, C, H, W); grads weight (C, F/G, KH, KW), bias (F,)."""
        x, mirror = self.cache, self._ready_mirror()
        dout = np.ascontiguousarray(dout)
        self.grads["weight"] = mirror._weight_gradient(dout, x, mirror.running_kernel())
        if self.spec.bias:
            self.grads["bias"] = bias_gradient(dout, self.mode.team, self.dtype)
        if not need_dx:
            return None
        dx = mirror.forward(dout)
        mirror.cache = None
        return dx

    def to_onnx(self, graph, x, rank):
        spec = self.spec
        inputs = [x, graph.weight(f"{spec.name}.weight", self.params["weight"])]
        if spec.bias:
            inputs.append(graph.weight(f"{spec.name}.bias", self.params["bias"]))
        pad_h, pad_w = spec.padding
        return graph.node("ConvTranspose", inputs, spec.name, kernel_shape=list(spec.kernel),
                          strides=list(spec.stride), pads=[pad_h, pad_w, pad_h, pad_w],
                          output_padding=list(spec.output_padding), group=spec.groups,
                          dilations=list(spec.dilation))


@dataclass(frozen=True)
class ConvTranspose2dSpec(LayerSpec):
    filters: int = 1
    kernel: tuple = (1, 1)
    stride: tuple = (1, 1)
    padding: tuple = (0, 0)  # rows, columns: PyTorch's, the same on both sides
    output_padding: tuple = (0, 0)
    bias: bool = True
    init: str = "he_uniform"
    weights: np.ndarray = field(default=None, compare=False, repr=False)
    biases: np.ndarray = field(default=None, compare=False, repr=False)
    groups: int = 1
    dilation: tuple = (1, 1)

    type = "conv_transpose2d"
    compute = ConvTranspose2d
    name_stem = "convT"
    weight_symbol = "K"

    @classmethod
    def parse(cls, section, index, name, in_shape):
        require_image(section, in_shape, cls.type)
        filters = section.get_int("filters", minimum=1)
        kernel = section.get_pair("kernel")
        stride = section.get_pair("stride", 1)
        padding = section.get_pair("padding", 0, minimum=0)
        output_padding = section.get_pair("output_padding", 0, minimum=0)
        dilation = section.get_pair("dilation", 1)
        groups = section.get_int("groups", 1, minimum=1)
        for what, count in (("channels of its input", in_shape[0]), ("filters", filters)):
            if count % groups:
                raise section.error("groups", f"{groups} does not divide the {count} {what}")
        for axis, extra in enumerate(output_padding):
            if extra >= stride[axis] and extra >= dilation[axis]:
                raise section.error("output_padding", f"{extra} must be smaller than the "
                                                      f"stride or the dilation (PyTorch's rule)")
        out = tuple((size - 1) * s - 2 * p + d * (k - 1) + extra + 1 for size, s, p, d, k, extra
                    in zip(in_shape[1:], stride, padding, dilation, kernel, output_padding))
        if min(out) < 1:
            raise section.error("padding", f"{list(padding)} leaves no output of the "
                                           f"{in_shape[1]}x{in_shape[2]} input (layer {name}, "
                                           f"{cls.type}: output {out[0]}x{out[1]})")
        bias = section.get_bool("bias", True)
        init = section.get_choice("init", INITS, "he_uniform")
        weights = as_array(section, "weights", (in_shape[0], filters // groups) + kernel)
        biases = as_array(section, "biases", (filters,))
        if biases is not None and not bias:
            raise section.error("biases", "given, but the layer has `bias: false`")
        return cls(index, name, tuple(in_shape), (filters,) + out, filters, kernel, stride,
                   padding, output_padding, bias, init, weights, biases, groups, dilation)

    def mirror(self):
        """The conv2d this layer transposes: from (F, OH, OW) to this layer's input."""
        pad_h, pad_w = self.padding
        return Conv2dSpec(self.index, self.name, self.out_shape, self.in_shape,
                          self.in_shape[0], self.kernel, self.stride,
                          (pad_h, pad_h, pad_w, pad_w), "correlation", False, self.init,
                          self.weights, None, "gemm", self.groups, self.dilation)

    def param_shapes(self):
        shapes = {"weight": (self.in_shape[0], self.filters // self.groups) + tuple(self.kernel)}
        if self.bias:
            shapes["bias"] = (self.filters,)
        return shapes

    def flops(self):
        channels, height, width = self.in_shape
        return (2 * channels * height * width * (self.filters // self.groups)
                * self.kernel[0] * self.kernel[1])

    def scratch_per_sample(self):
        return self.mirror().scratch_per_sample()

    def forward_formula(self, s):
        bias = f" + {s.bias(self)}" if self.bias else ""
        notes = [f"stride {tuple(self.stride)}, padding {tuple(self.padding)}"]
        if any(self.output_padding):
            notes.append(f"output_padding {tuple(self.output_padding)}: rows/columns added "
                         f"at the bottom/right")
        if tuple(self.dilation) != (1, 1):
            notes.append(f"dilation {tuple(self.dilation)}")
        if self.groups > 1:
            notes.append(f"{self.groups} groups")
        return (f"{s.out(self)} = Σ_c {s.inp(self)}[c, h, w]·{s.kernel(self)}[c, f] added at "
                f"rows h·s − p.., columns w·s − p..{bias} (the transpose of a conv2d; "
                f"{', '.join(notes)})")

    def backward_formulas(self, s, textbook):
        d, k = s.delta(self), s.kernel(self)
        return (f"∂L/∂{k}[c, f] = {s.inp(self)}[c] ⋆ (windows of {d}[f] at stride s, padding "
                f"p): the conv2d's kernel gradient with input {d}",
                f"{s.delta_in(self)} = {d} ⋆ {k}, stride {tuple(self.stride)}, padding "
                f"{tuple(self.padding)}: the conv2d this layer transposes, run forward")


TYPES = (ConvTranspose2dSpec,)
