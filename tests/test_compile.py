"""`convtrain compile`: every kernel a config's training uses, compiled into the cache, so
that the next run (a CI smoke test, say) loads them all and compiles nothing."""

import os
import subprocess
import sys

from click.testing import CliRunner

from convtrain.cli import main
from nets import small_cnn


def _convtrain(args, cache, cwd):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache))
    return subprocess.run([sys.executable, "-m", "convtrain"] + args, cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_compile_fills_the_cache_that_the_next_smoke_run_loads(write_config, tmp_path,
                                                               repo_root):
    config = write_config(small_cnn("cached"))
    cache = tmp_path / "kernels"
    first = _convtrain(["compile", config], cache, repo_root)
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert lines[-1] == f"kernel cache: {cache}"
    compiled = int(lines[0].split("(")[1].split(" compiled")[0])
    assert compiled > 0 and lines[0].endswith(f"({compiled} compiled, 0 loaded from the cache)")
    smoke = _convtrain(["train", config, "--smoke"], cache, repo_root)
    assert smoke.returncode == 0, smoke.stderr
    line = smoke.stdout.strip()
    assert line.startswith("smoke: ok — 20 steps on 256 samples") and "; steps " in line
    assert "(0 compiled, " in line and not line.endswith("(0 compiled, 0 loaded from the cache)")


def test_compile_checks_every_config_before_compiling(write_config):
    good = write_config(small_cnn("good"), "good.yaml")
    bad = write_config(small_cnn("bad").replace("relu", "rellu"), "bad.yaml")
    result = CliRunner().invoke(main, ["compile", good, bad])
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "did you mean 'relu'" in result.stderr
