"""batchnorm: per channel of an image over (N, H, W), per feature of a vector over N,
with PyTorch's semantics. Training normalises with the batch's statistics and moves the
running ones; anything else (validation, eval) uses the running statistics."""

from dataclasses import dataclass, field

import numpy as np

from convtrain.layers.base import Layer, LayerSpec, kernels, planes
from convtrain.layers.shapes import as_array


class BatchNorm(Layer):
    compile_s = {"moments_per_sample": 1.4, "combine_moments_in_order": 0.2,
                 "batchnorm_normalise": 0.5, "backward_sums_per_sample": 1.2,
                 "add_samples_in_order": 0.8, "batchnorm_backward_input": 0.6,
                 "batchnorm_forward_eval": 0.5}

    def __init__(self, spec, dtype, rng=None):
        super().__init__(spec, dtype)
        channels = spec.in_shape[0]

        def given_or(value, fill):
            return (value if value is not None else np.full(channels, fill)).astype(self.dtype)

        gamma, beta = given_or(spec.gamma, 1.0), given_or(spec.beta, 0.0)
        if spec.affine:  # γ and β are the layer's weight and bias, as in PyTorch
            self.params = {"weight": gamma, "bias": beta}
            self.grads = {key: np.zeros_like(value) for key, value in self.params.items()}
        else:
            self.fixed = {"weight": gamma, "bias": beta}
        self.buffers = {"running_mean": given_or(spec.running_mean, 0.0),
                        "running_var": given_or(spec.running_var, 1.0)}

    def _gamma_beta(self):
        values = self.params if self.spec.affine else self.fixed
        return values["weight"], values["bias"]

    def forward(self, x):
        """x (N, *in_shape) -> out, the same shape; in training also moves the running
        statistics: running = (1 - momentum) * running + momentum * batch, with the batch's
        unbiased variance."""
        spec = self.spec
        x3 = planes(x, spec.in_shape[0])
        out = np.empty_like(x3)
        gamma, beta = self._gamma_beta()
        norm = kernels("norm")
        if not self.mode.training:
            norm.batchnorm_forward_eval(x3, gamma, beta, spec.eps,
                                        self.buffers["running_mean"],
                                        self.buffers["running_var"], out)
            return out.reshape(x.shape)
        team = self.mode.team
        count = team.whole(x3.shape[0]) * x3.shape[2]
        # Each sample's moments here; the whole batch's combined in sample order, the same
        # on every process that shares the batch.
        moments = np.empty((x3.shape[0], 2, x3.shape[1]))
        norm.moments_per_sample(x3, moments)
        mean, squares = np.empty(x3.shape[1]), np.empty(x3.shape[1])
        norm.combine_moments_in_order(team.gather_rows(moments), x3.shape[2], mean, squares)
        var = squares / count
        inv_std = 1.0 / np.sqrt(var + spec.eps)
        norm.batchnorm_normalise(x3, gamma, beta, mean, inv_std, out)
        for key, batch in (("running_mean", mean), ("running_var", var * count / (count - 1))):
            running = self.buffers[key]
            running[...] = (1.0 - spec.momentum) * running + spec.momentum * batch
        self.cache = (x3, mean, inv_std, x.shape)
        return out.reshape(x.shape)

    def backward(self, dout, need_dx=True):
        x3, mean, inv_std, shape = self.cache
        dout3 = np.ascontiguousarray(dout).reshape(x3.shape)
        team, gamma, norm = self.mode.team, self._gamma_beta()[0], kernels("norm")
        dx = np.empty_like(x3)
        count = team.whole(x3.shape[0]) * x3.shape[2]
        # Each sample's sums, then the whole batch's in sample order, then dx: two passes
        # over the batch in sample order. One pass a channel at a time, reading each
        # channel's values twice while they were in cache, was slower: a channel's values are
        # N stretches a page or more apart, and memory streams them slower than one long
        # run (ResNet-20 batch 64: 20.2-20.9 against 17.1-17.7 ms of batchnorm backward).
        partial = np.empty((x3.shape[0], 2, x3.shape[1]))
        norm.backward_sums_per_sample(dout3, x3, mean, inv_std, partial)
        sums = _whole_batch_sum(team, partial)
        norm.batchnorm_backward_input(dout3, x3, gamma, mean, inv_std, sums, count, dx)
        if self.spec.affine:
            self.grads["weight"], self.grads["bias"] = (sums[1].astype(self.dtype),
                                                        sums[0].astype(self.dtype))
        return dx.reshape(shape)

    def to_onnx(self, graph, x, rank):
        """A BatchNormalization with the running statistics (eval mode)."""
        spec = self.spec
        gamma, beta = self._gamma_beta()
        inputs = [x] + [graph.weight(f"{spec.name}.{key}", value) for key, value in (
            ("weight", gamma), ("bias", beta), ("running_mean", self.buffers["running_mean"]),
            ("running_var", self.buffers["running_var"]))]
        return graph.node("BatchNormalization", inputs, spec.name, epsilon=float(spec.eps))


def _whole_batch_sum(team, partial):
    """The sum over the whole batch of per-sample partial sums `partial` (N, 2, C), N this
    process's samples: every process's partials, added up in sample order."""
    whole, total = np.ascontiguousarray(team.gather_rows(partial)), np.zeros(partial.shape[1:])
    kernels("ordered_sums").add_samples_in_order(whole, total)
    return total


@dataclass(frozen=True)
class BatchNormSpec(LayerSpec):
    """Per channel of an image (over N, H, W), or per feature of a vector (over N)."""
    momentum: float = 0.1
    eps: float = 1e-5
    affine: bool = True
    gamma: np.ndarray = field(default=None, compare=False, repr=False)
    beta: np.ndarray = field(default=None, compare=False, repr=False)
    running_mean: np.ndarray = field(default=None, compare=False, repr=False)
    running_var: np.ndarray = field(default=None, compare=False, repr=False)

    type = "batchnorm"
    compute = BatchNorm
    name_stem = "bn"
    weight_symbol, bias_symbol = "γ", "β"

    @classmethod
    def parse(cls, section, index, name, in_shape):
        momentum = section.get_float("momentum", 0.1, minimum=0.0, maximum=1.0)
        eps = section.get_float("eps", 1e-5, positive=True)
        affine = section.get_bool("affine", True)
        channels = (in_shape[0],)
        gamma, beta = as_array(section, "gamma", channels), as_array(section, "beta", channels)
        for key, given in (("gamma", gamma), ("beta", beta)):
            if given is not None and not affine:
                raise section.error(key, "given, but the layer has `affine: false`")
        running_mean = as_array(section, "running_mean", channels)
        running_var = as_array(section, "running_var", channels)
        if running_var is not None and np.any(running_var < 0):
            raise section.error("running_var", "has a negative variance")
        return cls(index, name, tuple(in_shape), tuple(in_shape), momentum, eps, affine,
                   gamma, beta, running_mean, running_var)

    def param_shapes(self):
        return {"weight": self.in_shape[:1], "bias": self.in_shape[:1]} if self.affine else {}

    def buffer_shapes(self):
        return {"running_mean": self.in_shape[:1], "running_var": self.in_shape[:1]}

    def flops(self):
        return 4 * int(np.prod(self.in_shape))

    def statistics_from_batch_axis_alone(self):
        """Whether each channel's statistics are over N alone (a vector, or an image of 1x1),
        which a batch of one sample cannot train."""
        return int(np.prod(self.in_shape[1:])) == 1

    def forward_formula(self, s):
        where = "over N, H, W" if len(self.in_shape) == 3 else "over N"
        scale = f"{s.kernel(self)}·" if self.affine else ""
        shift = f" + {s.bias(self)}" if self.affine else ""
        return (f"{s.out(self)} = {scale}x̂{shift}, x̂ = ({s.inp(self)} − μ)/√(σ² + "
                f"{self.eps:g}), μ and σ² of the batch {where} (training)")

    def backward_formulas(self, s, textbook):
        d = s.delta(self)
        scale = s.kernel(self) if self.affine else "1"
        through = (f"{s.delta_in(self)} = {scale}/(M·√(σ² + ε))·(M·{d} − Σ {d} − "
                   f"x̂·Σ({d} ⊙ x̂)), M values a channel: through μ and σ² too")
        return (f"∂L/∂{s.kernel(self)} = Σ {d} ⊙ x̂" if self.affine else None), through


TYPES = (BatchNormSpec,)
