"""A stack of layers built from a validated Config: forward, backward, parameters.

Batches are (N, *input). The last layer's output, flattened to (N, K), is the
score matrix the loss reads. After `backward`, `deltas[name]` is the error at
each layer's output (dL/d out) — what convtrain logs and traces.
"""

import time

import numpy as np

from convtrain.layers import Mode, build_layer
from convtrain.model.losses import loss_function


class Network:
    def __init__(self, config, dtype=None, seed=None):
        self.config = config
        self.dtype = np.dtype(dtype or config.dtype)
        rng = np.random.default_rng(config.seed if seed is None else seed)
        self.layers = [build_layer(spec, self.dtype, rng) for spec in config.layers]
        self._all_layers = []

        def visit(layers):
            for layer in layers:
                self._all_layers.append(layer)
                visit(layer.children())

        visit(self.layers)
        # A conv layer's algorithm follows the config's dtype, not the one computed in here:
        # a float64 gradient check of a float32 config checks the float32 run's algorithms.
        for layer in self._all_layers:
            if hasattr(layer, "choose_algorithms"):
                layer.choose_algorithms(config.dtype)
        # Training or not, and the global step: set here, read by batchnorm and dropout.
        self.mode = Mode(config.seed)
        for layer in self._all_layers:
            layer.mode = self.mode
        self.loss_fn = loss_function(config)
        self.deltas = {}

    @property
    def timings(self):
        """{} to have forward/backward record every layer's milliseconds (nested ones too)
        of their last call, None not to."""
        return self.mode.timings

    @timings.setter
    def timings(self, value):
        self.mode.timings = value

    def all_layers(self):
        """Every layer, depth first: a residual block, then its body, then its shortcut."""
        return self._all_layers

    def forward(self, x, training=False):
        """x (N, *input) -> scores (N, K). training: batch statistics and dropout, as in a
        training step, and each layer keeps what backward needs; otherwise running
        statistics, no dropout and nothing kept (validation, eval: a batch of 256 CIFAR
        images would keep 600 MB)."""
        self.mode.training = training
        out = x.astype(self.dtype, copy=False)
        for layer in self.layers:
            started = time.perf_counter()
            out = layer.forward(out)
            self.mode.time(layer, "forward_ms", started)
            if not training:
                _forget(layer)
        return out.reshape(out.shape[0], -1)

    def backward(self, dscores, input_grad=True):
        """dscores (N, K) -> dx (N, *input); fills each layer's grads, and hands each
        layer's delta to mode.keep (self.deltas, the log's hook, as the mode asks).

        input_grad=False lets the first layer skip dL/dx (returns None): training never
        reads it, and for a first conv layer it is as costly as the kernel gradient."""
        delta = dscores.astype(self.dtype, copy=False)
        for layer in reversed(self.layers):
            need_dx = input_grad or layer is not self.layers[0]
            delta = delta.reshape((delta.shape[0],) + layer.spec.out_shape)
            self.mode.keep(self.deltas, layer.name, delta)
            started = time.perf_counter()
            delta = layer.backward(delta, need_dx)
            self.deltas.update(layer.nested_deltas())
            self.mode.time(layer, "backward_ms", started)
            # Freed as backward goes down, so the deltas grow while the caches shrink.
            _forget(layer)
        return delta

    def loss_and_gradients(self, x, labels, input_grad=True):
        """Forward, loss, backward: the one path training and gradient checks share.

        x (B, *input) and labels (B,) are the whole batch. When processes share it
        (mode.team), this one computes its own rows and the scores are put together, so
        that loss, accuracy and the gradients are the whole batch's on every process.

        Returns (loss, scores (B, K), dx of this process's rows); dx is None when
        input_grad is False.
        """
        team = self.mode.team
        self.deltas = {}  # the last step's, freed before this forward keeps its caches
        scores = team.gather_rows(self.forward(team.own_rows(x), training=True))
        loss, dscores, _ = self.loss_fn(scores, labels)
        dx = self.backward(team.own_rows(dscores), input_grad)
        return loss, scores, dx

    def parameters(self):
        """[(layer, key)] for every parameter array, in layer order (depth first)."""
        return [(layer, key) for layer in self.all_layers() for key in layer.params]

    def state(self):
        """{"layer.key": array}: the parameters, then the buffers (running statistics)."""
        state = {f"{layer.name}.{key}": layer.params[key] for layer, key in self.parameters()}
        for layer in self.all_layers():
            state.update({f"{layer.name}.{key}": value for key, value in layer.buffers.items()})
        return state

    def load_state(self, arrays):
        for key, value in self.state().items():
            value[...] = arrays[key]


def _forget(layer):
    """Drop what a layer (and every layer inside it) kept for backward."""
    layer.cache = None
    for child in layer.children():
        _forget(child)
