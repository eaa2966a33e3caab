"""residual: out = body(x) + shortcut(x), the shortcut the identity when it has no layers.

Backward hands the delta at the block's output to both branches unchanged (the derivative
of a sum) and adds the deltas they hand down: dx = dbody + dshortcut."""

from convtrain.layers.base import Layer


class Residual(Layer):
    def __init__(self, spec, dtype, rng=None):
        from convtrain.layers import build_layer  # the registry imports this module

        super().__init__(spec, dtype)
        self.body = [build_layer(child, dtype, rng) for child in spec.body]
        self.shortcut = [build_layer(child, dtype, rng) for child in spec.shortcut]
        self.deltas = {}
        self.branch_deltas = None

    def children(self):
        return self.body + self.shortcut

    def forward(self, x):
        out = x
        for layer in self.body:
            out = layer.forward(out)
        skip = x
        for layer in self.shortcut:
            skip = layer.forward(skip)
        return out + skip

    def backward(self, dout, need_dx=True):
        """Fills self.deltas (each nested layer's output delta, by full name) and
        self.branch_deltas (what the body and the shortcut hand down)."""
        self.deltas = {}
        dbody = self._branch_backward(self.body, dout, need_dx)
        dskip = self._branch_backward(self.shortcut, dout, need_dx)
        self.branch_deltas = (dbody, dskip)
        return dbody + dskip if need_dx else None

    def _branch_backward(self, layers, delta, need_dx):
        for layer in reversed(layers):
            delta = delta.reshape((delta.shape[0],) + layer.spec.out_shape)
            self.deltas[layer.name] = delta
            delta = layer.backward(delta, need_dx or layer is not layers[0])
            self.deltas.update(layer.nested_deltas())
        return delta

    def nested_deltas(self):
        return self.deltas
