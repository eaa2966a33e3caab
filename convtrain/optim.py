"""Optimizers (sgd with momentum and weight decay, adam) and learning-rate schedules.

An optimizer keeps its state arrays per parameter, keyed "layer.param", and
returns the update it applied to each (for the ΔW norms in the logs).
"""

import math

import numpy as np

from convtrain.kernels.elementwise import adam_update, sgd_update


class Optimizer:
    def __init__(self, spec, network):
        self.spec = spec
        self.network = network
        self.steps = 0
        self.state = {}
        for layer, key in network.parameters():
            param = layer.params[key]
            names = ("velocity",) if spec.type == "sgd" else ("m", "v")
            for name in names:
                self.state[f"{layer.name}.{key}/{name}"] = np.zeros_like(param)

    def step(self, lr):
        """Apply one update to every parameter with its current grad. Returns {key: update}."""
        self.steps += 1
        spec = self.spec
        updates = {}
        for layer, key in self.network.parameters():
            name = f"{layer.name}.{key}"
            param = layer.params[key]
            grad = np.ascontiguousarray(layer.grads[key], dtype=param.dtype)
            update = np.empty_like(param)
            if spec.type == "sgd":
                sgd_update(param.reshape(-1), grad.reshape(-1),
                           self.state[f"{name}/velocity"].reshape(-1), lr, spec.momentum,
                           spec.weight_decay, update.reshape(-1))
            else:
                adam_update(param.reshape(-1), grad.reshape(-1), self.state[f"{name}/m"].reshape(-1),
                            self.state[f"{name}/v"].reshape(-1), lr, spec.beta1, spec.beta2,
                            spec.eps, spec.weight_decay, self.steps, update.reshape(-1))
            updates[name] = update
        return updates

    def load_state(self, arrays, steps):
        for key, value in self.state.items():
            value[...] = arrays[key]
        self.steps = steps


def learning_rate(optimizer_spec, schedule, epoch, epochs):
    """lr for 1-based `epoch`: step decays by gamma every `every` epochs; cosine follows
    half a cosine from lr (epoch 1) towards min_lr, which it would reach one epoch after
    the last (as PyTorch's CosineAnnealingLR with T_max = epochs), so no epoch runs at min_lr."""
    base = optimizer_spec.lr
    if schedule.type == "step":
        return base * schedule.gamma ** ((epoch - 1) // schedule.every)
    if schedule.type == "cosine":
        progress = (epoch - 1) / epochs
        return schedule.min_lr + (base - schedule.min_lr) * 0.5 * (1 + math.cos(math.pi * progress))
    return base
