"""maxpool and avgpool over (size, stride) windows, no padding; windows may overlap;
globalavgpool, the mean of each channel's whole plane."""

import numpy as np

from convtrain.kernels.pool import (
    avgpool_backward,
    avgpool_forward,
    globalavgpool_backward,
    globalavgpool_forward,
    maxpool2x2_forward,
    maxpool_backward,
    maxpool_forward,
)
from convtrain.model.layers.base import Layer


class MaxPool(Layer):
    def __init__(self, spec, dtype, rng=None):
        super().__init__(spec, dtype)

    def forward(self, x):
        """x (N, C, H, W) -> out (N, C, OH, OW); remembers each window's argmax."""
        x = np.ascontiguousarray(x)
        shape = (x.shape[0],) + self.spec.out_shape
        out = np.empty(shape, dtype=self.dtype)
        argmax = np.empty(shape, dtype=np.int32)
        if tuple(self.spec.size) == tuple(self.spec.stride) == (2, 2):
            maxpool2x2_forward(x, out, argmax)
        else:
            maxpool_forward(x, *self.spec.size, *self.spec.stride, out, argmax)
        self.cache = (x.shape, argmax)
        return out

    def backward(self, dout, need_dx=True):
        in_shape, argmax = self.cache
        dx = np.empty(in_shape, dtype=self.dtype)
        maxpool_backward(np.ascontiguousarray(dout), argmax,
                         dx.reshape(in_shape[0], in_shape[1], -1))
        return dx

    def kink_state(self):
        return self.cache[1]


class AvgPool(Layer):
    def __init__(self, spec, dtype, rng=None):
        super().__init__(spec, dtype)

    def forward(self, x):
        """x (N, C, H, W) -> out (N, C, OH, OW)."""
        x = np.ascontiguousarray(x)
        out = np.empty((x.shape[0],) + self.spec.out_shape, dtype=self.dtype)
        avgpool_forward(x, *self.spec.size, *self.spec.stride, out)
        self.cache = x.shape
        return out

    def backward(self, dout, need_dx=True):
        dx = np.empty(self.cache, dtype=self.dtype)
        avgpool_backward(np.ascontiguousarray(dout), *self.spec.size, *self.spec.stride, dx)
        return dx


class GlobalAvgPool(Layer):
    def __init__(self, spec, dtype, rng=None):
        super().__init__(spec, dtype)

    def forward(self, x):
        """x (N, C, H, W) -> out (N, C)."""
        x = np.ascontiguousarray(x)
        out = np.empty(x.shape[:2], dtype=self.dtype)
        globalavgpool_forward(x.reshape(x.shape[0], x.shape[1], -1), out)
        self.cache = x.shape
        return out

    def backward(self, dout, need_dx=True):
        dx = np.empty(self.cache, dtype=self.dtype)
        globalavgpool_backward(np.ascontiguousarray(dout).reshape(dx.shape[:2]),
                               dx.reshape(dx.shape[0], dx.shape[1], -1))
        return dx
