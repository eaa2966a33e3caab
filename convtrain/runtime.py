"""Process settings that must be made before NumPy's BLAS or numba first load.

Called by the CLI, never at import time: importing convtrain changes nothing.
"""

import os


def prepare_environment():
    """Set thread and cache defaults in the environment; imports neither numpy nor numba.

    The CLI calls this first, before a config (and so NumPy) is loaded. Variables the
    user has set already win.
    """
    import importlib.util

    # convtrain's parallelism is Numba's. The conv kernels call BLAS inside their
    # parallel loops, and BLAS's own threads would fight Numba's for the same cores
    # (a LeNet step took 12 ms instead of 9 here), so BLAS gets one thread.
    # OpenBLAS reads this when it loads: NumPy's and SciPy's copies alike.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    # OpenMP's workers spin briefly between parallel loops instead of sleeping, which
    # saves a wake-up per kernel call (about 30% of a LeNet step here); workqueue
    # ships with numba and is the fallback where no OpenMP runtime is installed, so
    # tbb (numba wants it in the list) is never reached. The results do not depend on
    # the layer: every kernel's summation order is fixed.
    os.environ.setdefault("NUMBA_THREADING_LAYER_PRIORITY", "omp workqueue tbb")
    package_dir = os.path.dirname(importlib.util.find_spec("convtrain").origin)
    if "NUMBA_CACHE_DIR" not in os.environ and not os.access(package_dir, os.W_OK):
        cache_home = os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache"))
        os.environ["NUMBA_CACHE_DIR"] = os.path.join(cache_home, "convtrain", "numba")


def prepare_numba(threads=None):
    """prepare_environment(), then set numba's thread count (importing numba)."""
    import sys

    if "numba" not in sys.modules:
        prepare_environment()
        if threads:
            os.environ["NUMBA_NUM_THREADS"] = str(max(threads, os.cpu_count() or 1))
    if threads:
        import numba

        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
