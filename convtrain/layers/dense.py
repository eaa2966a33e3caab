"""dense (fully connected): out = x W^T + b, x flattened to (N, D). W (U, D), b (U,)."""

from dataclasses import dataclass, field

import numpy as np

from convtrain.layers.base import INITS, Layer, LayerSpec, initial_biases, initial_weights, kernels
from convtrain.layers.shapes import weights_and_biases

# Weights from which a dense layer's products are split among the cores
# (convtrain.kernels.dense): LeNet-5's largest (48,000) stays serial, whose products take
# less time than a parallel start; a CIFAR network's 4096 -> 256 is split.
SPLIT_FROM_WEIGHTS = 2 ** 16


class Dense(Layer):
    compile_s = {"dense_forward": 0.2, "dense_backward_params": 0.4,
                 "dense_backward_input": 0.1, "dense_forward_split": 0.8,
                 "dense_backward_params_split": 1.1, "dense_backward_input_split": 0.4}

    def __init__(self, spec, dtype, rng):
        super().__init__(spec, dtype)
        units, fan_in = spec.param_shapes()["weight"]
        self.params["weight"] = initial_weights(spec, (units, fan_in), fan_in, units,
                                                rng).astype(dtype)
        if spec.bias:
            self.params["bias"] = initial_biases(spec, units).astype(dtype)
        self._zero_bias = np.zeros(units, dtype=dtype)
        self._split = units * fan_in >= SPLIT_FROM_WEIGHTS

    def forward(self, x):
        """x (N, *in_shape) -> out (N, U)."""
        flat = np.ascontiguousarray(x.reshape(x.shape[0], -1))
        # BLAS blocks a product differently for different numbers of rows, so a row's last
        # bits depend on how many rows it is multiplied with. When processes share a batch
        # (mode.team), each multiplies the whole batch's rows, gathered, and keeps its own:
        # B * (D + U) values exchanged per layer (LeNet-5's three at batch 64: 52,352,
        # against 58,920 weights). Validation gives each process whole batches of its own.
        team = self.mode.team
        whole = team.gather_rows(flat) if self.mode.training else flat
        weight = self.params["weight"]
        out = np.empty((whole.shape[0], weight.shape[0]), dtype=self.dtype)
        dense = kernels("dense")
        forward = dense.dense_forward_split if self._split else dense.dense_forward
        forward(whole, weight, self.params.get("bias", self._zero_bias), out)
        self.cache = (whole, x.shape)
        return out[team.own_slice()] if self.mode.training else out

    def backward(self, dout, need_dx=True):
        """dout (N, U) -> dx (N, *in_shape); grads weight (U, D) = dout^T x, bias (U,)."""
        whole, in_shape = self.cache
        team = self.mode.team
        whole_dout = np.ascontiguousarray(team.gather_rows(dout))  # as forward: whole batch
        weight = self.params["weight"]
        dw, db = np.empty_like(weight), np.empty(weight.shape[0], dtype=self.dtype)
        dense = kernels("dense")
        backward_params = (dense.dense_backward_params_split if self._split
                           else dense.dense_backward_params)
        backward_params(whole, whole_dout, dw, db)
        self.grads["weight"] = dw
        if self.spec.bias:
            self.grads["bias"] = db
        if not need_dx:
            return None
        dx = np.empty_like(whole)
        backward_input = (dense.dense_backward_input_split if self._split
                          else dense.dense_backward_input)
        backward_input(whole_dout, weight, dx)
        return dx[team.own_slice()].reshape(in_shape)

    def to_onnx(self, graph, x, rank):
        """A Gemm (after a Flatten of an image)."""
        spec = self.spec
        if rank > 2:
            x = graph.node("Flatten", [x], spec.name + ".flatten", axis=1)
        inputs = [x, graph.weight(f"{spec.name}.weight", self.params["weight"])]
        if spec.bias:
            inputs.append(graph.weight(f"{spec.name}.bias", self.params["bias"]))
        return graph.node("Gemm", inputs, spec.name, transB=1)


@dataclass(frozen=True)
class DenseSpec(LayerSpec):
    units: int = 1
    bias: bool = True
    init: str = "he_uniform"
    weights: np.ndarray = field(default=None, compare=False, repr=False)
    biases: np.ndarray = field(default=None, compare=False, repr=False)

    type = "dense"
    compute = Dense

    @classmethod
    def parse(cls, section, index, name, in_shape):
        units = section.get_int("units", minimum=1)
        bias = section.get_bool("bias", True)
        init = section.get_choice("init", INITS, "he_uniform")
        weights, biases = weights_and_biases(section, (units, int(np.prod(in_shape))), bias)
        return cls(index, name, tuple(in_shape), (units,), units, bias, init, weights, biases)

    def param_shapes(self):
        shapes = {"weight": (self.units, int(np.prod(self.in_shape)))}
        if self.bias:
            shapes["bias"] = (self.units,)
        return shapes

    def flops(self):
        return 2 * self.units * int(np.prod(self.in_shape))

    def forward_formula(self, s):
        bias = f" + {s.bias(self)}" if self.bias else ""
        return f"{s.out(self)} = {s.kernel(self)} · {s.inp(self)}{bias}"

    def backward_formulas(self, s, textbook):
        d, k = s.delta(self), s.kernel(self)
        return f"∂L/∂{k} = {d} ⊗ {s.inp(self)}", f"{s.delta_in(self)} = {k}ᵀ · {d}"


TYPES = (DenseSpec,)
