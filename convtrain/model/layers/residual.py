"""residual: out = body(x) + shortcut(x), the shortcut the identity when it has no layers.

Backward hands the delta at the block's output to both branches unchanged (the derivative
of a sum) and adds the deltas they hand down: dx = dbody + dshortcut."""

import time

import numpy as np

from convtrain.kernels.elementwise import add
from convtrain.model.layers.base import Layer


class Residual(Layer):
    def __init__(self, spec, dtype, rng=None):
        from convtrain.model.layers import build_layer  # the registry imports this module

        super().__init__(spec, dtype)
        self.body = [build_layer(child, dtype, rng) for child in spec.body]
        self.shortcut = [build_layer(child, dtype, rng) for child in spec.shortcut]
        self.deltas = {}

    def children(self):
        return self.body + self.shortcut

    def forward(self, x):
        return _sum(self._branch_forward(self.body, x), self._branch_forward(self.shortcut, x))

    def _branch_forward(self, layers, out):
        for layer in layers:
            started = time.perf_counter()
            out = layer.forward(out)
            self.mode.time(layer, "forward_ms", started)
        return out

    def backward(self, dout, need_dx=True):
        """Fills self.deltas (each nested layer's output delta, by full name)."""
        self.deltas = {}
        dbody = self._branch_backward(self.body, dout, need_dx)
        dskip = self._branch_backward(self.shortcut, dout, need_dx)
        return _sum(dbody, dskip) if need_dx else None

    def _branch_backward(self, layers, delta, need_dx):
        for layer in reversed(layers):
            delta = delta.reshape((delta.shape[0],) + layer.spec.out_shape)
            self.mode.keep(self.deltas, layer.name, delta)
            started = time.perf_counter()
            delta = layer.backward(delta, need_dx or layer is not layers[0])
            self.mode.time(layer, "backward_ms", started)
            self.deltas.update(layer.nested_deltas())
        return delta

    def nested_deltas(self):
        """Handed over once: the network keeps them, this block forgets them."""
        deltas, self.deltas = self.deltas, {}
        return deltas


def _sum(a, b):
    """a + b, a new array (either may be what a layer keeps for its backward pass)."""
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    out = np.empty_like(a)
    add(a.reshape(-1), b.reshape(-1), out.reshape(-1))
    return out
