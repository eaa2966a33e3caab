"""residual: out = body(x) + shortcut(x), the shortcut the identity when it has no layers.

Backward hands the delta at the block's output to both branches unchanged (the derivative
of a sum) and adds the deltas they hand down: dx = dbody + dshortcut."""

import time
from dataclasses import dataclass

import numpy as np

from convtrain.layers.base import Layer, LayerSpec, kernels


class Residual(Layer):
    compile_s = {"add": 0.3}

    def __init__(self, spec, dtype, rng=None):
        super().__init__(spec, dtype)
        self.body = [child.compute(child, dtype, rng) for child in spec.body]
        self.shortcut = [child.compute(child, dtype, rng) for child in spec.shortcut]
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

    def to_onnx(self, graph, x, rank):
        """Its two branches' nodes and an Add."""
        body = graph.layers(self.body, x, rank)
        shortcut = graph.layers(self.shortcut, x, rank) if self.shortcut else x
        return graph.node("Add", [body, shortcut], self.spec.name)


def _sum(a, b):
    """a + b, a new array (either may be what a layer keeps for its backward pass)."""
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    out = np.empty_like(a)
    kernels("elementwise").add(a.reshape(-1), b.reshape(-1), out.reshape(-1))
    return out


@dataclass(frozen=True)
class ResidualSpec(LayerSpec):
    """output = body(x) + shortcut(x); no shortcut layers: the identity. Its layers' names
    are full names, the block's name first: `res1.conv1`."""
    body: tuple = ()
    shortcut: tuple = ()

    type = "residual"
    compute = Residual
    contains_layers = True
    name_stem = "res"

    @classmethod
    def parse(cls, section, index, name, in_shape, parse_layers):
        """body (required) and shortcut (optional): lists of layers, read by
        parse_layers(key, items) -> specs, whose outputs add."""
        branches = {}
        for key in ("body", "shortcut"):
            items = section.get_raw(key) if key == "body" else section.get_raw(key, [])
            if not isinstance(items, list) or (key == "body" and not items):
                raise section.error(key, f"must be a {'non-empty ' if key == 'body' else ''}"
                                         f"list of layers, each a mapping with `type`")
            branches[key] = parse_layers(key, items)
        section.finish()  # a misspelt `shortcuts:` is named as such, not as a shape mismatch
        body, shortcut = branches["body"], branches["shortcut"]
        body_out = body[-1].out_shape
        short_out = shortcut[-1].out_shape if shortcut else tuple(in_shape)
        if body_out != short_out:
            what = "its shortcut gives" if shortcut else "its input (the identity shortcut) is"
            raise section.error(None, f"residual block '{name}': its body gives "
                                      f"{list(body_out)} but {what} {list(short_out)}; the "
                                      f"two must match to be added (a shortcut of a 1x1 "
                                      f"conv2d with the body's filters and stride makes them "
                                      f"match)")
        return cls(index, name, tuple(in_shape), body_out, body, shortcut)

    def children(self):
        return self.body + self.shortcut

    @property
    def param_count(self):
        return sum(child.param_count for child in self.children())

    def flops(self):
        return sum(child.flops() for child in self.children()) + int(np.prod(self.out_shape))

    def forward_formula(self, s):
        skip = f"shortcut({s.inp(self)})" if self.shortcut else s.inp(self)
        return f"{s.out(self)} = body({s.inp(self)}) + {skip}"

    def backward_formulas(self, s, textbook):
        return None, f"{s.delta_in(self)} = {s.delta_in(self)}.body + {s.delta_in(self)}.shortcut"


TYPES = (ResidualSpec,)
