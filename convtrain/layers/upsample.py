"""upsample: an image made `scale` times larger, by whole factors, PyTorch's nn.Upsample
(scale_factor) with mode nearest, or bilinear with align_corners false (the kernels in
convtrain.kernels.resample say how each output reads its inputs)."""

from dataclasses import dataclass

import numpy as np

from convtrain.layers.base import Layer, LayerSpec, kernels
from convtrain.layers.shapes import require_image

MODES = ("nearest", "bilinear")


def bilinear_taps(size, scale):
    """(first (size·scale,) int64, second, weight of the second (float64)) for each output
    row of an axis of `size` inputs upsampled by `scale`: PyTorch's source position
    (i + 0.5)/scale − 0.5, 0 where negative, between rows first and second."""
    source = np.maximum((np.arange(size * scale) + 0.5) / scale - 0.5, 0.0)
    first = source.astype(np.int64)
    second = np.minimum(first + 1, size - 1)
    return first, second, source - first


class Upsample(Layer):
    compile_s = {"nearest_forward": 0.5, "nearest_backward": 0.5, "bilinear_forward": 0.7,
                 "bilinear_backward": 0.9}

    def __init__(self, spec, dtype, rng=None):
        super().__init__(spec, dtype)
        _, height, width = spec.in_shape
        self.taps = bilinear_taps(height, spec.scale[0]) + bilinear_taps(width, spec.scale[1])

    def forward(self, x):
        """x (N, C, H, W) -> out (N, C, H·SH, W·SW)."""
        x = np.ascontiguousarray(x)
        out = np.empty((x.shape[0],) + self.spec.out_shape, dtype=self.dtype)
        if self.spec.mode == "nearest":
            kernels("resample").nearest_forward(x, *self.spec.scale, out)
        else:
            kernels("resample").bilinear_forward(x, *self.taps, out)
        return out

    def backward(self, dout, need_dx=True):
        dout = np.ascontiguousarray(dout)
        dx = np.empty((dout.shape[0],) + self.spec.in_shape, dtype=self.dtype)
        if self.spec.mode == "nearest":
            kernels("resample").nearest_backward(dout, *self.spec.scale, dx)
        else:
            kernels("resample").bilinear_backward(dout, *self.taps, dx)
        return dx

    def to_onnx(self, graph, x, rank):
        """A Resize by scales [1, 1, SH, SW]: nearest as PyTorch exports it (asymmetric
        coordinates, floor), bilinear as linear with pytorch_half_pixel coordinates."""
        spec = self.spec
        scales = graph.weight(f"{spec.name}.scales", np.array([1.0, 1.0, *spec.scale]))
        if spec.mode == "nearest":
            how = {"mode": "nearest", "coordinate_transformation_mode": "asymmetric",
                   "nearest_mode": "floor"}
        else:
            how = {"mode": "linear", "coordinate_transformation_mode": "pytorch_half_pixel"}
        return graph.node("Resize", [x, "", scales], spec.name, **how)


@dataclass(frozen=True)
class UpsampleSpec(LayerSpec):
    scale: tuple = (2, 2)
    mode: str = "nearest"

    type = "upsample"
    compute = Upsample

    @classmethod
    def parse(cls, section, index, name, in_shape):
        require_image(section, in_shape, cls.type)
        scale = section.get_pair("scale", 2)
        mode = section.get_choice("mode", MODES, "nearest")
        channels, height, width = in_shape
        return cls(index, name, tuple(in_shape), (channels, height * scale[0],
                                                  width * scale[1]), scale, mode)

    def flops(self):
        return int(np.prod(self.out_shape)) * (0 if self.mode == "nearest" else 8)

    def forward_formula(self, s):
        sh, sw = self.scale
        if self.mode == "nearest":
            return f"{s.out(self)}[c, i, j] = {s.inp(self)}[c, ⌊i/{sh}⌋, ⌊j/{sw}⌋]"
        return (f"{s.out(self)}[c, i, j] = bilinear in {s.inp(self)}[c] at ((i + ½)/{sh} − ½, "
                f"(j + ½)/{sw} − ½), each clamped to the image (align_corners false)")

    def backward_formulas(self, s, textbook):
        if self.mode == "nearest":
            return None, (f"{s.delta_in(self)}[c, p, q] = Σ of {s.delta(self)} over the "
                          f"{self.scale[0]}x{self.scale[1]} block that copied it")
        return None, (f"{s.delta_in(self)}: each entry of {s.delta(self)} added to the four "
                      f"inputs it read, times their bilinear weights")


TYPES = (UpsampleSpec,)
