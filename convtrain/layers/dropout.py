"""dropout (inverted): in training each value is kept with probability 1 - rate and scaled
by 1 / (1 - rate), so eval needs no rescaling; outside training it is the identity."""

import zlib
from dataclasses import dataclass

import numpy as np

from convtrain.layers.base import Layer, LayerSpec


class Dropout(Layer):
    def __init__(self, spec, dtype, rng=None):
        super().__init__(spec, dtype)
        self.cache = None

    def mask(self, shape):
        """The kept values' scale factors (0 or 1 / (1 - rate)) for a batch of `shape`: a pure
        function of the seed, the global step and the layer's name, so that thread count,
        --resume and gradient checks all see the same mask for the same step."""
        layer_key = zlib.crc32(self.name.encode())  # stable across processes, unlike hash()
        rng = np.random.default_rng([self.mode.seed, self.mode.step, layer_key])
        keep = rng.random(shape) >= self.spec.rate
        return keep.astype(self.dtype) / self.dtype.type(1.0 - self.spec.rate)

    def forward(self, x):
        if not self.mode.training or self.spec.rate == 0.0:
            self.cache = None
            return x
        # The whole batch's mask, of which this process takes its own samples' rows: so the
        # masks do not depend on how many processes share the batch.
        team = self.mode.team
        self.cache = self.mask((team.whole(x.shape[0]),) + x.shape[1:])[team.own_slice()]
        return x * self.cache

    def backward(self, dout, need_dx=True):
        return dout if self.cache is None else dout * self.cache

    def to_onnx(self, graph, x, rank):
        return x  # the identity outside training


@dataclass(frozen=True)
class DropoutSpec(LayerSpec):
    rate: float = 0.5

    type = "dropout"
    compute = Dropout

    @classmethod
    def parse(cls, section, index, name, in_shape):
        rate = section.get_float("rate", 0.5, minimum=0.0, below=1.0)
        return cls(index, name, tuple(in_shape), tuple(in_shape), rate)

    def forward_formula(self, s):
        return (f"{s.out(self)} = {s.inp(self)} ⊙ m/(1 − {self.rate:g}), m a 0/1 mask drawn "
                f"for this step")

    def backward_formulas(self, s, textbook):
        return None, (f"{s.delta_in(self)} = {s.delta(self)} ⊙ m/(1 − {self.rate:g}), "
                      f"the same mask")


TYPES = (DropoutSpec,)
