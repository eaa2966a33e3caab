"""Every layer type, each in one module here: its spec (the YAML keys, defaults, shapes),
its compute (forward, backward, parameters), the formulas `convtrain trace` prints, its
ONNX nodes and its kernels' compile-time estimate (convtrain.layers.base says what each
offers). The kernels they call live in convtrain.kernels and are shared.

LAYER_TYPES is the one registry, {YAML `type`: spec class}; a spec class's `compute` is
the class that runs it. Importing this package loads neither Numba nor the kernels.
"""

from convtrain.layers import (
    activations,
    batchnorm,
    branches,
    channels,
    conv2d,
    conv_transpose2d,
    dense,
    dropout,
    flatten,
    lrn,
    modern_activations,
    pools,
    residual,
    upsample,
)
from convtrain.layers.base import Layer, LayerSpec, Mode, walk, walk_with_depth

LAYER_TYPES = {spec.type: spec for module in (conv2d, conv_transpose2d, dense, activations,
                                              modern_activations, pools, upsample, flatten,
                                              batchnorm, lrn, dropout, channels, branches,
                                              residual)
               for spec in module.TYPES}


def build_layer(spec, dtype, rng):
    """The compute layer of a spec, its parameters drawn from rng (or as the spec gives)."""
    return spec.compute(spec, dtype, rng)


__all__ = ["LAYER_TYPES", "Layer", "LayerSpec", "Mode", "build_layer", "walk",
           "walk_with_depth"]
