"""Process settings (convtrain.runtime): thread defaults, where the kernel cache goes, and
results that do not depend on the threading layer."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from convtrain import __version__, runtime
from convtrain.run.checkpoint import read_checkpoint
from convtrain.cli import main

SETTINGS = ("OPENBLAS_NUM_THREADS", "NUMBA_THREADING_LAYER_PRIORITY", "NUMBA_CACHE_DIR",
            "GOMP_SPINCOUNT", "OMP_WAIT_POLICY")


@pytest.fixture(autouse=True)
def restored_environment():
    """prepare_environment writes os.environ directly; put it back after each test."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def _clear(monkeypatch):
    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)


def test_defaults_are_set_and_the_users_values_win(monkeypatch):
    _clear(monkeypatch)
    runtime.prepare_environment()
    assert os.environ["OPENBLAS_NUM_THREADS"] == "1"
    assert os.environ["NUMBA_THREADING_LAYER_PRIORITY"].split()[0] == "omp"
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "4")
    monkeypatch.setenv("NUMBA_THREADING_LAYER_PRIORITY", "workqueue omp tbb")
    runtime.prepare_environment()
    assert os.environ["OPENBLAS_NUM_THREADS"] == "4"
    assert os.environ["NUMBA_THREADING_LAYER_PRIORITY"] == "workqueue omp tbb"


def test_openmp_spins_briefly_unless_the_user_chose_a_wait_policy(monkeypatch):
    """libgomp's default spin (about 3 ms) made a step 10-300x slower beside one busy
    process; a short spin keeps the idle-machine speed. A wait policy of the user's
    implies its own spin count, so none is set then."""
    _clear(monkeypatch)
    runtime.prepare_environment()
    assert os.environ["GOMP_SPINCOUNT"] == "3000"
    monkeypatch.setenv("GOMP_SPINCOUNT", "100")
    runtime.prepare_environment()
    assert os.environ["GOMP_SPINCOUNT"] == "100"
    _clear(monkeypatch)
    monkeypatch.setenv("OMP_WAIT_POLICY", "active")
    runtime.prepare_environment()
    assert "GOMP_SPINCOUNT" not in os.environ


def test_the_kernel_cache_is_per_user_outside_the_package_and_keyed_by_the_sources(
        monkeypatch, tmp_path):
    """Never the package folder: pip leaves files it did not install there, and the folder
    left behind shadows an editable install (tests/test_install.py). Keyed by a hash of every
    kernel module, because Numba's own check looks only at the function's own file
    (numba#9483): an edit to another kernel module must not load stale machine code."""
    _clear(monkeypatch)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    runtime.prepare_environment()
    cache = os.environ["NUMBA_CACHE_DIR"]
    assert cache == runtime.kernel_cache_dir() and os.path.isdir(cache)
    assert os.path.dirname(cache) == str(tmp_path / "cache" / "convtrain")
    assert os.path.basename(cache).startswith(f"kernels-{__version__}-")

    kernels = tmp_path / "kernels"
    shutil.copytree(os.path.join(os.path.dirname(runtime.__file__), "kernels"), kernels,
                    ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(runtime, "KERNELS", str(kernels))
    monkeypatch.delenv("NUMBA_CACHE_DIR")
    assert runtime.kernel_cache_dir() == cache
    with open(kernels / "pool.py", "a") as handle:
        handle.write("# an edit\n")
    assert runtime.kernel_cache_dir() != cache


def test_the_users_numba_cache_dir_wins(monkeypatch, tmp_path):
    _clear(monkeypatch)
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "mine"))
    runtime.prepare_environment()
    assert os.environ["NUMBA_CACHE_DIR"] == runtime.kernel_cache_dir() == str(tmp_path / "mine")


def test_an_unusable_cache_home_falls_back_to_a_temporary_folder(monkeypatch, tmp_path):
    """Not to Numba's default, the package folder. Tests run as root, so the unusable cache
    home is a file, under which no folder can be made."""
    _clear(monkeypatch)
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "a-file"))
    monkeypatch.setattr(runtime.tempfile, "tempdir", str(tmp_path / "tmp"))
    monkeypatch.setattr(runtime, "_unwritable", None)  # restored after, for the other tests
    (tmp_path / "tmp").mkdir()
    runtime.prepare_environment()
    cache = os.environ["NUMBA_CACHE_DIR"]
    assert os.path.dirname(cache) == str(tmp_path / "tmp") and os.access(cache, os.W_OK)
    wanted = str(tmp_path / "a-file" / "convtrain" / "kernels-")
    assert runtime.unwritable_cache_dir().startswith(wanted)  # for the CLI's warning


def test_weights_do_not_depend_on_the_threading_layer(repo_root, write_config, tmp_path):
    """workqueue and OpenMP schedule loop iterations differently; every kernel's sums
    run in a fixed order, so the weights must be bitwise equal. (Where no OpenMP runtime
    is installed, numba falls back to workqueue and both runs use it.)"""
    config = write_config(
        "seed: 3\ninput: [1, 8, 8]\nlayers:\n"
        "  - {type: conv2d, filters: 4, kernel: 3, padding: same}\n  - {type: relu}\n"
        "  - {type: maxpool, size: 2}\n  - {type: conv2d, filters: 6, kernel: 2}\n"
        "  - {type: flatten}\n  - {type: dense, units: 10}\n"
        "optimizer: {type: sgd, lr: 0.1, momentum: 0.9}\ntrain: {epochs: 1, batch_size: 16}\n"
        "data:\n  train: {format: builtin, name: digits, scale: 16, limit: 200}\n", "net.yaml")
    weights = {}
    for layer in ("workqueue", "omp"):
        env = dict(os.environ, NUMBA_THREADING_LAYER_PRIORITY=f"{layer} " + " ".join(
            sorted({"workqueue", "omp", "tbb"} - {layer})))
        out = tmp_path / layer
        proc = subprocess.run([sys.executable, "-m", "convtrain", "train", config, "--out",
                               str(out), "--quiet", "--threads", "2"],
                              capture_output=True, text=True, env=env, cwd=repo_root)
        assert proc.returncode == 0, proc.stderr
        weights[layer] = read_checkpoint(str(out / "checkpoint-last.npz"))[0]
    assert all(np.array_equal(weights["workqueue"][k], weights["omp"][k])
               for k in weights["omp"])


def test_more_threads_than_cores_warns_in_one_line(monkeypatch, repo_root):
    """The core count is the process's affinity, patched here so that the test does not
    depend on the machine."""
    import numba

    monkeypatch.setattr(runtime, "available_cores", lambda: 1)
    config = os.path.join(repo_root, "configs", "digits.yaml")
    runner = CliRunner()
    try:
        for threads, warned in (("2", True), ("1", False)):
            result = runner.invoke(main, ["time", config, "--batch", "2", "--iters", "1",
                                          "--threads", threads])
            assert result.exit_code == 0, result.output
            warnings = [line for line in result.stderr.splitlines() if "warning" in line]
            assert warnings == ([
                "warning: --threads 2 is more than the 1 core available to this process; "
                "the extra threads only take turns (slower, same results)"] if warned else [])
    finally:
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
