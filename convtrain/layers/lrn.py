"""lrn: local response normalisation across channels (AlexNet, ZFNet, Inception v1), as
PyTorch's LocalResponseNorm and ONNX's LRN: out = x · (k + alpha/size · Σ x² over `size`
neighbouring channels)^(-beta). Images or vectors (their features as channels)."""

from dataclasses import dataclass

import numpy as np

from convtrain.layers.base import Layer, LayerSpec, kernels, planes


class Lrn(Layer):
    compile_s = {"lrn_forward": 0.5, "lrn_backward": 0.6}

    def forward(self, x):
        spec = self.spec
        x3 = planes(x, spec.in_shape[0])
        out, scale = np.empty_like(x3), np.empty_like(x3)
        kernels("lrn").lrn_forward(x3, spec.size, spec.alpha, spec.beta, spec.k, out, scale)
        self.cache = (x3, scale)
        return out.reshape(x.shape)

    def backward(self, dout, need_dx=True):
        spec = self.spec
        x3, scale = self.cache
        dx = np.empty_like(x3)
        kernels("lrn").lrn_backward(x3, planes(dout, spec.in_shape[0]), scale, spec.size,
                                    spec.alpha, spec.beta, dx)
        return dx.reshape(dout.shape)

    def to_onnx(self, graph, x, rank):
        spec = self.spec
        if rank == 2:  # ONNX Runtime's LRN takes (N, C, H, W) only: a vector as (N, C, 1, 1)
            shaped = graph.weight(f"{spec.name}.shape", np.array([0, -1, 1, 1],
                                                                 dtype=np.int64))
            x = graph.node("Reshape", [x, shaped], spec.name + ".as_image")
        out = graph.node("LRN", [x], spec.name, size=spec.size, alpha=spec.alpha,
                         beta=spec.beta, bias=spec.k)
        if rank == 2:
            flat = graph.weight(f"{spec.name}.flat", np.array([0, -1], dtype=np.int64))
            out = graph.node("Reshape", [out, flat], spec.name + ".as_vector")
        return out


@dataclass(frozen=True)
class LrnSpec(LayerSpec):
    size: int = 5
    alpha: float = 1e-4
    beta: float = 0.75
    k: float = 1.0

    type = "lrn"
    compute = Lrn

    @classmethod
    def parse(cls, section, index, name, in_shape):
        size = section.get_int("size", minimum=1)
        if size % 2 == 0:
            raise section.error("size", f"{size} is even: PyTorch and ONNX place an even "
                                        f"window differently, so convtrain takes odd sizes "
                                        f"only")
        alpha = section.get_float("alpha", 1e-4, minimum=0.0)
        beta = section.get_float("beta", 0.75, minimum=0.0)
        k = section.get_float("k", 1.0, positive=True)
        return cls(index, name, tuple(in_shape), tuple(in_shape), size, alpha, beta, k)

    def flops(self):
        return (self.size * 2 + 4) * int(np.prod(self.in_shape))

    def forward_formula(self, s):
        i, half = s.inp(self), (self.size - 1) // 2
        return (f"{s.out(self)} = {i} · S^(−{self.beta:g}), S_c = {self.k:g} + "
                f"{self.alpha:g}/{self.size} · Σ {i}_c'² over channels "
                f"c' = c−{half}..c+{half}")

    def backward_formulas(self, s, textbook):
        i, d = s.inp(self), s.delta(self)
        return None, (f"{s.delta_in(self)}_j = {d}_j·S_j^(−{self.beta:g}) − "
                      f"2·{self.alpha:g}·{self.beta:g}/{self.size} · {i}_j · Σ over the c "
                      f"whose window holds j of {d}_c·{i}_c·S_c^(−{self.beta:g}−1)")


TYPES = (LrnSpec,)
