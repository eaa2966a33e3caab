"""maxpool and avgpool over (size, stride) windows, no padding; windows may overlap;
globalavgpool, the mean of each channel's whole plane."""

from dataclasses import dataclass

import numpy as np

from convtrain.layers.base import Layer, LayerSpec, kernels
from convtrain.layers.shapes import require_image, window


class MaxPool(Layer):
    compile_s = {"maxpool_forward": 0.8, "maxpool2x2_forward": 0.6, "maxpool_backward": 0.6}

    def forward(self, x):
        """x (N, C, H, W) -> out (N, C, OH, OW); remembers each window's argmax."""
        x = np.ascontiguousarray(x)
        shape = (x.shape[0],) + self.spec.out_shape
        out = np.empty(shape, dtype=self.dtype)
        argmax = np.empty(shape, dtype=np.int32)
        pool = kernels("pool")
        if tuple(self.spec.size) == tuple(self.spec.stride) == (2, 2):
            pool.maxpool2x2_forward(x, out, argmax)
        else:
            pool.maxpool_forward(x, *self.spec.size, *self.spec.stride, out, argmax)
        self.cache = (x.shape, argmax)
        return out

    def backward(self, dout, need_dx=True):
        in_shape, argmax = self.cache
        dx = np.empty(in_shape, dtype=self.dtype)
        kernels("pool").maxpool_backward(np.ascontiguousarray(dout), argmax,
                                         dx.reshape(in_shape[0], in_shape[1], -1))
        return dx

    def kink_state(self):
        return self.cache[1]

    def to_onnx(self, graph, x, rank):
        return graph.node("MaxPool", [x], self.spec.name, kernel_shape=list(self.spec.size),
                          strides=list(self.spec.stride))


class AvgPool(Layer):
    compile_s = {"avgpool_forward": 0.8, "avgpool_backward": 0.6}

    def forward(self, x):
        """x (N, C, H, W) -> out (N, C, OH, OW)."""
        x = np.ascontiguousarray(x)
        out = np.empty((x.shape[0],) + self.spec.out_shape, dtype=self.dtype)
        kernels("pool").avgpool_forward(x, *self.spec.size, *self.spec.stride, out)
        self.cache = x.shape
        return out

    def backward(self, dout, need_dx=True):
        dx = np.empty(self.cache, dtype=self.dtype)
        kernels("pool").avgpool_backward(np.ascontiguousarray(dout), *self.spec.size,
                                         *self.spec.stride, dx)
        return dx

    def to_onnx(self, graph, x, rank):
        return graph.node("AveragePool", [x], self.spec.name,
                          kernel_shape=list(self.spec.size), strides=list(self.spec.stride))


class GlobalAvgPool(Layer):
    compile_s = {"globalavgpool_forward": 0.5, "globalavgpool_backward": 0.35}

    def forward(self, x):
        """x (N, C, H, W) -> out (N, C)."""
        x = np.ascontiguousarray(x)
        out = np.empty(x.shape[:2], dtype=self.dtype)
        kernels("pool").globalavgpool_forward(x.reshape(x.shape[0], x.shape[1], -1), out)
        self.cache = x.shape
        return out

    def backward(self, dout, need_dx=True):
        dx = np.empty(self.cache, dtype=self.dtype)
        kernels("pool").globalavgpool_backward(np.ascontiguousarray(dout).reshape(dx.shape[:2]),
                                               dx.reshape(dx.shape[0], dx.shape[1], -1))
        return dx

    def to_onnx(self, graph, x, rank):
        """A GlobalAveragePool, whose (N, C, 1, 1) is flattened to this layer's (N, C)."""
        pooled = graph.node("GlobalAveragePool", [x], self.spec.name)
        return graph.node("Flatten", [pooled], self.spec.name + ".flatten", axis=1)


@dataclass(frozen=True)
class PoolSpec(LayerSpec):
    size: tuple = (2, 2)
    stride: tuple = (2, 2)

    @classmethod
    def parse(cls, section, index, name, in_shape):
        require_image(section, in_shape, cls.type)
        size = section.get_pair("size", (2, 2))
        stride = section.get_pair("stride", size)
        _, (out_h, out_w) = window(section, name, in_shape, size, stride, (0, 0), "window")
        return cls(index, name, tuple(in_shape), (in_shape[0], out_h, out_w), size, stride)

    def flops(self):
        return int(np.prod(self.out_shape)) * self.size[0] * self.size[1]

    def forward_formula(self, s):
        size, stride = self.size, self.stride
        return f"{s.out(self)} = {self.type}{size[0]}x{size[1]}/{stride[0]}({s.inp(self)})"


class MaxPoolSpec(PoolSpec):
    type = "maxpool"
    compute = MaxPool

    def backward_formulas(self, s, textbook):
        # "added": where windows overlap (stride < size) an entry collects several
        return None, (f"{s.delta_in(self)}: each entry of {s.delta(self)} added at its "
                      f"window's maximum")


class AvgPoolSpec(PoolSpec):
    type = "avgpool"
    compute = AvgPool

    def backward_formulas(self, s, textbook):
        return None, (f"{s.delta_in(self)}: each entry of {s.delta(self)}/"
                      f"({self.size[0]}·{self.size[1]}) added to every entry of its window")


@dataclass(frozen=True)
class GlobalAvgPoolSpec(LayerSpec):
    type = "globalavgpool"
    compute = GlobalAvgPool
    name_stem = "gap"

    @classmethod
    def parse(cls, section, index, name, in_shape):
        require_image(section, in_shape, cls.type)
        return cls(index, name, tuple(in_shape), (in_shape[0],))

    def flops(self):
        return int(np.prod(self.in_shape))

    def forward_formula(self, s):
        return f"{s.out(self)} = mean of {s.inp(self)} over H, W"

    def backward_formulas(self, s, textbook):
        return None, f"{s.delta_in(self)} = {s.delta(self)}/(H·W) over each plane"


TYPES = (MaxPoolSpec, AvgPoolSpec, GlobalAvgPoolSpec)
