"""dropout (inverted): in training each value is kept with probability 1 - rate and scaled
by 1 / (1 - rate), so eval needs no rescaling; outside training it is the identity."""

import zlib

import numpy as np

from convtrain.model.layers.base import Layer


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
