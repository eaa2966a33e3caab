"""Compiling the kernels ahead of a run (`convtrain compile`), and counting what a warm-up
compiled against what it loaded from Numba's cache, so that a slow start says why."""

import time

import numpy as np

from convtrain.kernels import conv, dense, elementwise, pool
from convtrain.network import Network
from convtrain.optim import Optimizer
from convtrain.train import warm_up

KERNEL_MODULES = (conv, dense, elementwise, pool)


def kernel_dispatchers():
    """The Numba dispatcher of every compiled function of the kernels."""
    return [value for module in KERNEL_MODULES for value in vars(module).values()
            if hasattr(value, "stats") and hasattr(value, "py_func")]


def cache_counts():
    """(signatures compiled, signatures loaded from the cache) in this process so far."""
    compiled = loaded = 0
    for dispatcher in kernel_dispatchers():
        compiled += sum(dispatcher.stats.cache_misses.values())
        loaded += sum(dispatcher.stats.cache_hits.values())
    return compiled, loaded


def ready_note(seconds, before):
    """'kernels ready in 12.8 s (18 compiled, 0 loaded from the cache)'; before: the
    counts when the warm-up started."""
    compiled, loaded = (now - then for now, then in zip(cache_counts(), before))
    return (f"kernels ready in {seconds:.1f} s ({compiled} compiled, {loaded} loaded from "
            f"the cache)")


def compile_config(config):
    """Compile (or load) every kernel a training run of config uses: forward, backward,
    the optimizer's update, in the config's dtype. Needs no data. Returns the note."""
    before = cache_counts()
    network = Network(config)
    optimizer = Optimizer(config.optimizer, network)
    x = np.zeros((2,) + tuple(config.input), dtype=network.dtype)
    labels = np.zeros(2, dtype=np.int64)
    started = time.perf_counter()
    warm_up(network, optimizer, x, labels)
    return ready_note(time.perf_counter() - started, before)
