"""dense (fully connected): out = x W^T + b, x flattened to (N, D). W (U, D), b (U,)."""

import numpy as np

from convtrain.kernels.dense import (
    dense_backward_input,
    dense_backward_input_split,
    dense_backward_params,
    dense_backward_params_split,
    dense_forward,
    dense_forward_split,
)
from convtrain.model.layers.base import Layer, initial_biases, initial_weights

# Weights from which a dense layer's products are split among the cores
# (convtrain.kernels.dense): LeNet-5's largest (48,000) stays serial, whose products take
# less time than a parallel start; a CIFAR network's 4096 -> 256 is split.
SPLIT_FROM_WEIGHTS = 2 ** 16


class Dense(Layer):
    def __init__(self, spec, dtype, rng):
        super().__init__(spec, dtype)
        units, fan_in = spec.param_shapes()["weight"]
        self.params["weight"] = initial_weights(spec, (units, fan_in), fan_in, units,
                                                rng).astype(dtype)
        if spec.bias:
            self.params["bias"] = initial_biases(spec, units).astype(dtype)
        self._zero_bias = np.zeros(units, dtype=dtype)
        self._split = units * fan_in >= SPLIT_FROM_WEIGHTS  # (kernels looked up at each
        # call, by their module names, so that convtrain.run.compiling can stand in for them)

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
        forward = dense_forward_split if self._split else dense_forward
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
        backward_params = dense_backward_params_split if self._split else dense_backward_params
        backward_params(whole, whole_dout, dw, db)
        self.grads["weight"] = dw
        if self.spec.bias:
            self.grads["bias"] = db
        if not need_dx:
            return None
        dx = np.empty_like(whole)
        backward_input = dense_backward_input_split if self._split else dense_backward_input
        backward_input(whole_dout, weight, dx)
        return dx[team.own_slice()].reshape(in_shape)
