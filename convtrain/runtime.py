"""Process settings that must be made before NumPy's BLAS or numba first load.

The CLI calls `prepare_environment` first; importing `convtrain.layers` (which loads
the kernels) calls it too, so scripts and tests get the same settings. Importing
`convtrain` itself changes nothing.
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
    keep_freed_memory()
    package_dir = os.path.dirname(importlib.util.find_spec("convtrain").origin)
    if "NUMBA_CACHE_DIR" not in os.environ and not os.access(package_dir, os.W_OK):
        cache_home = os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache"))
        os.environ["NUMBA_CACHE_DIR"] = os.path.join(cache_home, "convtrain", "numba")


def keep_freed_memory():
    """Ask glibc's malloc to keep freed arrays' memory for reuse instead of returning it.

    Each training step allocates and frees the same few MB of activations and deltas.
    By default glibc hands big blocks back to the OS and the next step page-faults them
    in again, which cost more than the kernels filling them (LeNet at batch 64: 8.0 ms
    a step, 5.1 ms with this). Peak memory is unchanged; memory is simply not returned
    between steps. A no-op where the C library is not glibc.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    mallopt(m_mmap_threshold, 32 << 20)  # blocks up to 32 MB from the reusable heap
    mallopt(m_trim_threshold, 1 << 30)   # keep up to 1 GB of freed heap


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
