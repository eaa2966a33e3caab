"""`convtrain train --smoke`: the check users run in their CI."""

import time

import numpy as np

from convtrain.compiling import ready_kernels
from convtrain.data import load_datasets
from convtrain.network import Network
from convtrain.optim import Optimizer
from convtrain.train import evaluate


def smoke(config, steps, samples=256):
    """A few steps on a small slice: ok only if every loss is finite and the slice's loss fell.
    The line says how long the kernels took to be ready (compiled, or loaded from the cache)
    apart from the steps, so that a slow CI run says why.

    Returns (ok, line)."""
    x, y, _, _ = load_datasets(config, need_val=False)
    x, y = x[:samples], y[:samples]
    network = Network(config)
    optimizer = Optimizer(config.optimizer, network)
    _, kernels = ready_kernels(network, optimizer, x, y)
    network.mode.keep_deltas = False  # nothing is logged
    started = time.perf_counter()
    ok, outcome = _steps(network, optimizer, x, y, steps, config)
    return ok, f"{outcome}; steps {time.perf_counter() - started:.1f} s, {kernels}"


def _steps(network, optimizer, x, y, steps, config):
    before, _ = evaluate(network, x, y)
    batch = min(config.train.batch_size, len(y))
    for step in range(steps):
        network.mode.step = step + 1
        start = (step * batch) % len(y)
        index = np.arange(start, start + batch) % len(y)
        loss, _, _ = network.loss_and_gradients(x[index], y[index], input_grad=False)
        if not np.isfinite(loss):
            return False, f"smoke: FAILED — loss became {loss} at step {step + 1}"
        optimizer.step(config.optimizer.lr)
    after, _ = evaluate(network, x, y)
    if not np.isfinite(after):
        return False, f"smoke: FAILED — loss on the slice became {after} after {steps} steps"
    if not after < before:
        return False, (f"smoke: FAILED — loss did not go down in {steps} steps on {len(y)} "
                       f"samples: {before:.4f} -> {after:.4f}")
    return True, (f"smoke: ok — {steps} steps on {len(y)} samples, loss {before:.4f} -> "
                  f"{after:.4f}, all finite")
