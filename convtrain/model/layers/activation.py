"""Element-wise activations: relu, leaky_relu, sigmoid, tanh. Any shape in, same shape out."""

import numpy as np

from convtrain.kernels.elementwise import (
    leaky_relu_backward,
    leaky_relu_forward,
    sigmoid_backward,
    sigmoid_forward,
    tanh_backward,
    tanh_forward,
)
from convtrain.model.layers.base import Layer


class LeakyRelu(Layer):
    """relu is leaky_relu with slope 0."""

    def __init__(self, spec, dtype, rng=None):
        super().__init__(spec, dtype)
        self.slope = spec.slope

    def forward(self, x):
        x = np.ascontiguousarray(x)
        out = np.empty_like(x)
        positive = np.empty(x.shape, dtype=np.bool_)
        leaky_relu_forward(x.reshape(-1), self.slope, out.reshape(-1), positive.reshape(-1))
        self.cache = positive
        return out

    def backward(self, dout, need_dx=True):
        positive = self.cache
        dout = np.ascontiguousarray(dout)
        dx = np.empty_like(dout)
        leaky_relu_backward(positive.reshape(-1), dout.reshape(-1), self.slope,
                            dx.reshape(-1))
        return dx

    def kink_state(self):
        return self.cache.copy()


class _OutputActivation(Layer):
    """An activation whose derivative is a function of its own output: keeps only that."""

    forward_kernel = None   # (x, out) -> None, 1-D arrays
    backward_kernel = None  # (out, dout, dx) -> None, 1-D arrays

    def __init__(self, spec, dtype, rng=None):
        super().__init__(spec, dtype)

    def forward(self, x):
        x = np.ascontiguousarray(x)
        out = np.empty_like(x)
        self.forward_kernel(x.reshape(-1), out.reshape(-1))
        self.cache = out
        return out

    def backward(self, dout, need_dx=True):
        out = self.cache
        dx = np.empty_like(out)
        self.backward_kernel(out.reshape(-1), np.ascontiguousarray(dout).reshape(-1),
                             dx.reshape(-1))
        return dx


class Sigmoid(_OutputActivation):
    """σ(x); dσ/dx = σ(1 − σ)."""

    forward_kernel = staticmethod(sigmoid_forward)
    backward_kernel = staticmethod(sigmoid_backward)


class Tanh(_OutputActivation):
    """tanh(x); d tanh/dx = 1 − tanh²."""

    forward_kernel = staticmethod(tanh_forward)
    backward_kernel = staticmethod(tanh_backward)
