"""A convtrain config's network as PyTorch modules, for scripts/bench.py: the same layers,
names and shapes, so that the two sides train the same network and the per-layer tables
pair up. Only PyTorch is imported here, and only the layer types the benchmarked configs
use are translated (anything else is a ValueError naming it).

    layers = torch_layers(config)        # [(top-level layer name, module)]
"""

import numpy as np
import torch
from torch import nn


class Paths(nn.Module):
    """A convtrain branches (or residual) block: each path on the input, then the merge."""

    def __init__(self, paths, merge, gates):
        super().__init__()
        self.paths = nn.ModuleList(nn.Sequential(*path) for path in paths)
        self.merge, self.gates = merge, gates

    def forward(self, x):
        outputs = [path(x) for path in self.paths]
        if self.merge == "concat":
            return torch.cat(outputs, dim=1)
        if self.merge == "add":
            total = outputs[0]
            for other in outputs[1:]:
                total = total + other
            return total
        product = None
        for out, gate in zip(outputs, self.gates):
            factor = out.reshape(out.shape[0], -1, 1, 1) if gate else out
            product = factor if product is None else product * factor
        return product


def torch_layers(config):
    """[(name, module)] of the config's top-level layers, float32."""
    return [(spec.name, _module(spec)) for spec in config.layers]


def _module(spec):
    kind = spec.type
    if kind == "conv2d":
        if spec.op != "correlation":
            raise ValueError(f"{spec.name}: op {spec.op}")
        top, bottom, left, right = spec.padding
        if (top, left) != (bottom, right):
            raise ValueError(f"{spec.name}: asymmetric padding")
        return nn.Conv2d(spec.in_shape[0], spec.filters, tuple(spec.kernel), tuple(spec.stride),
                         (top, left), tuple(spec.dilation), spec.groups, spec.bias)
    if kind == "batchnorm":
        return (nn.BatchNorm2d if len(spec.in_shape) == 3 else nn.BatchNorm1d)(
            spec.in_shape[0], eps=spec.eps, momentum=spec.momentum, affine=spec.affine)
    if kind in ("residual", "branches"):
        return Paths([[_module(child) for child in path] for path in spec.paths], spec.merge,
                     spec.gates)
    if kind == "dense":
        return nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(spec.in_shape)), spec.units,
                                                     bias=spec.bias))
    if kind in ("maxpool", "avgpool"):
        top, left = spec.padding
        if kind == "maxpool":
            return nn.MaxPool2d(tuple(spec.size), tuple(spec.stride), (top, left),
                                ceil_mode=spec.ceil_mode)
        return nn.AvgPool2d(tuple(spec.size), tuple(spec.stride), (top, left),
                            ceil_mode=spec.ceil_mode, count_include_pad=spec.count_include_pad)
    simple = {"relu": nn.ReLU, "relu6": nn.ReLU6, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh,
              "hardswish": nn.Hardswish, "hardsigmoid": nn.Hardsigmoid, "silu": nn.SiLU,
              "gelu": nn.GELU, "flatten": nn.Flatten}
    if kind in simple:
        return simple[kind]()
    if kind == "globalavgpool":
        return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
    if kind == "dropout":
        return nn.Dropout(spec.rate)
    raise ValueError(f"{spec.name}: no PyTorch translation of layer type {kind}")
