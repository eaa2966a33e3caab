"""What every layer offers the network. Batches carry a leading N axis.

    forward(x)      x (N, *in_shape) -> out (N, *out_shape); keeps what backward needs
    backward(dout, need_dx=True)
                    dout (N, *out_shape) -> dx (N, *in_shape); fills self.grads. With
                    need_dx=False (the first layer, in training) a layer may skip dx and
                    return None: nobody reads the gradient of the input images
    params / grads  dicts with the same keys ("weight", "bias"), arrays of the same shapes
    buffers         state that is not trained but saved (batchnorm's running statistics)
    mode            the network's Mode: training or not, the global step (dropout), the
                    processes sharing the batch (mode.team)
    kink_state()    the discrete choices the last forward made (ReLU signs, max-pool
                    winners) or None: a gradient check reports a finite difference whose
                    perturbation changed them as a kink, not as a wrong gradient
"""

import time

import numpy as np

from convtrain.team import Solo


class Mode:
    """What the network is doing, shared by all its layers: a training step (batch
    statistics, dropout on) or not; and the seed and global step that dropout's masks
    are drawn from."""

    def __init__(self, seed=0):
        self.training = False
        # Whether backward keeps every layer's delta (trace, gradient checks, diagnoses),
        # or frees each once the layer below has used it (ResNet-20, batch 128: 290 MB);
        # and a function it hands each delta to, (name, delta) -> None, or None.
        self.keep_deltas = True
        self.delta_hook = None
        self.step = 0
        self.seed = seed
        # {layer name: {"forward_ms", "backward_ms"}} of the last pass, or None: not timed.
        self.timings = None
        # The processes sharing each batch (convtrain.team): batchnorm's statistics, dropout's
        # masks and every gradient summed over the batch are the whole batch's.
        self.team = Solo()

    def keep(self, deltas, name, delta):
        """Backward's delta at layer `name`'s output: into deltas and the hook, as asked."""
        if self.keep_deltas:
            deltas[name] = delta
        if self.delta_hook is not None:
            self.delta_hook(name, delta)

    def time(self, layer, key, started):
        """Record the milliseconds since `started` as the layer's forward_ms/backward_ms."""
        if self.timings is not None:
            self.timings.setdefault(layer.name, {})[key] = 1e3 * (time.perf_counter() - started)


class Layer:
    def __init__(self, spec, dtype):
        self.spec = spec
        self.name = spec.name
        self.dtype = np.dtype(dtype)
        self.params = {}
        self.grads = {}
        self.buffers = {}  # state kept in checkpoints but not trained (running statistics)
        self.mode = Mode()  # the network gives all its layers its own

    def children(self):
        """The layers inside this one (a residual block's), in order."""
        return []

    def nested_deltas(self):
        """{full name: delta} of the layers inside this one, after backward (once)."""
        return {}

    def forward(self, x):
        raise NotImplementedError

    def backward(self, dout, need_dx=True):
        raise NotImplementedError

    def kink_state(self):
        return None


def initial_weights(spec, shape, fan_in, fan_out, rng):
    """Draw weights by `spec.init`, or take the explicit `weights:` of the spec."""
    if spec.weights is not None:
        return spec.weights.copy()
    if spec.init == "zeros":
        return np.zeros(shape)
    if spec.init == "he_normal":
        return rng.normal(0.0, np.sqrt(2.0 / fan_in), size=shape)
    if spec.init == "glorot_uniform":
        limit = np.sqrt(6.0 / (fan_in + fan_out))
    else:
        limit = np.sqrt(6.0 / fan_in)
    return rng.uniform(-limit, limit, size=shape)


def initial_biases(spec, units):
    return spec.biases.copy() if spec.biases is not None else np.zeros(units)
