"""Optimizers (sgd with momentum, Nesterov and weight decay; adam; adamw), learning-rate
schedules with warmup, and gradient clipping.

An optimizer keeps its state arrays per parameter, keyed "layer.param", and
returns the update it applied to each (for the ΔW norms in the logs).
"""

import math

import numpy as np

from convtrain.kernels import elementwise


class Optimizer:
    # Seconds each update kernel took to compile on an empty cache (convtrain.run.compiling).
    compile_s = {"sgd_update": 0.3, "adam_update": 0.45}

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
                elementwise.sgd_update(param.reshape(-1), grad.reshape(-1),
                                       self.state[f"{name}/velocity"].reshape(-1), lr,
                                       spec.momentum, spec.nesterov, spec.weight_decay,
                                       update.reshape(-1))
            else:
                elementwise.adam_update(param.reshape(-1), grad.reshape(-1),
                                        self.state[f"{name}/m"].reshape(-1),
                                        self.state[f"{name}/v"].reshape(-1), lr, spec.beta1,
                                        spec.beta2, spec.eps, spec.weight_decay,
                                        spec.type == "adamw", self.steps, update.reshape(-1))
            updates[name] = update
        return updates

    def load_state(self, arrays, steps):
        for key, value in self.state.items():
            value[...] = arrays[key]
        self.steps = steps


def clip_gradients(network, max_norm):
    """Scale every gradient by max_norm / ‖g‖ when the norm of all of them together, ‖g‖,
    exceeds max_norm (PyTorch's clip_grad_norm_). Returns ‖g‖ before clipping.

    The norm is summed in float64 in parameter order, so it does not depend on threads."""
    total = math.sqrt(sum(float(np.sum(np.square(layer.grads[key], dtype=np.float64)))
                          for layer, key in network.parameters()))
    if total > max_norm:
        scale = max_norm / (total + 1e-6)
        for layer, key in network.parameters():
            grad = layer.grads[key]
            grad *= grad.dtype.type(scale)
    return total


def step_learning_rate(epoch_lr, schedule, step):
    """lr for 1-based global `step`: the epoch's lr, ramped up linearly over the first
    schedule.warmup_steps steps (lr·step/warmup_steps; PyTorch's LinearLR from 1/warmup)."""
    if step < schedule.warmup_steps:
        return epoch_lr * step / schedule.warmup_steps
    return epoch_lr


def learning_rate(optimizer_spec, schedule, epoch, epochs):
    """lr for 1-based `epoch`: step decays by gamma every `every` epochs, or after each of
    its milestones (as PyTorch's MultiStepLR: milestones [82, 123] decay from epochs 83 and
    124 on); cosine follows half a cosine from lr (epoch 1) towards min_lr, which it would
    reach one epoch after the last (as PyTorch's CosineAnnealingLR with T_max = epochs), so
    no epoch runs at min_lr."""
    base = optimizer_spec.lr
    if schedule.type == "step" and schedule.milestones:
        return base * schedule.gamma ** sum(1 for m in schedule.milestones if m < epoch)
    if schedule.type == "step":
        return base * schedule.gamma ** ((epoch - 1) // schedule.every)
    if schedule.type == "cosine":
        progress = (epoch - 1) / epochs
        return schedule.min_lr + (base - schedule.min_lr) * 0.5 * (1 + math.cos(math.pi * progress))
    return base
