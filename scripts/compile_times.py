"""Per-kernel JIT compile times on an empty cache, for the configs given (issue 11).

    .venv/bin/python scripts/compile_times.py configs/digits.yaml [configs/lenet5-mnist.yaml ...]

Compiles what `convtrain compile` compiles, but one kernel after another in one process
(`convtrain compile` shares them among processes), config after config (a kernel a later
config shares is not compiled again), into a fresh temporary NUMBA_CACHE_DIR, and prints one
row per kernel signature compiled: its inclusive seconds (the functions it calls compiled
inside it), and the total. Times come from Numba's own "numba:compile" events.
"""

import os
import sys
import tempfile
import time


def main(paths):
    os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="convtrain-compile-times-")
    from convtrain.runtime import prepare_numba

    prepare_numba()
    from numba.core import event

    import numpy as np

    from convtrain.run.compiling import planned_calls
    from convtrain.spec.config import load_config
    from convtrain.model.network import Network
    from convtrain.model.optim import Optimizer

    rows, started = [], time.perf_counter()
    for path in paths:
        config = load_config(path)
        network = Network(config)
        x = np.zeros((2,) + tuple(config.input), dtype=network.dtype)
        calls = planned_calls(network, Optimizer(config.optimizer, network), x,
                              np.zeros(2, dtype=np.int64))
        with event.install_recorder("numba:compile") as recorder:
            for dispatcher, signature in calls:
                dispatcher.compile(signature)
        rows += _kernel_rows(recorder.buffer, path)
    total = time.perf_counter() - started
    print(f"{'config':<28}{'kernel':<38}{'seconds':>9}")
    for path, name, seconds in sorted(rows, key=lambda row: -row[2]):
        print(f"{os.path.basename(path):<28}{name:<38}{seconds:>9.2f}")
    print(f"{'total (wall, all configs)':<66}{total:>9.2f}")


def _kernel_rows(buffer, path):
    """[(path, kernel, seconds)] for each outermost compile of a convtrain kernel."""
    rows, open_events = [], []
    for timestamp, item in buffer:
        if item.is_start:
            open_events.append(timestamp)
            continue
        began = open_events.pop()
        function = item.data["dispatcher"].py_func
        if not open_events and function.__module__.startswith("convtrain.kernels"):
            name = f"{function.__module__.rpartition('.')[2]}.{function.__name__}"
            rows.append((path, name, timestamp - began))
    return rows


if __name__ == "__main__":
    main(sys.argv[1:] or ["configs/digits.yaml"])
