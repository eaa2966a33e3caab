"""Nothing lost: SIGKILL at any moment and resume, resume that explains itself, write
failures, divergence that names its culprit and keeps the last good checkpoint."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner

from convtrain.run.checkpoint import read_checkpoint
from convtrain.cli import main
import faults
from nets import small_cnn

CONFIG = small_cnn("crash", seed=11, epochs=4, batch_size=16, log_every=1,
                   schedule="{type: step, every: 1, gamma: 0.7}",
                   extra="checkpoint: {every: 1}\n")


def _run(args):
    return CliRunner().invoke(main, args, catch_exceptions=False)


def _weights(folder, name="checkpoint-last.npz"):
    return read_checkpoint(str(folder / name))[0]


def _same(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.fixture
def config(write_config):
    return write_config(CONFIG, "crash.yaml")


def _steps_logged(metrics):
    try:
        with open(metrics) as handle:
            return sum('"event": "step"' in line for line in handle)
    except FileNotFoundError:
        return 0


def test_sigkill_at_a_random_step_then_resume_gives_the_same_weights(config, tmp_path,
                                                                    repo_root):
    """One kill at a random moment; `for i in $(seq 20); do pytest -k sigkill; done` runs
    it 20 times with 20 different moments."""
    reference = tmp_path / "reference"
    assert _run(["train", config, "--out", str(reference), "--quiet"]).exit_code == 0
    total_steps = _steps_logged(reference / "metrics.jsonl")  # 20 a epoch, 80 in all

    kill_after = random.randrange(1, total_steps - 1)
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "convtrain", "train", config, "--out",
                             str(killed), "--quiet"], cwd=repo_root,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while (proc.poll() is None and time.time() < deadline
           and (_steps_logged(killed / "metrics.jsonl") < kill_after
                or not (killed / "checkpoint-last.npz").exists())):
        time.sleep(0.001 * random.randrange(1, 20))
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, f"the run ended before the kill ({kill_after})"

    # A step takes about a millisecond and the polling above up to 20: on a busy machine
    # the kill can land after the last checkpoint, when there is nothing left to resume.
    if read_checkpoint(str(killed / "checkpoint-last.npz"))[2]["epochs_done"] < 4:
        result = _run(["train", config, "--resume", str(killed / "checkpoint-last.npz"),
                       "--quiet"])
        assert result.exit_code == 0, result.output
    assert _same(_weights(reference), _weights(killed)), f"killed after step {kill_after}"
    records = [json.loads(line) for line in open(killed / "metrics.jsonl")]
    steps = [r["step"] for r in records if r["event"] == "step"]
    assert steps == sorted(set(steps)) == list(range(1, total_steps + 1))
    assert [r["epoch"] for r in records if r["event"] == "epoch"] == [1, 2, 3, 4]
    assert not [name for name in os.listdir(killed) if name.startswith(".tmp-")]


def test_resume_names_the_settings_the_config_changes(config, tmp_path):
    out = tmp_path / "run"
    assert _run(["train", config, "--out", str(out), "--quiet", "--max-steps", "20"]
                ).exit_code == 0  # the end of epoch 1
    result = _run(["train", config, "--resume", str(out / "checkpoint-last.npz"),
                   "--max-steps", "21", "--set", "optimizer.lr=0.05",
                   "--set", "optimizer.momentum=0.5", "--set", "train.batch_size=20"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("resume:")]
    assert lines == ["resume: the config changes what the checkpoint was trained with: "
                     "optimizer.lr 0.1 -> 0.05; optimizer.momentum 0.9 -> 0.5; "
                     "train.batch_size 16 -> 20"]


def test_resume_refuses_a_batch_size_change_mid_epoch(config, tmp_path):
    out = tmp_path / "run"
    assert _run(["train", config, "--out", str(out), "--quiet", "--max-steps", "7"]
                ).exit_code == 0
    result = _run(["train", config, "--resume", str(out / "checkpoint-last.npz"),
                   "--set", "train.batch_size=32"])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert "after batch 7 of epoch 1 with train.batch_size 16" in result.stderr
    assert "would skip or repeat samples" in result.stderr


def test_a_failed_checkpoint_write_exits_2_and_keeps_the_previous_one(config, tmp_path,
                                                                      monkeypatch):
    out = tmp_path / "run"
    assert _run(["train", config, "--out", str(out), "--quiet", "--max-steps", "5"]
                ).exit_code == 0
    before = (out / "checkpoint-last.npz").read_bytes()

    faults.inject(monkeypatch, "ENOSPC", out, only="checkpoint-last.npz")
    result = _run(["train", config, "--resume", str(out / "checkpoint-last.npz"), "--quiet"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr.splitlines()[-1] == (
        f"error: {out / 'checkpoint-last.npz'}: cannot write: No space left on device; the "
        f"checkpoint there before, if any, is whole and unchanged")
    assert (out / "checkpoint-last.npz").read_bytes() == before
    assert not [name for name in os.listdir(out) if name.startswith(".tmp-")]


def test_divergence_names_step_quantity_and_layer_and_keeps_the_last_checkpoint(
        config, tmp_path):
    out = tmp_path / "run"
    result = _run(["train", config, "--out", str(out), "--quiet", "--set", "loss=mse",
                   "--set", "optimizer.lr=1000", "--set", "schedule.gamma=1"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: training diverged at step ")
    step = int(line.split("step ")[1].split(":")[0])
    quantity = line.split(": ", 2)[2]
    assert quantity.startswith(("the loss is", "the update of", "the weight")), line
    assert "layer" in line or "dense5" in line or "conv1" in line, line
    assert "last good checkpoint" in line
    params, _, meta = read_checkpoint(str(out / "checkpoint-last.npz"))
    assert meta["global_step"] == step - 1  # checkpoint.every 1: the step before
    assert all(np.all(np.isfinite(v)) for v in params.values())


def test_an_unwritable_run_folder_fails_before_training(config, tmp_path, monkeypatch):
    """Tests run as root here, so the folder is made unwritable at os.access."""
    out = tmp_path / "run"
    real_access = os.access
    monkeypatch.setattr("convtrain.run.runfolder.os.access", lambda path, mode: (
        False if str(path) == str(out) and mode == os.W_OK else real_access(path, mode)))
    result = _run(["train", config, "--out", str(out)])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert result.stderr == f"error: {out}: --out: run folder is not writable\n"
    assert not (out / "metrics.jsonl").exists()
