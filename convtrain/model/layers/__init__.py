"""Compute layers, keyed by the YAML `type` (the specs live in convtrain.spec.layer_specs).

Importing the layers imports the kernels and so numba: the thread and cache defaults
of `convtrain.runtime` are set first, whoever builds a network (the CLI, a test, a
script). Values already in the environment win.
"""

from convtrain.runtime import prepare_environment

prepare_environment()

# isort: split

from convtrain.model.layers.activation import LeakyRelu, Sigmoid, Tanh
from convtrain.model.layers.base import Layer, Mode
from convtrain.model.layers.conv import Conv2d
from convtrain.model.layers.dense import Dense
from convtrain.model.layers.dropout import Dropout
from convtrain.model.layers.flatten import Flatten
from convtrain.model.layers.norm import BatchNorm
from convtrain.model.layers.pool import AvgPool, GlobalAvgPool, MaxPool
from convtrain.model.layers.residual import Residual

LAYERS = {
    "conv2d": Conv2d,
    "dense": Dense,
    "relu": LeakyRelu,
    "leaky_relu": LeakyRelu,
    "sigmoid": Sigmoid,
    "tanh": Tanh,
    "maxpool": MaxPool,
    "avgpool": AvgPool,
    "flatten": Flatten,
    "batchnorm": BatchNorm,
    "globalavgpool": GlobalAvgPool,
    "dropout": Dropout,
    "residual": Residual,
}


def build_layer(spec, dtype, rng):
    return LAYERS[spec.type](spec, dtype, rng)


__all__ = ["LAYERS", "Layer", "Mode", "build_layer"]
