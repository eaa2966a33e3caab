"""flatten: (N, C, H, W) -> (N, C*H*W), a reshape both ways."""

from convtrain.model.layers.base import Layer


class Flatten(Layer):
    def __init__(self, spec, dtype, rng=None):
        super().__init__(spec, dtype)

    def forward(self, x):
        self.cache = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dout, need_dx=True):
        return dout.reshape(self.cache)
