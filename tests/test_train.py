"""`convtrain train`, `eval`, `--resume`, `--smoke`, `summary`, `time`, `gradcheck`, `trace`
on real (small) runs."""

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from convtrain.run.checkpoint import read_checkpoint
from convtrain.cli import main
from nets import small_cnn

SMALL = small_cnn("small", seed=4, epochs=3, limit=500, log_every=4,
                  schedule="{type: step, every: 1, gamma: 0.5}")


def _run(args):
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    return result


def _records(folder):
    with open(os.path.join(folder, "metrics.jsonl")) as handle:
        return [json.loads(line) for line in handle]


@pytest.fixture
def small(write_config):
    return write_config(SMALL, "small.yaml")


def test_train_writes_metrics_with_per_layer_norms(small, tmp_path):
    out = tmp_path / "run"
    result = _run(["train", small, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(out)) == [".lock", "checkpoint-best.npz", "checkpoint-last.npz",
                                       "config.yaml", "metrics.jsonl"]
    records = _records(out)
    steps = [r for r in records if r["event"] == "step"]
    epochs = [r for r in records if r["event"] == "epoch"]
    assert len(epochs) == 3 and [e["epoch"] for e in epochs] == [1, 2, 3]
    assert steps and steps[0]["step"] == 4 and all(r["step"] % 4 == 0 for r in steps)
    conv = steps[0]["layers"]["conv1"]
    assert set(conv) == {"delta_norm", "grad_norm", "update_norm", "weight_norm"}
    assert all(v > 0 and np.isfinite(v) for v in conv.values())
    assert set(steps[0]["layers"]["relu2"]) == {"delta_norm"}
    # Plain momentum-free first steps aside, ΔW must be what the optimizer applied: lr-scaled.
    assert [e["epoch"] for e in epochs] == [1, 2, 3]
    assert {s["lr"] for s in steps if s["epoch"] == 2} == {0.05}
    for epoch in epochs:
        assert 0 <= epoch["val_acc"] <= 1 and epoch["images_per_s"] > 0
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"]
    assert "δ norm" in result.stdout and "epoch 3/3" in result.stdout
    resolved = (out / "config.yaml").read_text()
    assert "batch_size: 32" in resolved and "momentum: 0.9" in resolved


def test_log_timing_adds_per_layer_milliseconds(small, tmp_path):
    out = tmp_path / "run"
    result = _run(["train", small, "--out", str(out), "--epochs", "1", "--quiet",
                   "--set", "log.timing=true"])
    assert result.exit_code == 0
    step = next(r for r in _records(out) if r["event"] == "step")
    for name in ("conv1", "relu2", "maxpool3", "flatten4", "dense5"):
        assert step["layers"][name]["forward_ms"] >= 0
        assert step["layers"][name]["backward_ms"] >= 0
    assert "forward_ms" not in next(r for r in _records(tmp_path / "run") if r["event"] == "epoch")


def test_resume_continues_bit_identically_and_eval_reproduces_best(small, tmp_path):
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert _run(["train", small, "--out", str(full), "--quiet"]).exit_code == 0
    # 13 train batches per epoch (400 samples / 32): stop in the middle of epoch 2.
    assert _run(["train", small, "--out", str(cut), "--max-steps", "17", "--quiet"]).exit_code == 0
    meta = read_checkpoint(str(cut / "checkpoint-last.npz"))[2]
    assert (meta["epochs_done"], meta["step_in_epoch"]) == (1, 4)
    result = _run(["train", small, "--resume", str(cut / "checkpoint-last.npz"), "--quiet"])
    assert result.exit_code == 0, result.output
    a, _, meta_a = read_checkpoint(str(full / "checkpoint-last.npz"))
    b, _, meta_b = read_checkpoint(str(cut / "checkpoint-last.npz"))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert meta_a["global_step"] == meta_b["global_step"] == 39
    epochs_full = [r for r in _records(full) if r["event"] == "epoch"]
    epochs_cut = [r for r in _records(cut) if r["event"] == "epoch"]
    for x, y in zip(epochs_full, epochs_cut):
        assert (x["train_loss"], x["val_acc"]) == (y["train_loss"], y["val_acc"])

    best = max(e["val_acc"] for e in epochs_full)
    result = _run(["eval", small, "--checkpoint", str(full / "checkpoint-best.npz"),
                   "--format", "json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["accuracy"] == best


def test_resume_refuses_other_architecture_and_finished_runs(small, write_config, tmp_path):
    out = tmp_path / "run"
    _run(["train", small, "--out", str(out), "--quiet", "--epochs", "1"])
    other = write_config(SMALL.replace("filters: 4", "filters: 5"), "other.yaml")
    result = _run(["train", other, "--resume", str(out / "checkpoint-last.npz"), "--out",
                   str(tmp_path / "new")])
    assert result.exit_code == 2 and "another architecture" in result.stderr
    assert not (tmp_path / "new").exists()
    result = _run(["train", small, "--epochs", "1", "--resume", str(out / "checkpoint-last.npz")])
    assert result.exit_code == 2 and "nothing to do" in result.stderr


def test_threads_1_and_2_give_identical_weights(small, tmp_path):
    for threads in ("1", "2"):
        result = _run(["train", small, "--out", str(tmp_path / threads), "--threads", threads,
                       "--quiet", "--epochs", "1"])
        assert result.exit_code == 0
    a = read_checkpoint(str(tmp_path / "1" / "checkpoint-last.npz"))[0]
    b = read_checkpoint(str(tmp_path / "2" / "checkpoint-last.npz"))[0]
    assert all(np.array_equal(a[k], b[k]) for k in a)
    # The logged numbers too (all but the clock: seconds, images/s, compile time).
    clock = {"seconds", "images_per_s"}
    runs = [[{k: v for k, v in r.items() if k not in clock} for r in _records(tmp_path / t)
             if r["event"] != "compile"] for t in ("1", "2")]
    assert runs[0] == runs[1] and len(runs[0]) == 4  # 3 step records, 1 epoch record


def test_smoke_passes_on_a_sane_config_and_fails_on_a_diverging_one(small, write_config):
    result = _run(["train", small, "--smoke"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("smoke: ok") and result.stdout.count("\n") == 1
    wild = write_config(SMALL.replace("lr: 0.1", "lr: 1.0e+6"), "wild.yaml")
    result = _run(["train", wild, "--smoke"])
    assert result.exit_code == 1 and "smoke: FAILED" in result.stdout


def small_path(write_config):
    return write_config(SMALL, "small.yaml")


def test_divergence_stops_with_exit_1_naming_the_step(write_config, tmp_path):
    out = tmp_path / "run"
    result = _run(["train", small_path(write_config), "--out", str(out), "--quiet",
                   "--set", "loss=mse", "--set", "optimizer.lr=1000", "--set", "schedule.gamma=1",
                   "--set", "train.epochs=20"])
    assert result.exit_code == 1
    assert "diverged at step" in result.stderr and "Traceback" not in result.output
    assert "no checkpoint was written before it" in result.stderr  # step 9 of 13 in epoch 1


def test_summary_counts_lenet5(repo_root):
    result = _run(["summary", os.path.join(repo_root, "configs", "lenet5-mnist.yaml")])
    assert result.exit_code == 0
    assert "61,706" in result.stdout and "(16, 5, 5)" in result.stdout
    assert "conv2       conv2d      (16, 10, 10)           2,416        480.00k" in result.stdout


def test_time_reports_every_layer(small):
    result = _run(["time", small, "--iters", "2", "--batch", "8", "--format", "json"])
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert [row["name"] for row in doc["layers"]] == ["conv1", "relu2", "maxpool3", "flatten4",
                                                      "dense5"]
    assert doc["images_per_s"] > 0 and all(row["forward_ms"] >= 0 for row in doc["layers"])


@pytest.mark.parametrize("config", ["seed-example.yaml", "digits.yaml"])
def test_gradcheck_command_passes_on_shipped_configs(repo_root, config):
    result = _run(["gradcheck", os.path.join(repo_root, "configs", config), "--max-entries", "8"])
    assert result.exit_code == 0, result.output
    assert "all gradients match" in result.stdout


TRACE_ANY = """input: [1, 8, 8]
layers:
  - {type: conv2d, filters: 3, kernel: [3, 2], stride: 2, padding: 1}
  - {type: leaky_relu}
  - {type: conv2d, filters: 2, kernel: 2, padding: same, op: convolution}
  - {type: avgpool, size: 2, stride: 1}
  - {type: flatten}
  - {type: dense, units: 10}
loss: hinge
trace: {target: 1}
data:
  train: {format: builtin, name: digits, limit: 3}
"""


def test_trace_works_for_any_config(write_config):
    from convtrain.spec.config import load_config
    from convtrain.model.network import Network

    path = write_config(TRACE_ANY)
    result = _run(["trace", path, "--format", "json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    steps = {(s["layer"], s["what"]): s for s in doc["steps"]}
    assert np.asarray(steps[("conv1", "kernel_grad")]["value"]).shape == (3, 1, 3, 2)
    assert np.asarray(steps[("conv1", "output")]["value"]).shape == (3, 4, 5)
    assert np.asarray(steps[("conv1", "input_delta")]["value"]).shape == (1, 8, 8)
    assert ("dense6", "bias_new") in steps and ("avgpool4", "input_delta") in steps
    # The exact trace is the network's own gradient for that sample and target.
    config = load_config(path)
    network = Network(config, dtype="float64")
    x = np.asarray(steps[("conv1", "input")]["value"])[None]
    network.loss_and_gradients(x, np.array([1]))
    np.testing.assert_allclose(steps[("conv3", "kernel_grad")]["value"],
                               network.layers[2].grads["weight"], rtol=1e-12)

    text = _run(["trace", path, "--recipe", "textbook"]).stdout
    assert "no rule for stride > 1" in text
    doc = json.loads(_run(["trace", path, "--recipe", "textbook", "--format", "json"]).stdout)
    steps = {(s["layer"], s["what"]): s for s in doc["steps"]}
    assert steps[("conv3", "kernel_grad")]["differs"]
    assert not steps[("dense6", "kernel_grad")]["differs"]


def test_textbook_delta_rule_is_exact_for_correlation(write_config):
    path = write_config("input: [1, 5, 5]\nlayers:\n  - {type: conv2d, filters: 2, kernel: 2}\n"
                        "  - {type: conv2d, filters: 1, kernel: 2, op: correlation}\n"
                        "trace:\n  input: " + json.dumps(np.linspace(-1, 1, 25).reshape(1, 5, 5)
                                                          .tolist()) +
                        "\n  delta: " + json.dumps(np.linspace(-.5, .5, 9).reshape(1, 3, 3)
                                                   .tolist()) + "\n")
    doc = json.loads(_run(["trace", path, "--recipe", "textbook", "--format", "json"]).stdout)
    steps = {(s["layer"], s["what"]): s for s in doc["steps"]}
    assert not steps[("conv2", "input_delta")]["differs"]
    assert steps[("conv2", "kernel_grad")]["differs"]


def test_trace_summarises_big_arrays_unless_full(repo_root):
    config = os.path.join(repo_root, "configs", "digits.yaml")
    args = ["trace", config, "--set", "layers.0.padding=6"]
    text = _run(args).stdout
    assert "(--full prints it)" in text
    full = _run(args + ["--full"]).stdout
    assert "(--full prints it)" not in full and len(full) > len(text)
