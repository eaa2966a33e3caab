"""Getting the kernels ready: `convtrain compile` fills the cache that the next run (a CI
smoke test, say) loads, also after a reinstall at the same path; the signatures a run will
call are learned without running a kernel; compiling is shared among processes safely."""

import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner
from nets import small_cnn

from convtrain.run import compiling
from convtrain.cli import main
from convtrain.spec.config import load_config
from convtrain.model.network import Network
from convtrain.model.optim import Optimizer
from convtrain.runtime import available_cores

TWO_CONVS = small_cnn("two-convs").replace(
    "  - {type: maxpool, size: 2}\n",
    "  - {type: maxpool, size: 2}\n  - {type: conv2d, filters: 4, kernel: 3}\n"
    "  - {type: tanh}\n")


def _pip_install(repo_root, target, *extra):
    """Install the checkout into target as a user's `pip install .` would (a wheel, not
    editable), without the network: the build backend is the test environment's. From a
    copy, because setuptools builds in the source tree (build/, *.egg-info)."""
    source = target.parent / "source"
    shutil.rmtree(source, ignore_errors=True)
    anywhere = shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", ".pytest_cache",
                                      ".hypothesis", "__pycache__")

    def ignore(folder, names):  # runs/ and data/ of the checkout, not convtrain/data/
        top = {"runs", "data"} & set(names) if os.path.samefile(folder, repo_root) else set()
        return anywhere(folder, names) | top

    shutil.copytree(repo_root, source, ignore=ignore)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--target", str(target), *extra, str(source)],
                   check=True, capture_output=True, timeout=300)


def test_compile_then_reinstall_at_the_same_path_then_smoke_compiles_nothing(
        write_config, tmp_path, repo_root):
    config = write_config(TWO_CONVS)
    target = tmp_path / "site"
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env.update(PYTHONPATH=str(target), XDG_CACHE_HOME=str(tmp_path / "cache"))

    def installed(*args):  # the installed command, run outside the checkout
        result = subprocess.run([str(target / "bin" / "convtrain"), *args], cwd=tmp_path,
                                env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        return result.stdout.splitlines()

    _pip_install(repo_root, target)
    where = subprocess.run([sys.executable, "-c", "import convtrain; print(convtrain.__file__)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True)
    assert where.stdout.startswith(str(target))

    first = installed("compile", config)
    compiled = int(first[0].split(": ")[1].split()[0])
    assert first[0] == f"{config}: {compiled} kernel signatures" and compiled >= 10
    processes = " in 2 processes" if available_cores() > 1 else ""
    assert first[1] == (f"kernels ready in {first[1].split()[3]} s ({compiled} "
                        f"compiled{processes}, 0 loaded from the cache)")
    assert first[2].startswith(f"kernel cache: {tmp_path / 'cache' / 'convtrain' / 'kernels-'}")

    _pip_install(repo_root, target, "--upgrade", "--force-reinstall")
    smoke = installed("train", config, "--smoke")
    assert smoke[0].startswith("smoke: ok — 20 steps on 256 samples")
    assert smoke[0].endswith(f"(0 compiled, {compiled} loaded from the cache)")


def _network(text, dtype="float32"):
    config = load_config("net.yaml", text=text + f"dtype: {dtype}\n")
    network = Network(config)
    x = np.zeros((2,) + tuple(config.input), dtype=network.dtype)
    return network, Optimizer(config.optimizer, network), x, np.zeros(2, dtype=np.int64)


# In a fresh process, so that the kernels' overloads are exactly what the warm-up asked
# Numba for (compiled or loaded): a kernel the recorder missed would show up here.
WARM_UP_SIGNATURES = """
import json, sys
import numpy as np
from convtrain.run import compiling
from convtrain.spec.config import load_config
from convtrain.model.network import Network
from convtrain.model.optim import Optimizer
config = load_config(sys.argv[1])
network = Network(config)
optimizer = Optimizer(config.optimizer, network)
x, y = np.zeros((2,) + tuple(config.input), dtype=network.dtype), np.zeros(2, dtype=np.int64)
planned = compiling.planned_calls(network, optimizer, x, y)
assert all(not kernel.overloads for kernel in compiling.kernel_dispatchers())  # none ran
compiling.warm_up(network, optimizer, x, y)
ready = sum(len(kernel.overloads) for kernel in compiling.kernel_dispatchers())
network.loss_and_gradients(x, y, input_grad=False)  # a training step and a validation pass
optimizer.step(0.1)
network.forward(x)
assert sum(len(k.overloads) for k in compiling.kernel_dispatchers()) == ready, "compiled late"
helpers = set().union(*(compiling._reach(k) - {k} for k in compiling.kernel_dispatchers()))
called = [(k.py_func.__name__, str(s)) for k in compiling.kernel_dispatchers()
          if k not in helpers for s in k.overloads]
print(json.dumps([sorted((k.py_func.__name__, str(tuple(s))) for k, s in planned),
                  sorted(called)]))
"""


def test_planned_calls_are_the_signatures_the_warm_up_calls(write_config, tmp_path):
    config = write_config(TWO_CONVS.replace("  - {type: relu}\n", "  - {type: sigmoid}\n")
                          .replace("  - {type: tanh}\n", "  - {type: tanh}\n"
                                   "  - {type: batchnorm}\n  - {type: dropout, rate: 0.1}\n"))
    result = subprocess.run([sys.executable, "-c", WARM_UP_SIGNATURES, config], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    planned, called = json.loads(result.stdout)
    assert planned == called
    names = {name for name, _ in planned}
    assert {"conv2d_forward", "conv2d_backward_input", "tanh_backward", "sigmoid_forward",
            "maxpool2x2_forward", "sgd_update", "batchnorm_normalise",
            "batchnorm_forward_eval", "backward_sums_per_sample", "batchnorm_backward_input",
            "moments_per_sample", "add_samples_in_order"} <= names


def test_planned_calls_leave_the_network_as_it_was():
    network, optimizer, x, y = _network(TWO_CONVS)
    before = {key: value.copy() for key, value in network.state().items()}
    kernels_before = set(compiling.kernel_dispatchers())
    compiling.planned_calls(network, optimizer, x, y)
    for key, value in network.state().items():
        np.testing.assert_array_equal(value, before[key])
    assert set(compiling.kernel_dispatchers()) == kernels_before  # the real ones are back


def test_kernels_sharing_a_function_compile_in_one_process_and_the_rest_balance():
    network, optimizer, x, y = _network(TWO_CONVS)
    calls = compiling.planned_calls(network, optimizer, x, y)
    shares = compiling._shares(calls, 3)
    assert sorted(calls, key=calls.index) == sorted((c for share in shares for c in share),
                                                    key=calls.index)
    owner = {call[0].py_func.__name__: index for index, share in enumerate(shares)
             for call in share}
    # both call im2col: one process writes its cache entry
    assert owner["conv2d_forward"] == owner["conv2d_weight_per_sample"]
    assert len(shares) == 3 and all(shares)
    seconds = [sum(compiling.COMPILE_S.get(d.py_func.__name__, compiling.UNLISTED_S)
                   for d, _ in share) for share in shares]
    assert max(seconds) - min(seconds) < max(compiling.COMPILE_S.values())
    assert [len(share) for share in compiling._shares(calls, 1)] == [len(calls)]


def test_compile_of_several_configs_says_what_they_share(write_config, tmp_path):
    first = write_config(small_cnn("first"), "first.yaml")
    second = write_config(TWO_CONVS, "second.yaml")
    result = CliRunner().invoke(main, ["compile", first, second, "--set", "seed=3"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    used = int(lines[0].split(": ")[1].split()[0])
    assert lines[0] == f"{first}: {used} kernel signatures"
    assert lines[1].startswith(f"{second}: {used + 3} kernel signatures ({used} also in the "
                               f"configs before)")  # conv2d_backward_input, tanh forward, backward
    assert lines[2].startswith("kernels ready in ") and lines[3].startswith("kernel cache: ")


def test_compile_includes_the_augmentation_of_a_source_of_bytes(write_config):
    plain = small_cnn("plain")
    augmented = plain.replace("limit: 400}", "limit: 400, augment: {pad_crop: 1, flip: true}}")
    assert augmented != plain
    first = write_config(plain, "plain.yaml")
    second = write_config(augmented, "augmented.yaml")
    result = CliRunner().invoke(main, ["compile", first, second])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    used = int(lines[0].split(": ")[1].split()[0])
    assert lines[1] == f"{second}: {used + 1} kernel signatures ({used} also in the configs " \
                       f"before)"  # crop_flip on uint8 images


def test_compile_refuses_a_cache_folder_it_cannot_write(write_config, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["XDG_CACHE_HOME"] = "/proc/no-cache-here"  # not even root can make a folder in /proc
    result = subprocess.run([sys.executable, "-m", "convtrain", "compile",
                             write_config(small_cnn("x"))], env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == ("error: /proc/no-cache-here/convtrain/kernels-" +
                             result.stderr.split("kernels-")[1].split(":")[0] +
                             ": cannot create or write the kernel cache folder, so nothing "
                             "compiled would be kept; set XDG_CACHE_HOME (or NUMBA_CACHE_DIR) "
                             "to a writable folder\n")


# A starter that starts a compiling helper on an empty cache, prints its pid and is killed.
STARTER = """import os, signal, sys
from convtrain.run import compiling
from convtrain.spec.config import load_config
from convtrain.model.network import Network
from convtrain.model.optim import Optimizer
import numpy as np
config = load_config(sys.argv[1])
network = Network(config)
x, y = np.zeros((2,) + tuple(config.input), dtype=network.dtype), np.zeros(2, dtype=np.int64)
calls = compiling.planned_calls(network, Optimizer(config.optimizer, network), x, y)
helper = compiling._start_compiling([(k.py_func.__module__, k.py_func.__name__, s)
                                     for k, s in calls])
print(helper.pid, flush=True)
signal.pause()
"""


def test_a_compiling_process_ends_when_the_process_that_started_it_does(write_config,
                                                                       tmp_path):
    """However the starter ends (a SIGKILL runs no cleanup), the helper stops within a
    moment instead of writing the cache on its own."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))  # empty: seconds of work
    starter = subprocess.Popen([sys.executable, "-c", STARTER, write_config(TWO_CONVS)],
                               env=env, stdout=subprocess.PIPE, text=True)
    helper = int(starter.stdout.readline())
    time.sleep(1.0)
    assert _running(helper)  # still compiling
    starter.kill()
    starter.wait()
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        if not _running(helper):
            return
        time.sleep(0.05)
    pytest.fail(f"the helper {helper} outlived its starter by 3 s")


def _running(pid):
    """Whether the process runs: gone, or a zombie its new parent has not reaped, is not."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_compile_checks_every_config_before_compiling(write_config):
    good = write_config(small_cnn("good"), "good.yaml")
    bad = write_config(small_cnn("bad").replace("relu", "rellu"), "bad.yaml")
    result = CliRunner().invoke(main, ["compile", good, bad])
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "did you mean 'relu'" in result.stderr
