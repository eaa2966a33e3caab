"""dense (fully connected): out = x W^T + b, x flattened to (N, D). W (U, D), b (U,).

Matrix products go to NumPy's BLAS: the one place a convtrain loop is not ours.
"""

import numpy as np

from convtrain.layers.base import Layer, initial_biases, initial_weights


class Dense(Layer):
    def __init__(self, spec, dtype, rng):
        super().__init__(spec, dtype)
        units, fan_in = spec.param_shapes()["weight"]
        self.params["weight"] = initial_weights(spec, (units, fan_in), fan_in, units,
                                                rng).astype(dtype)
        if spec.bias:
            self.params["bias"] = initial_biases(spec, units).astype(dtype)

    def forward(self, x):
        """x (N, *in_shape) -> out (N, U)."""
        flat = x.reshape(x.shape[0], -1)
        out = flat @ self.params["weight"].T
        if self.spec.bias:
            out += self.params["bias"]
        self.cache = (flat, x.shape)
        return out

    def backward(self, dout, need_dx=True):
        """dout (N, U) -> dx (N, *in_shape); grads weight (U, D) = dout^T x, bias (U,)."""
        flat, in_shape = self.cache
        self.grads["weight"] = dout.T @ flat
        if self.spec.bias:
            self.grads["bias"] = dout.sum(axis=0)
        if not need_dx:
            return None
        return (dout @ self.params["weight"]).reshape(in_shape)
