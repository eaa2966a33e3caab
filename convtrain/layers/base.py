"""What every layer type offers, in its one module under convtrain/layers/.

A type is two classes side by side. Its **spec** (a frozen LayerSpec) is the config's view:
`parse` reads and checks the YAML keys, fills defaults and infers the output shape; it
knows the parameter shapes, the FLOPs, the names `convtrain trace` gives the layer's
values and the formulas it prints. Its **compute** class (a Layer, `spec.compute`) runs it:

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
    to_onnx(graph, x, rank)
                    the ONNX nodes computing its eval-mode forward (convtrain.use.onnx_export)
    compile_s       {kernel: seconds to compile on an empty cache}, for every kernel it
                    calls (convtrain.run.compiling balances its processes by them)

Specs import neither Numba nor the kernels, so a config is checked in a fraction of a second;
compute classes reach the kernels through `kernels()`, which imports them on first use.
"""

import importlib
import time
from dataclasses import dataclass

import numpy as np

from convtrain.runtime import prepare_environment
from convtrain.team import Solo


@dataclass(frozen=True)
class LayerSpec:
    index: int
    name: str
    in_shape: tuple
    out_shape: tuple

    compute = None          # the Layer subclass that runs this type
    paths = ()              # a block's lists of layers (convtrain.layers.branches)
    contains_layers = False  # parse takes a fifth argument: a parser of nested layer lists
    name_stem = None        # of generated names (conv3, bn4); None: the type
    weight_symbol = "W"     # trace's names: W3, b3
    bias_symbol = "b"

    def param_shapes(self):
        return {}

    def flops(self):
        """Forward floating-point operations per sample (a multiply-add is 2)."""
        return 0

    def scratch_per_sample(self):
        """Values of working memory the kernels need per sample beyond input and output."""
        return 0

    def buffer_shapes(self):
        """State that is not trained but kept in checkpoints (batchnorm's running statistics)."""
        return {}

    def children(self):
        """The layers inside this one (a block's, path after path), in order."""
        return tuple(child for path in self.paths for child in path)

    def forward_formula(self, s):
        """The forward rule as `convtrain trace` prints it; s: views.trace_formulas.Symbols."""
        raise NotImplementedError(f"layer type {self.type} has no forward formula")

    def backward_formulas(self, s, textbook):
        """(kernel gradient or None, input delta): the backward rules trace prints."""
        raise NotImplementedError(f"layer type {self.type} has no backward formulas")

    @property
    def param_count(self):
        return int(sum(np.prod(s) for s in self.param_shapes().values()))


def walk(specs):
    """Every layer spec, depth first: a block, then its paths' layers, path after path."""
    for spec, _ in walk_with_depth(specs):
        yield spec


def walk_with_depth(specs, depth=0):
    """(spec, nesting depth) of every layer, in walk's order; top-level layers are depth 0."""
    for spec in specs:
        yield spec, depth
        yield from walk_with_depth(spec.children(), depth + 1)


_KERNEL_MODULES = {}


def kernels(name):
    """The module convtrain.kernels.<name>, imported (and Numba with it) at its first use,
    after the thread and cache defaults of convtrain.runtime are set. Compute code looks a
    kernel up here at each call, so that convtrain.run.compiling can stand in for it."""
    module = _KERNEL_MODULES.get(name)
    if module is None:
        if not _KERNEL_MODULES:
            prepare_environment()
        module = _KERNEL_MODULES[name] = importlib.import_module(f"convtrain.kernels.{name}")
    return module


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
    compile_s = {}

    def __init__(self, spec, dtype, rng=None):
        self.spec = spec
        self.name = spec.name
        self.dtype = np.dtype(dtype)
        self.params = {}
        self.grads = {}
        self.buffers = {}  # state kept in checkpoints but not trained (running statistics)
        self.mode = Mode()  # the network gives all its layers its own
        self.paths = []  # a block's lists of layers (convtrain.layers.branches)

    def children(self):
        """The layers inside this one (a block's, path after path), in order."""
        return [child for path in self.paths for child in path]

    def nested_deltas(self):
        """{full name: delta} of the layers inside this one, after backward (once)."""
        return {}

    def forward(self, x):
        raise NotImplementedError

    def backward(self, dout, need_dx=True):
        raise NotImplementedError

    def kink_state(self):
        return None

    def to_onnx(self, graph, x, rank):
        raise NotImplementedError(f"no ONNX form for layer type {self.spec.type}")


def planes(array, channels):
    """array (N, *shape) as (N, channels, L), contiguous: a sample's channels (an image's C,
    a vector's features) each a run of L values, as the per-channel kernels take them."""
    return np.ascontiguousarray(array).reshape(array.shape[0], channels, -1)


INITS = ("he_uniform", "he_normal", "glorot_uniform", "zeros")


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
