"""Numba settings that must be made before numba is first imported.

Called by the CLI, never at import time: importing convtrain changes nothing.
"""

import os


def prepare_numba(threads=None):
    """Pin the threading layer, pick a writable kernel cache, set the thread count."""
    import importlib.util
    import sys

    if "numba" not in sys.modules:
        # workqueue ships with numba itself; pinning it keeps an installed tbb or
        # OpenMP from silently changing how parallel loops are scheduled.
        os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")
        # The conv kernels call BLAS from inside their parallel loops: one BLAS thread
        # per Numba thread, not a second pool on top. (Read when BLAS loads.)
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
        package_dir = os.path.dirname(importlib.util.find_spec("convtrain").origin)
        if "NUMBA_CACHE_DIR" not in os.environ and not os.access(package_dir, os.W_OK):
            cache_home = os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache"))
            os.environ["NUMBA_CACHE_DIR"] = os.path.join(cache_home, "convtrain", "numba")
        if threads:
            os.environ["NUMBA_NUM_THREADS"] = str(max(threads, os.cpu_count() or 1))
    if threads:
        import numba

        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
