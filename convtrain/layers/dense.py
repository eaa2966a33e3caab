"""dense (fully connected): out = x W^T + b, x flattened to (N, D). W (U, D), b (U,)."""

import numpy as np

from convtrain.kernels.dense import (
    dense_backward_input,
    dense_backward_params,
    dense_forward,
)
from convtrain.layers.base import Layer, initial_biases, initial_weights


class Dense(Layer):
    def __init__(self, spec, dtype, rng):
        super().__init__(spec, dtype)
        units, fan_in = spec.param_shapes()["weight"]
        self.params["weight"] = initial_weights(spec, (units, fan_in), fan_in, units,
                                                rng).astype(dtype)
        if spec.bias:
            self.params["bias"] = initial_biases(spec, units).astype(dtype)
        self._zero_bias = np.zeros(units, dtype=dtype)

    def forward(self, x):
        """x (N, *in_shape) -> out (N, U)."""
        flat = np.ascontiguousarray(x.reshape(x.shape[0], -1))
        weight = self.params["weight"]
        out = np.empty((flat.shape[0], weight.shape[0]), dtype=self.dtype)
        dense_forward(flat, weight, self.params.get("bias", self._zero_bias), out)
        self.cache = (flat, x.shape)
        return out

    def backward(self, dout, need_dx=True):
        """dout (N, U) -> dx (N, *in_shape); grads weight (U, D) = dout^T x, bias (U,)."""
        flat, in_shape = self.cache
        dout = np.ascontiguousarray(dout)
        weight = self.params["weight"]
        dw, db = np.empty_like(weight), np.empty(weight.shape[0], dtype=self.dtype)
        # BLAS sums dout^T x over the batch in its own order, which a split batch cannot
        # continue: every process takes the whole batch's rows and computes the same product
        # (B * (D + U) values; LeNet-5's three, at batch 64: 52,352, against 58,920 weights).
        team = self.mode.team
        dense_backward_params(team.gather_rows(flat), team.gather_rows(dout), dw, db)
        self.grads["weight"] = dw
        if self.spec.bias:
            self.grads["bias"] = db
        if not need_dx:
            return None
        dx = np.empty_like(flat)
        dense_backward_input(dout, weight, dx)
        return dx.reshape(in_shape)
