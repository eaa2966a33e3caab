"""maxpool and avgpool over (size, stride) windows, with PyTorch's padding (max pools pad
with -inf, average pools with zeros, counted or not: count_include_pad) and ceil_mode;
windows may overlap; globalavgpool, the mean of each channel's whole plane."""

from dataclasses import dataclass

import numpy as np

from convtrain.layers.base import Layer, LayerSpec, kernels
from convtrain.layers.shapes import require_image


class MaxPool(Layer):
    compile_s = {"maxpool_forward": 0.8, "maxpool2x2_forward": 0.6, "maxpool_backward": 0.6,
                 "maxpool_padded_forward": 0.8}

    def forward(self, x):
        """x (N, C, H, W) -> out (N, C, OH, OW); remembers each window's argmax."""
        x = np.ascontiguousarray(x)
        shape = (x.shape[0],) + self.spec.out_shape
        out = np.empty(shape, dtype=self.dtype)
        argmax = np.empty(shape, dtype=np.int32)
        pool, spec = kernels("pool"), self.spec
        if spec.padded():
            pool.maxpool_padded_forward(x, *spec.size, *spec.stride, *spec.padding, out, argmax)
        elif tuple(spec.size) == tuple(spec.stride) == (2, 2):
            pool.maxpool2x2_forward(x, out, argmax)
        else:
            pool.maxpool_forward(x, *spec.size, *spec.stride, out, argmax)
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
        return graph.node("MaxPool", [x], self.spec.name, **self.spec.onnx_window())


class AvgPool(Layer):
    compile_s = {"avgpool_forward": 0.8, "avgpool_backward": 0.6,
                 "avgpool_padded_forward": 0.8, "avgpool_padded_backward": 0.7}

    def forward(self, x):
        """x (N, C, H, W) -> out (N, C, OH, OW)."""
        x = np.ascontiguousarray(x)
        spec, pool = self.spec, kernels("pool")
        out = np.empty((x.shape[0],) + spec.out_shape, dtype=self.dtype)
        if spec.padded():
            pool.avgpool_padded_forward(x, *spec.size, *spec.stride, *spec.padding,
                                        spec.count_include_pad, out)
        else:
            pool.avgpool_forward(x, *spec.size, *spec.stride, out)
        self.cache = x.shape
        return out

    def backward(self, dout, need_dx=True):
        spec, pool = self.spec, kernels("pool")
        dx = np.empty(self.cache, dtype=self.dtype)
        dout = np.ascontiguousarray(dout)
        if spec.padded():
            pool.avgpool_padded_backward(dout, *spec.size, *spec.stride, *spec.padding,
                                         spec.count_include_pad, dx)
        else:
            pool.avgpool_backward(dout, *spec.size, *spec.stride, dx)
        return dx

    def to_onnx(self, graph, x, rank):
        """An AveragePool; where a ceil-mode window runs past the padding and padding counts,
        times the ratio of ONNX's divisor (the whole window) to PyTorch's (its part in the
        padded input)."""
        spec = self.spec
        pooled = graph.node("AveragePool", [x], spec.name,
                            count_include_pad=int(spec.count_include_pad), **spec.onnx_window())
        whole = spec.size[0] * spec.size[1]
        if not spec.count_include_pad or np.all(spec.divisors() == whole):
            return pooled
        ratio = graph.weight(f"{spec.name}.divisor_ratio", whole / spec.divisors())
        return graph.node("Mul", [pooled, ratio], spec.name + ".ceil_divisor")


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
    padding: tuple = (0, 0)  # rows at the top and bottom, columns at the left and right
    ceil_mode: bool = False
    count_include_pad: bool = True  # avgpool's

    @classmethod
    def parse(cls, section, index, name, in_shape):
        require_image(section, in_shape, cls.type)
        size = section.get_pair("size", (2, 2))
        stride = section.get_pair("stride", size)
        padding = section.get_pair("padding", 0, minimum=0)
        ceil_mode = section.get_bool("ceil_mode", False)
        count_include_pad = (section.get_bool("count_include_pad", True)
                             if cls.type == "avgpool" else True)
        out_size = []
        for axis, (extent, window, step, pad) in enumerate(zip(in_shape[1:], size, stride,
                                                               padding)):
            if 2 * pad > window:
                raise section.error("padding", f"{pad} is more than half the window "
                                               f"({window}): a window could hold padding only")
            if window > extent + 2 * pad:
                padded = (f" padded to {in_shape[1] + 2 * padding[0]}x"
                          f"{in_shape[2] + 2 * padding[1]}" if any(padding) else "")
                raise section.error("size", f"window {size[0]}x{size[1]} is larger than its "
                                            f"input {in_shape[1]}x{in_shape[2]}{padded} "
                                            f"(layer {name}, {cls.type})")
            out_size.append(_pooled_size(extent, window, step, pad, ceil_mode))
        return cls(index, name, tuple(in_shape), (in_shape[0], *out_size), size, stride,
                   padding, ceil_mode, count_include_pad)

    def padded(self):
        """Whether a window can reach past the input (the padded kernels' case)."""
        if any(self.padding):
            return True
        return any((out - 1) * step + window > extent for out, step, window, extent
                   in zip(self.out_shape[1:], self.stride, self.size, self.in_shape[1:]))

    def onnx_window(self):
        """ONNX's window attributes: the padding at the end written out, exactly as far as
        the last window reaches, and no ceil_mode (ONNX Runtime's ceil mode keeps a last
        window that starts in the padding, which PyTorch's drops)."""
        ends = [max(0, (out - 1) * step + window - extent - pad) for out, step, window, extent,
                pad in zip(self.out_shape[1:], self.stride, self.size, self.in_shape[1:],
                           self.padding)]
        return {"kernel_shape": list(self.size), "strides": list(self.stride),
                "pads": list(self.padding) + ends}

    def divisors(self):
        """(OH, OW): each window's size cut to the input and its padding (PyTorch's
        count_include_pad divisor)."""
        spans = []
        for out, step, window, extent, pad in zip(self.out_shape[1:], self.stride, self.size,
                                                  self.in_shape[1:], self.padding):
            starts = np.arange(out) * step - pad
            spans.append(np.minimum(starts + window, extent + pad) - starts)
        return np.outer(*spans)

    def flops(self):
        return int(np.prod(self.out_shape)) * self.size[0] * self.size[1]

    def forward_formula(self, s):
        size, stride = self.size, self.stride
        return (f"{s.out(self)} = {self.type}{size[0]}x{size[1]}/{stride[0]}({s.inp(self)})"
                f"{self._window_note()}")

    def _window_note(self):
        notes = []
        if any(self.padding):
            fill = "−∞" if self.type == "maxpool" else "0"
            notes.append(f"padding {tuple(self.padding)} of {fill}")
        if self.ceil_mode:
            notes.append("ceil mode: a last, partial window")
        if self.type == "avgpool" and not self.count_include_pad and self.padded():
            notes.append("a window's mean over its input entries only")
        return f" ({', '.join(notes)})" if notes else ""


def _pooled_size(extent, window, step, pad, ceil_mode):
    """PyTorch's output size: with ceil_mode a last window that starts inside the input or
    its leading padding counts, even where it runs past the end."""
    span = extent + 2 * pad - window
    out = (-(-span // step) if ceil_mode else span // step) + 1
    if ceil_mode and (out - 1) * step >= extent + pad:
        out -= 1
    return out


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
        if self.padded():
            counted = ("its window's size within the padded input" if self.count_include_pad
                       else "the number of input entries in its window")
            return None, (f"{s.delta_in(self)}: each entry of {s.delta(self)}, over "
                          f"{counted}, added to every input entry of its window")
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
