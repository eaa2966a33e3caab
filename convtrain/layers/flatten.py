"""flatten: (N, C, H, W) -> (N, C*H*W), a reshape both ways."""

from dataclasses import dataclass

import numpy as np

from convtrain.layers.base import Layer, LayerSpec


class Flatten(Layer):
    def forward(self, x):
        self.cache = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dout, need_dx=True):
        return dout.reshape(self.cache)

    def to_onnx(self, graph, x, rank):
        return graph.node("Flatten", [x], self.spec.name, axis=1)


@dataclass(frozen=True)
class FlattenSpec(LayerSpec):
    type = "flatten"
    compute = Flatten

    @classmethod
    def parse(cls, section, index, name, in_shape):
        return cls(index, name, tuple(in_shape), (int(np.prod(in_shape)),))

    def forward_formula(self, s):
        return f"{s.out(self)} = flatten({s.inp(self)})"

    def backward_formulas(self, s, textbook):
        return None, f"{s.delta_in(self)} = reshape({s.delta(self)})"


TYPES = (FlattenSpec,)
