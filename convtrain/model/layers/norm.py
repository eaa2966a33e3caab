"""batchnorm: per channel of an image over (N, H, W), per feature of a vector over N,
with PyTorch's semantics. Training normalises with the batch's statistics and moves the
running ones; anything else (validation, eval) uses the running statistics."""

import numpy as np

from convtrain.kernels.norm import (
    add_samples_up,
    backward_sums_per_sample,
    batchnorm_backward_input,
    batchnorm_forward_eval,
    batchnorm_normalise,
    combine_moments_in_order,
    moments_per_sample,
)
from convtrain.model.layers.base import Layer


class BatchNorm(Layer):
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
        x3 = np.ascontiguousarray(x).reshape(x.shape[0], spec.in_shape[0], -1)
        out = np.empty_like(x3)
        gamma, beta = self._gamma_beta()
        if not self.mode.training:
            batchnorm_forward_eval(x3, gamma, beta, spec.eps, self.buffers["running_mean"],
                                   self.buffers["running_var"], out)
            return out.reshape(x.shape)
        team = self.mode.team
        count = team.whole(x3.shape[0]) * x3.shape[2]
        # Each sample's moments here; the whole batch's combined in sample order, the same
        # on every process that shares the batch.
        moments = np.empty((x3.shape[0], 2, x3.shape[1]))
        moments_per_sample(x3, moments)
        mean, squares = np.empty(x3.shape[1]), np.empty(x3.shape[1])
        combine_moments_in_order(team.gather_rows(moments), x3.shape[2], mean, squares)
        var = squares / count
        inv_std = 1.0 / np.sqrt(var + spec.eps)
        batchnorm_normalise(x3, gamma, beta, mean, inv_std, out)
        for key, batch in (("running_mean", mean), ("running_var", var * count / (count - 1))):
            running = self.buffers[key]
            running[...] = (1.0 - spec.momentum) * running + spec.momentum * batch
        self.cache = (x3, mean, inv_std, x.shape)
        return out.reshape(x.shape)

    def backward(self, dout, need_dx=True):
        x3, mean, inv_std, shape = self.cache
        dout3 = np.ascontiguousarray(dout).reshape(x3.shape)
        team, gamma = self.mode.team, self._gamma_beta()[0]
        dx = np.empty_like(x3)
        count = team.whole(x3.shape[0]) * x3.shape[2]
        # Each sample's sums, then the whole batch's in sample order, then dx: two passes
        # over the batch in sample order. One pass a channel at a time, reading each
        # channel's values twice while they were in cache, was slower: a channel's values are
        # N stretches a page or more apart, and memory streams them slower than one long
        # run (ResNet-20 batch 64: 20.2-20.9 against 17.1-17.7 ms of batchnorm backward).
        partial = np.empty((x3.shape[0], 2, x3.shape[1]))
        backward_sums_per_sample(dout3, x3, mean, inv_std, partial)
        sums = _whole_batch_sum(team, partial)
        batchnorm_backward_input(dout3, x3, gamma, mean, inv_std, sums, count, dx)
        if self.spec.affine:
            self.grads["weight"], self.grads["bias"] = (sums[1].astype(self.dtype),
                                                        sums[0].astype(self.dtype))
        return dx.reshape(shape)


def _whole_batch_sum(team, partial):
    """The sum over the whole batch of per-sample partial sums `partial` (N, ...), N this
    process's samples: every process's partials, added up in sample order."""
    whole = team.gather_rows(partial)
    total = np.empty(partial.shape[1:])
    add_samples_up(whole.reshape(whole.shape[0], -1), total.reshape(-1))
    return total
