"""hardsigmoid, hardswish, silu, gelu and prelu, with PyTorch's semantics: the activations of
MobileNet v3, EfficientNet and transformers. Their derivatives are functions of the input x,
which they keep. Any shape in, the same shape out; prelu's slopes are per channel (the
first axis of a sample: C of an image, each feature of a vector)."""

from dataclasses import dataclass, field

import numpy as np

from convtrain.layers.activations import ActivationSpec
from convtrain.layers.base import Layer, kernels, planes
from convtrain.layers.shapes import as_array


class _InputActivation(Layer):
    """An element-wise activation whose derivative needs x: keeps x."""

    forward_kernel = None   # the name of a kernel (x, out) -> None, 1-D arrays
    backward_kernel = None  # the name of a kernel (x, dout, dx) -> None, 1-D arrays
    kinks = ()              # the x where the derivative jumps

    def forward(self, x):
        x = np.ascontiguousarray(x)
        out = np.empty_like(x)
        getattr(kernels("elementwise"), self.forward_kernel)(x.reshape(-1), out.reshape(-1))
        self.cache = x
        return out

    def backward(self, dout, need_dx=True):
        x = self.cache
        dx = np.empty_like(x)
        getattr(kernels("elementwise"), self.backward_kernel)(
            x.reshape(-1), np.ascontiguousarray(dout).reshape(-1), dx.reshape(-1))
        return dx

    def kink_state(self):
        """Which side of each kink every input lies on (None: no kinks)."""
        if not self.kinks:
            return None
        return sum((self.cache > kink).astype(np.int8) for kink in self.kinks)


class HardSigmoid(_InputActivation):
    forward_kernel, backward_kernel = "hardsigmoid_forward", "hardsigmoid_backward"
    kinks = (-3.0, 3.0)
    compile_s = {"hardsigmoid_forward": 0.2, "hardsigmoid_backward": 0.2}

    def to_onnx(self, graph, x, rank):
        return graph.node("HardSigmoid", [x], self.spec.name, alpha=1.0 / 6.0, beta=0.5)


class HardSwish(_InputActivation):
    forward_kernel, backward_kernel = "hardswish_forward", "hardswish_backward"
    kinks = (-3.0, 3.0)
    compile_s = {"hardswish_forward": 0.2, "hardswish_backward": 0.2}

    def to_onnx(self, graph, x, rank):
        """x · HardSigmoid(x) (ONNX's HardSwish needs opset 14; this runs from 13)."""
        gate = graph.node("HardSigmoid", [x], self.spec.name + ".gate", alpha=1.0 / 6.0,
                          beta=0.5)
        return graph.node("Mul", [x, gate], self.spec.name)


class Silu(_InputActivation):
    forward_kernel, backward_kernel = "silu_forward", "silu_backward"
    compile_s = {"silu_forward": 0.2, "silu_backward": 0.2}

    def to_onnx(self, graph, x, rank):
        gate = graph.node("Sigmoid", [x], self.spec.name + ".gate")
        return graph.node("Mul", [x, gate], self.spec.name)


class Gelu(_InputActivation):
    forward_kernel, backward_kernel = "gelu_forward", "gelu_backward"
    compile_s = {"gelu_forward": 0.2, "gelu_backward": 0.2}

    def to_onnx(self, graph, x, rank):
        """x · (1 + erf(x/√2))/2, from the operators of every opset (Gelu is opset 20's)."""
        name = self.spec.name
        scaled = graph.node("Mul", [x, graph.weight(f"{name}.rsqrt2", np.array(0.5 ** 0.5))],
                            name + ".scaled")
        erf = graph.node("Erf", [scaled], name + ".erf")
        one_plus = graph.node("Add", [erf, graph.weight(f"{name}.one", np.array(1.0))],
                              name + ".cdf2")
        half_x = graph.node("Mul", [x, graph.weight(f"{name}.half", np.array(0.5))],
                            name + ".half_x")
        return graph.node("Mul", [half_x, one_plus], name)


class Prelu(Layer):
    """out = x where x > 0, else a_c · x; a, one slope per channel, is the layer's weight."""

    compile_s = {"prelu_forward": 0.55, "prelu_backward": 0.45, "add_samples_in_order": 0.8}

    def __init__(self, spec, dtype, rng=None):
        super().__init__(spec, dtype)
        given = spec.slope if spec.slope is not None else np.full(spec.in_shape[0], 0.25)
        self.params["weight"] = given.astype(dtype)

    def forward(self, x):
        x3 = planes(x, self.spec.in_shape[0])
        out = np.empty_like(x3)
        kernels("elementwise").prelu_forward(x3, self.params["weight"], out)
        self.cache = x3
        return out.reshape(x.shape)

    def backward(self, dout, need_dx=True):
        x3 = self.cache
        dx = np.empty_like(x3)
        per_sample = np.empty(x3.shape[:2])
        kernels("elementwise").prelu_backward(x3, planes(dout, self.spec.in_shape[0]),
                                              self.params["weight"], dx, per_sample)
        add_in_order = kernels("ordered_sums").add_samples_in_order
        total = self.mode.team.chain(np.zeros((x3.shape[1], 1)),
                                     lambda total: add_in_order(per_sample[:, :, None], total))
        self.grads["weight"] = total[:, 0].astype(self.dtype)
        return dx.reshape(dout.shape)

    def kink_state(self):
        return self.cache > 0

    def to_onnx(self, graph, x, rank):
        """A PRelu whose slope broadcasts over H and W: (C, 1, 1) for an image."""
        slope = self.params["weight"].reshape((-1,) + (1,) * (len(self.spec.in_shape) - 1))
        return graph.node("PRelu", [x, graph.weight(f"{self.spec.name}.weight", slope)],
                          self.spec.name)


class HardSigmoidSpec(ActivationSpec):
    type = "hardsigmoid"
    compute = HardSigmoid

    def forward_formula(self, s):
        return f"{s.out(self)} = min(max({s.inp(self)}/6 + 1/2, 0), 1)"

    def backward_formulas(self, s, textbook):
        return None, f"{s.delta_in(self)} = {s.delta(self)} ⊙ 1[−3 < {s.inp(self)} < 3]/6"


class HardSwishSpec(ActivationSpec):
    type = "hardswish"
    compute = HardSwish

    def forward_formula(self, s):
        i = s.inp(self)
        return f"{s.out(self)} = {i} · min(max({i} + 3, 0), 6)/6"

    def backward_formulas(self, s, textbook):
        i = s.inp(self)
        return None, (f"{s.delta_in(self)} = {s.delta(self)} ⊙ ({i} ≤ −3 ? 0 : {i} < 3 ? "
                      f"{i}/3 + 1/2 : 1)")


class SiluSpec(ActivationSpec):
    type = "silu"
    compute = Silu

    def forward_formula(self, s):
        return f"{s.out(self)} = {s.inp(self)} · σ({s.inp(self)})"

    def backward_formulas(self, s, textbook):
        i = s.inp(self)
        return None, f"{s.delta_in(self)} = {s.delta(self)} ⊙ σ({i})(1 + {i}(1 − σ({i})))"


class GeluSpec(ActivationSpec):
    type = "gelu"
    compute = Gelu

    def forward_formula(self, s):
        return f"{s.out(self)} = {s.inp(self)} · Φ({s.inp(self)}), Φ(x) = (1 + erf(x/√2))/2"

    def backward_formulas(self, s, textbook):
        i = s.inp(self)
        return None, (f"{s.delta_in(self)} = {s.delta(self)} ⊙ (Φ({i}) + {i}·φ({i})), "
                      f"φ(x) = exp(−x²/2)/√(2π)")


@dataclass(frozen=True)
class PreluSpec(ActivationSpec):
    slope: np.ndarray = field(default=None, compare=False, repr=False)

    type = "prelu"
    compute = Prelu
    weight_symbol = "a"

    @classmethod
    def parse(cls, section, index, name, in_shape):
        slope = as_array(section, "slope", in_shape[:1])
        return cls(index, name, tuple(in_shape), tuple(in_shape), slope)

    def param_shapes(self):
        return {"weight": self.in_shape[:1]}

    def forward_formula(self, s):
        i = s.inp(self)
        return (f"{s.out(self)} = max({i}, 0) + {s.kernel(self)} ⊙ min({i}, 0), "
                f"{s.kernel(self)} one slope per channel")

    def backward_formulas(self, s, textbook):
        i, d, a = s.inp(self), s.delta(self), s.kernel(self)
        where = "N, H, W" if len(self.in_shape) == 3 else "N"
        return (f"∂L/∂{a} = Σ over {where} of {d} ⊙ min({i}, 0)",
                f"{s.delta_in(self)} = {d} ⊙ ({i} > 0 ? 1 : {a})")


TYPES = (HardSigmoidSpec, HardSwishSpec, SiluSpec, GeluSpec, PreluSpec)
