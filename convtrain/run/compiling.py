"""Getting the kernels ready before a run: Numba compiles each kernel signature a run uses
the first time it is called (seconds each), or loads it from its on-disk cache (milliseconds).

On an empty cache, compiling one after another is the slow start of every CI run. So
`ready_kernels` first learns which signatures the run will call, without running a kernel
(`planned_calls`), and where some are missing from the cache, compiles them in several
processes at once (`compile_in_processes`), each writing its share into the shared cache;
the warm-up that follows loads them all. With a warm cache it only loads.
"""

import importlib
import os
import pickle
import signal
import subprocess
import sys
import time
from contextlib import contextmanager

import numba
import numpy as np

from convtrain.kernels import (
    augment,
    channels,
    conv,
    dense,
    depthwise,
    elementwise,
    lrn,
    merge,
    norm,
    ordered_sums,
    pool,
    resample,
    winograd,
)
from convtrain.layers import LAYER_TYPES
from convtrain.model.network import Network
from convtrain.model.optim import Optimizer
from convtrain.data.augment import EpochAugmentation
from convtrain.runtime import available_cores
from convtrain.data.stored_images import StoredImages
from convtrain.team import Solo

KERNEL_MODULES = (augment, channels, conv, dense, depthwise, elementwise, lrn, merge, norm,
                  ordered_sums, pool, resample, winograd)
BYTE_FORMATS = ("cifar10", "folder", "builtin")  # sources whose images are always uint8

# Seconds each kernel took to compile on an empty cache, the functions it calls included,
# as each layer type (its compute class's compile_s) and the optimizers give them. Only
# their ratios matter: they balance the work between processes. A kernel missing here
# counts as UNLISTED_S.
COMPILE_S = {kernel: seconds
             for source in [spec.compute for spec in LAYER_TYPES.values()] + [Optimizer]
             for kernel, seconds in source.compile_s.items()}
UNLISTED_S = 0.2
# How much later a started process finishes the same kernels than this process would:
# Python, NumPy, Numba and the kernel modules (0.25 s), its first parallel kernel (0.2 s) and
# the rest measured (digits: its share took 5.6-6.0 s against 4.9 s estimated).
SPAWN_S = 1.0


def kernel_dispatchers():
    """The Numba dispatcher of every compiled function of the kernels."""
    return [value for module in KERNEL_MODULES for value in vars(module).values()
            if _is_dispatcher(value)]


def _is_dispatcher(value):
    return hasattr(value, "stats") and hasattr(value, "py_func")


def warm_up(network, optimizer, x, y, augment=None):
    """Run every kernel a training step and a validation pass of this network use once, so
    JIT compilation (or loading the cache) happens here and never inside a timed epoch;
    with `augment` (an AugmentSpec; x StoredImages) the augmentation's too. Weights and
    running statistics are left unchanged."""
    started = time.perf_counter()
    if augment:
        EpochAugmentation(augment, 0, 0, 2).batch(x, np.arange(2))
    saved = {k: v.copy() for k, v in network.state().items()}
    saved_opt = {k: v.copy() for k, v in optimizer.state.items()}
    steps = optimizer.steps
    # Each process warms up on its own, when it is ready, sharing its batch with no other.
    team, network.mode.team = network.mode.team, Solo()
    try:
        # Training never asks for dL/dx: a network whose only conv layer is the first never
        # calls conv2d_backward_input (1.6 s to compile).
        network.loss_and_gradients(x[:2], y[:2], input_grad=False)
        optimizer.step(0.0)
        network.forward(x[:2])  # validation's forward: batchnorm's running-statistics kernel
    finally:
        network.mode.team = team
    network.load_state(saved)
    optimizer.load_state(saved_opt, steps)
    return time.perf_counter() - started


def ready_kernels(network, optimizer, x, y, augment=None):
    """Compile (in several processes where that pays) or load every kernel signature the
    warm-up calls, then warm up. Returns (seconds, 'kernels ready in 6.2 s (12 compiled
    in 2 processes, 0 loaded from the cache)')."""
    return ready_all([(network, optimizer, x, y, augment)])[:2]


def ready_all(steps):
    """ready_kernels for several networks' steps [(network, optimizer, x, y)] at once, so
    that all their missing kernels share the processes. Returns (seconds, note, for each
    step the kernel signatures it calls)."""
    started = time.perf_counter()
    planned = [planned_calls(*step) for step in steps]
    calls = list(dict.fromkeys(call for step_calls in planned for call in step_calls))
    calls = [call for call in calls if call[1] not in call[0].overloads]  # not in this process
    missing = [call for call in calls if not _in_cache(*call)]
    processes = compile_in_processes(missing, min(numba.get_num_threads(), available_cores()))
    for step in steps:
        warm_up(*step)
    seconds = time.perf_counter() - started
    where = f" in {processes} processes" if processes > 1 else ""
    return seconds, (f"kernels ready in {seconds:.1f} s ({len(missing)} compiled{where}, "
                     f"{len(calls) - len(missing)} loaded from the cache)"), planned


def compile_configs(configs):
    """Compile (or load) every kernel training each config uses: forward, backward, the
    optimizer's update, in the config's dtype, and the augmentation's for a source of
    bytes. Needs no data. Returns (the note, for each
    config (kernel signatures it uses, how many of them no config before it uses))."""
    steps = []
    for config in configs:
        network = Network(config)
        source = config.data.train
        # The augmentation kernel runs on the images as stored: bytes for the formats
        # that hold bytes; an NPZ or CSV source's type is known only from its file.
        stored = np.uint8 if source and source.format in BYTE_FORMATS else network.dtype
        x = StoredImages(np.zeros((2,) + tuple(config.input), dtype=stored), network.dtype)
        augment = source.augment if source and stored == np.uint8 else None
        steps.append((network, Optimizer(config.optimizer, network), x,
                      np.zeros(2, dtype=np.int64), augment))
    _, note, planned = ready_all(steps)
    counts, seen = [], set()
    for step_calls in planned:
        counts.append((len(step_calls), len(set(step_calls) - seen)))
        seen.update(step_calls)
    return note, counts


def planned_calls(network, optimizer, x, y, augment=None):
    """[(dispatcher, signature)]: each kernel signature warm_up would call, in call order,
    each once. Learned by a warm-up in which every kernel call is only recorded: no kernel
    runs (the arrays it would fill stay as allocated) and nothing is compiled."""
    calls = []

    def recorder(dispatcher):
        def record(*args):
            call = (dispatcher, tuple(numba.typeof(arg) for arg in args))
            if call not in calls:
                calls.append(call)
        return record

    with _kernels_replaced(recorder), np.errstate(all="ignore"):
        warm_up(network, optimizer, x, y, augment)
    return calls


@contextmanager
def _kernels_replaced(make_stand_in):
    """Within: each kernel module's kernel is make_stand_in(kernel). Code outside the
    kernels calls a kernel through its module (`kernels("conv").conv2d_forward`,
    `elementwise.sgd_update`), never a name imported from it, so every call meets the
    stand-in."""
    replaced = []
    for module in KERNEL_MODULES:
        for name, value in list(vars(module).items()):
            if _is_dispatcher(value):
                replaced.append((module, name, value))
                setattr(module, name, make_stand_in(value))
    try:
        yield
    finally:
        for module, name, value in replaced:
            setattr(module, name, value)


def _in_cache(dispatcher, signature):
    """Whether Numba's on-disk cache holds the signature. Loading the entry to find out
    takes about 3 ms; warm_up loads it again."""
    # Numba has no public query for the cache; this is the lookup Dispatcher.compile
    # makes before compiling. Where it is not there, everything counts as missing.
    try:
        return dispatcher._cache.load_overload(signature, dispatcher.targetctx) is not None
    except AttributeError:
        return False


def compile_in_processes(calls, processes):
    """Compile calls [(dispatcher, signature)] into Numba's cache, sharing them among up to
    `processes` processes started for the purpose; work that would take less than starting
    one (SPAWN_S) is compiled here. Returns how many processes compiled.

    This process only waits for the others: Numba keeps the LLVM modules of a kernel it
    compiled in the process, not of one it loads from the cache (a first ResNet-20 run
    peaked at 710 MB with half the kernels compiled here, 638 MB with none), at the price
    of starting one more process (0.5 s more on the digits' first smoke).

    A started process that fails leaves its share to the warm-up after, which compiles
    whatever is still missing: the result is the same, only slower."""
    cost = sum(COMPILE_S.get(d.py_func.__name__, UNLISTED_S) for d, _ in calls)
    if processes < 2 or cost <= SPAWN_S:
        for dispatcher, signature in calls:
            dispatcher.compile(signature)
        return 1
    helpers = []
    try:
        for share in _shares(calls, processes):
            work = [(d.py_func.__module__, d.py_func.__name__, s) for d, s in share]
            try:
                helpers.append(_start_compiling(work))
            except OSError:  # no interpreter to start (an embedded Python): the warm-up compiles
                break  # the rest
        for helper in helpers:
            helper.wait()
        return max(1, len(helpers))
    finally:
        for helper in helpers:
            if helper.poll() is None:
                helper.kill()


# A started process runs this. Not multiprocessing: it would run the user's main script
# again in each process, which a script without `if __name__ == "__main__"` cannot take.
_COMPILE_SCRIPT = """import pickle, sys
path, work, starter = pickle.load(sys.stdin.buffer)
sys.path[:] = path
from convtrain.run.compiling import compile_work
compile_work(pickle.loads(work), starter)
"""


def _start_compiling(work):
    """A process compiling work [(module, function name, signature)] into the cache; it
    inherits the environment (NUMBA_CACHE_DIR) and sys.path, and prints nothing."""
    helper = subprocess.Popen([sys.executable, "-c", _COMPILE_SCRIPT], stdin=subprocess.PIPE,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with helper.stdin:
        pickle.dump((sys.path, pickle.dumps(work), os.getpid()), helper.stdin)
    return helper


def compile_work(work, starter):
    """Compile work [(module, function name, signature)]: in a process started by the
    process `starter`, and ending within 0.2 s of it, however that ends: a SIGTERM or
    SIGKILL there runs no cleanup, and a helper left compiling could write the cache at the
    same time as a retried run. A timer checks the parent process, not a thread: a second
    thread, even one blocked reading, made Numba compile 15% slower here."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the process that started it
    if hasattr(signal, "setitimer"):  # POSIX

        def end_with_the_starter(signum, frame):
            if os.getppid() != starter:  # reparented: the starter has ended
                os._exit(1)

        signal.signal(signal.SIGALRM, end_with_the_starter)
        signal.siginterrupt(signal.SIGALRM, False)  # C code's system calls restart, not fail
        signal.setitimer(signal.ITIMER_REAL, 0.2, 0.2)
    try:
        for module, name, signature in work:
            getattr(importlib.import_module(module), name).compile(signature)
    finally:  # at exit Python restores SIGALRM's default action, which would kill it
        if hasattr(signal, "setitimer"):
            signal.setitimer(signal.ITIMER_REAL, 0)


def _shares(calls, processes):
    """calls split into at most `processes` non-empty lists, balanced by COMPILE_S (longest
    first, each to the process that would finish it soonest). Calls whose kernels call a
    common function go to one
    process, so that no two processes write the same function's cache entry at once
    (Numba's cache index is read, changed and rewritten, and could lose an entry)."""
    groups = []
    for call in calls:
        reach = _reach(call[0])
        joined = [group for group in groups if group[0] & reach]
        for group in joined:
            groups.remove(group)
            reach |= group[0]
        groups.append((reach, [c for group in joined for c in group[1]] + [call]))
    costs = [sum(COMPILE_S.get(d.py_func.__name__, UNLISTED_S) for d, _ in group)
             for _, group in groups]
    finish = [0.0] * processes
    shares = [[] for _ in finish]
    for cost, (_, group) in sorted(zip(costs, groups), key=lambda pair: -pair[0]):
        soonest = min(range(len(finish)), key=lambda p: finish[p] + cost)
        finish[soonest] += cost
        shares[soonest] += group
    return [share for share in shares if share]


def _reach(dispatcher):
    """The dispatcher and every kernel function it calls, directly or not."""
    reach, pending = set(), [dispatcher]
    while pending:
        function = pending.pop()
        reach.add(function)
        for name in function.py_func.__code__.co_names:
            value = function.py_func.__globals__.get(name)
            if _is_dispatcher(value) and value not in reach:
                pending.append(value)
    return reach
