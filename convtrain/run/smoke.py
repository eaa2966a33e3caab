"""`convtrain train --smoke`: the check users run in their CI."""

import time

import numpy as np

from convtrain.run.compiling import ready_kernels
from convtrain.data.sources import load_datasets
from convtrain.model.network import Network
from convtrain.model.optim import Optimizer

# Dropout's masks are a function of the step number (layers/dropout.py); training's steps
# are numbered from 1, so the loss is measured under masks of a step it never takes.
MEASURE_STEP = 0


def smoke(config, steps, samples=256):
    """A few steps on a small slice: ok only if every loss is finite and the slice's loss fell.
    The line says how long the kernels took to be ready (compiled, or loaded from the cache)
    apart from the steps, so that a slow CI run says why.

    Returns (ok, line)."""
    network = Network(config)
    x, y, origin = _slice(config, samples, network.dtype)
    optimizer = Optimizer(config.optimizer, network)
    _, kernels = ready_kernels(network, optimizer, x, y)
    network.mode.keep_deltas = False  # nothing is logged
    started = time.perf_counter()
    # A loss that overflows is reported in the line; NumPy's warning would only repeat it.
    with np.errstate(over="ignore", invalid="ignore"):
        ok, outcome = _steps(network, optimizer, x, y, steps, config)
    return ok, f"{outcome}{origin}; steps {time.perf_counter() - started:.1f} s, {kernels}"


def _slice(config, samples, dtype):
    """(x, y, a note) of the samples to train on: the first of data.train; for a config
    that names no data (the worked example), seeded random ones, as `trace` and `gradcheck`
    take, which a network with gradients that point the right way still learns to fit."""
    if config.data.train is not None:
        x, y, _, _ = load_datasets(config, need_val=False)
        return x[:samples], y[:samples], ""
    rng = np.random.default_rng([config.seed, 5])
    x = rng.standard_normal((samples,) + tuple(config.input)).astype(dtype)
    y = rng.integers(0, config.num_outputs, size=samples)
    return x, y, " (no data.train: seeded random inputs and labels)"


def _steps(network, optimizer, x, y, steps, config):
    batch = min(config.train.batch_size, len(y))
    before = slice_loss(network, x, y, batch)
    for step in range(steps):
        network.mode.step = step + 1
        index = _batch(step, batch, len(y))
        loss, _, _ = network.loss_and_gradients(x[index], y[index], input_grad=False)
        if not np.isfinite(loss):
            return False, f"smoke: FAILED — loss became {loss} at step {step + 1}"
        optimizer.step(config.optimizer.lr)
    after = slice_loss(network, x, y, batch)
    if not np.isfinite(after):
        return False, f"smoke: FAILED — loss on the slice became {after} after {steps} steps"
    if not after < before:
        return False, (f"smoke: FAILED — loss did not go down in {steps} steps on {len(y)} "
                       f"samples: {before:.4f} -> {after:.4f}")
    return True, (f"smoke: ok — {steps} steps on {len(y)} samples, loss {before:.4f} -> "
                  f"{after:.4f}, all finite")


def _batch(step, batch, count):
    """The sample indices of 0-based `step`: the slice in order, wrapping around."""
    start = (step * batch) % count
    return np.arange(start, start + batch) % count


def slice_loss(network, x, y, batch):
    """The mean loss over the slice (x, y) as training computes it, in the batches of the
    first steps: batchnorm normalises with each batch's statistics. Not evaluate's loss:
    after a few steps batchnorm's running statistics have barely moved from their initial
    (0, 1), and a deep batchnorm network (ResNet-20) that trains well scored a higher loss
    on them after 20 steps than before. The running statistics are put back afterwards,
    and dropout's masks are the same before and after (MEASURE_STEP), so the two losses
    differ by the weights alone."""
    saved = [(value, value.copy()) for layer in network.all_layers()
             for value in layer.buffers.values()]  # updated in place by forward
    network.mode.step = MEASURE_STEP
    losses = []
    for step in range(-(-len(y) // batch)):  # every sample at least once
        index = _batch(step, batch, len(y))
        scores = network.forward(x[index], training=True)
        losses.append(network.loss_fn(scores, y[index])[0])
    for value, copy in saved:
        value[...] = copy
    return float(np.mean(losses))
