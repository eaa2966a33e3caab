"""Element-wise activations: relu, leaky_relu, relu6, sigmoid, tanh. Any shape in, same
shape out."""

from dataclasses import dataclass

import numpy as np

from convtrain.layers.base import Layer, LayerSpec, kernels


class LeakyRelu(Layer):
    """relu is leaky_relu with slope 0."""

    compile_s = {"leaky_relu_forward": 0.2, "leaky_relu_backward": 0.2}

    def __init__(self, spec, dtype, rng=None):
        super().__init__(spec, dtype)
        self.slope = spec.slope

    def forward(self, x):
        x = np.ascontiguousarray(x)
        out = np.empty_like(x)
        positive = np.empty(x.shape, dtype=np.bool_)
        kernels("elementwise").leaky_relu_forward(x.reshape(-1), self.slope, out.reshape(-1),
                                                  positive.reshape(-1))
        self.cache = positive
        return out

    def backward(self, dout, need_dx=True):
        positive = self.cache
        dout = np.ascontiguousarray(dout)
        dx = np.empty_like(dout)
        kernels("elementwise").leaky_relu_backward(positive.reshape(-1), dout.reshape(-1),
                                                   self.slope, dx.reshape(-1))
        return dx

    def kink_state(self):
        return self.cache.copy()

    def to_onnx(self, graph, x, rank):
        if self.spec.type == "relu":
            return graph.node("Relu", [x], self.spec.name)
        return graph.node("LeakyRelu", [x], self.spec.name, alpha=float(self.slope))


class Relu6(Layer):
    """min(max(x, 0), 6), PyTorch's ReLU6 (MobileNet v2's activation): its derivative is 1
    strictly between 0 and 6 and 0 elsewhere, at both ends too, as torch's (which passes a
    NaN's gradient on: so does this)."""

    compile_s = {"clip_forward": 0.2, "clip_backward": 0.2}

    def forward(self, x):
        x = np.ascontiguousarray(x)
        out = np.empty_like(x)
        inside = np.empty(x.shape, dtype=np.bool_)
        kernels("elementwise").clip_forward(x.reshape(-1), 0.0, 6.0, out.reshape(-1),
                                            inside.reshape(-1))
        self.cache = inside
        return out

    def backward(self, dout, need_dx=True):
        dout = np.ascontiguousarray(dout)
        dx = np.empty_like(dout)
        kernels("elementwise").clip_backward(self.cache.reshape(-1), dout.reshape(-1),
                                             dx.reshape(-1))
        return dx

    def kink_state(self):
        return self.cache.copy()

    def to_onnx(self, graph, x, rank):
        """A Clip to [0, 6] (its bounds are inputs from opset 11)."""
        low = graph.weight(f"{self.spec.name}.min", np.array(0.0))
        high = graph.weight(f"{self.spec.name}.max", np.array(6.0))
        return graph.node("Clip", [x, low, high], self.spec.name)


class _OutputActivation(Layer):
    """An activation whose derivative is a function of its own output: keeps only that."""

    forward_kernel = None   # the name of a kernel (x, out) -> None, 1-D arrays
    backward_kernel = None  # the name of a kernel (out, dout, dx) -> None, 1-D arrays
    onnx_op = None

    def forward(self, x):
        x = np.ascontiguousarray(x)
        out = np.empty_like(x)
        getattr(kernels("elementwise"), self.forward_kernel)(x.reshape(-1), out.reshape(-1))
        self.cache = out
        return out

    def backward(self, dout, need_dx=True):
        out = self.cache
        dx = np.empty_like(out)
        getattr(kernels("elementwise"), self.backward_kernel)(
            out.reshape(-1), np.ascontiguousarray(dout).reshape(-1), dx.reshape(-1))
        return dx

    def to_onnx(self, graph, x, rank):
        return graph.node(self.onnx_op, [x], self.spec.name)


class Sigmoid(_OutputActivation):
    """σ(x); dσ/dx = σ(1 − σ)."""

    forward_kernel, backward_kernel, onnx_op = "sigmoid_forward", "sigmoid_backward", "Sigmoid"
    compile_s = {"sigmoid_forward": 0.2, "sigmoid_backward": 0.2}


class Tanh(_OutputActivation):
    """tanh(x); d tanh/dx = 1 − tanh²."""

    forward_kernel, backward_kernel, onnx_op = "tanh_forward", "tanh_backward", "Tanh"
    compile_s = {"tanh_forward": 0.2, "tanh_backward": 0.2}


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
    compute = LeakyRelu

    def forward_formula(self, s):
        return f"{s.out(self)} = max({s.inp(self)}, 0)"

    def backward_formulas(self, s, textbook):
        return None, f"{s.delta_in(self)} = {s.delta(self)} ⊙ 1[{s.inp(self)} > 0]"


@dataclass(frozen=True)
class LeakyReluSpec(ActivationSpec):
    type = "leaky_relu"
    compute = LeakyRelu

    @classmethod
    def parse(cls, section, index, name, in_shape):
        slope = section.get_float("slope", 0.01, minimum=0.0, below=1.0)
        return cls(index, name, tuple(in_shape), tuple(in_shape), slope)

    def forward_formula(self, s):
        return f"{s.out(self)} = max({s.inp(self)}, {self.slope:g}·{s.inp(self)})"

    def backward_formulas(self, s, textbook):
        return None, (f"{s.delta_in(self)} = {s.delta(self)} ⊙ "
                      f"({s.inp(self)} > 0 ? 1 : {self.slope:g})")


class Relu6Spec(ActivationSpec):
    type = "relu6"
    compute = Relu6
    name_stem = "relu6_"  # relu6_2, not relu62

    def forward_formula(self, s):
        return f"{s.out(self)} = min(max({s.inp(self)}, 0), 6)"

    def backward_formulas(self, s, textbook):
        return None, f"{s.delta_in(self)} = {s.delta(self)} ⊙ 1[0 < {s.inp(self)} < 6]"


class SigmoidSpec(ActivationSpec):
    type = "sigmoid"
    compute = Sigmoid

    def forward_formula(self, s):
        return f"{s.out(self)} = σ({s.inp(self)})"

    def backward_formulas(self, s, textbook):
        return None, f"{s.delta_in(self)} = {s.delta(self)} ⊙ A(1 − A), A = {s.out(self)}"


class TanhSpec(ActivationSpec):
    type = "tanh"
    compute = Tanh

    def forward_formula(self, s):
        return f"{s.out(self)} = tanh({s.inp(self)})"

    def backward_formulas(self, s, textbook):
        return None, f"{s.delta_in(self)} = {s.delta(self)} ⊙ (1 − A²), A = {s.out(self)}"


TYPES = (ReluSpec, LeakyReluSpec, Relu6Spec, SigmoidSpec, TanhSpec)
