"""Process settings that must be made before NumPy's BLAS or numba first load.

The CLI calls `prepare_environment` first; a layer's first kernel call
(`convtrain.layers.base.kernels`, which imports the kernels) calls it too, so scripts and
tests get the same settings. Importing `convtrain` itself changes nothing.
"""

import atexit
import hashlib
import os
import shutil
import tempfile

from convtrain.version import __version__

# Every module whose source reaches the compiled kernels: they import only numpy, numba and
# math (tests/test_layout.py), so hashing this folder covers all of it.
KERNELS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kernels")


def prepare_environment():
    """Set thread and cache defaults in the environment; imports neither numpy nor numba.

    The CLI calls this first, before a config (and so NumPy) is loaded. Variables the
    user has set already win.
    """
    # convtrain's parallelism is Numba's. The conv kernels call BLAS inside their
    # parallel loops, and BLAS's own threads would fight Numba's for the same cores
    # (a LeNet step took 12 ms instead of 9 here), so BLAS gets one thread.
    # OpenBLAS reads this when it loads: NumPy's and SciPy's copies alike.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    # OpenMP's workers spin briefly between parallel loops instead of sleeping, which
    # saves a wake-up per kernel call (LeNet step 2.2 ms, 6.6 ms with workqueue's sleeping
    # workers, 4.4 ms with OMP_WAIT_POLICY=passive; 2 idle cores); workqueue ships with
    # numba and is the fallback where no OpenMP runtime is installed, so tbb (numba wants
    # it in the list) is never reached. The results do not depend on the layer: every
    # kernel's summation order is fixed.
    os.environ.setdefault("NUMBA_THREADING_LAYER_PRIORITY", "omp workqueue tbb")
    # But GNU OpenMP spins 300,000 rounds (about 3 ms) by default, and where other
    # processes want the cores too (a shared CI runner), a spinning thread holds its core
    # while the thread its loop waits for sits descheduled: with one or two busy processes
    # beside it, a LeNet step (2.3 ms idle) took 14-206 ms and a digits step (0.5 ms) up
    # to 163 ms. 3,000 rounds (about 30 µs) still bridge the gap from one kernel call to
    # the next, then the thread sleeps: LeNet 2.4 ms idle, 6.3-6.8 ms beside busy
    # processes; digits 0.54 and 2.2-2.7 ms. (One thread: LeNet 3.6 ms idle, 3.6-5.2 ms
    # busy.) A wait policy or spin count of the user's own wins.
    if "OMP_WAIT_POLICY" not in os.environ:
        os.environ.setdefault("GOMP_SPINCOUNT", "3000")
    keep_freed_memory()
    if not os.environ.get("NUMBA_CACHE_DIR"):
        os.environ["NUMBA_CACHE_DIR"] = _writable(kernel_cache_dir())
    elif not _can_write(os.environ["NUMBA_CACHE_DIR"]):
        # The user's folder stays (their choice); Numba then caches nothing, and says
        # nothing: `unwritable_cache_dir` lets the commands say it.
        global _unwritable
        _unwritable = os.environ["NUMBA_CACHE_DIR"]


def kernel_cache_dir():
    """The folder Numba caches the compiled kernels in: $NUMBA_CACHE_DIR where set, else
    $XDG_CACHE_HOME/convtrain/kernels-VERSION-HASH (~/.cache/... by default), HASH a short
    hash of the kernel sources. Reads the sources; imports neither numpy nor numba.

    Never Numba's default, `__pycache__` beside the kernels, inside the installed package:
    pip removes only the files it installed, so a reinstall (`pip install .` replaced by
    `pip install -e .`) left the cache in `site-packages/convtrain/kernels/__pycache__`, and
    that folder without `__init__.py` became a namespace package shadowing the editable
    install (`cannot import name '__version__' from 'convtrain'`). Per user, out of the
    package, the cache survives reinstalls and can be kept between CI runs.

    Keyed by the kernel sources because Numba checks only the source file of each cached
    function (numba#9483): a function calling a helper in another module would keep the
    helper's old machine code after the helper changed. Any edit to any kernel module
    makes a new folder, so a stale cache is never reached. Numba itself keys each entry by
    its own version, the Python version and the CPU.
    """
    if os.environ.get("NUMBA_CACHE_DIR"):
        return os.environ["NUMBA_CACHE_DIR"]
    cache_home = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(cache_home):  # the XDG spec: a relative value is ignored
        cache_home = os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache_home, "convtrain", f"kernels-{__version__}-{_kernels_hash()}")


def _kernels_hash():
    digest = hashlib.sha256()
    for name in sorted(os.listdir(KERNELS)):
        if name.endswith(".py"):
            digest.update(name.encode() + b"\0")
            with open(os.path.join(KERNELS, name), "rb") as handle:
                digest.update(handle.read())
    return digest.hexdigest()[:12]


_unwritable = None  # the cache folder wanted, where it could not be written


def unwritable_cache_dir():
    """The kernel cache folder that could not be created or written (the kernels then go to
    a temporary folder and compile again in every process), or None."""
    return _unwritable


def _writable(folder):
    """`folder`, created; or, where it cannot be (a read-only or missing home), a new private
    temporary folder, removed when this process exits. Numba would fall back to the package
    folder, the one place the cache must not go; a temporary folder costs a compile per
    process instead."""
    global _unwritable
    if _can_write(folder):
        return folder
    _unwritable = folder
    temporary = tempfile.mkdtemp(prefix="convtrain-kernels-")
    atexit.register(shutil.rmtree, temporary, ignore_errors=True)
    return temporary


def _can_write(folder):
    """Whether a file can be made in folder (made if missing). By trying: os.access says
    yes to root on a read-only mount's folder or a folder without write permission."""
    try:
        os.makedirs(folder, exist_ok=True)
        handle, probe = tempfile.mkstemp(prefix=".convtrain-probe-", dir=folder)
        os.close(handle)
        os.unlink(probe)
        return True
    except OSError:
        return False


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


def available_cores():
    """The cores this process may run on: its CPU affinity (taskset, cpusets), which can be
    fewer than the machine has. Numba sizes its default thread count the same way."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no sched_getaffinity outside Linux
        return os.cpu_count() or 1


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
