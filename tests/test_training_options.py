"""The training options people reach for on day one: early stopping, warmup, AdamW and
Nesterov, gradient clipping, --init-from, trace/gradcheck --checkpoint, eval's confusion
matrix, TensorBoard event files — each resumable bit-identically."""

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from convtrain.run.checkpoint import read_checkpoint
from convtrain.cli import main
from convtrain.spec.config import load_config
from convtrain.kernels.elementwise import adam_update, sgd_update
from convtrain.model.network import Network
from convtrain.model.optim import clip_gradients
from nets import small_cnn

BASE = small_cnn("opts", seed=3, epochs=3, log_every=1)

# 320 training samples / 32 = 10 steps an epoch.
OPTIONS = {
    "early_stopping": ["train.early_stopping={metric: val_acc, patience: 1, min_delta: 0.5}",
                       "train.epochs=6"],
    "warmup": ["schedule={type: cosine, warmup_steps: 15}"],
    "adamw": ["optimizer={type: adamw, lr: 0.003, weight_decay: 0.1}"],
    "nesterov": ["optimizer.nesterov=true"],
    "clip_grad_norm": ["train.clip_grad_norm=0.5"],
    "init_from": [],
}


def _run(args):
    return CliRunner().invoke(main, args, catch_exceptions=False)


def _records(folder):
    with open(os.path.join(folder, "metrics.jsonl")) as handle:
        return [json.loads(line) for line in handle]


def _without_clock(records):
    clock = {"seconds", "images_per_s", "checkpoint", "changed"}
    return [{k: v for k, v in r.items() if k not in clock} for r in records
            if r["event"] not in ("compile", "resume")]


@pytest.fixture
def base(write_config):
    return write_config(BASE, "opts.yaml")


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A finished run of BASE to start other runs from."""
    folder = tmp_path_factory.mktemp("pretrained")
    (folder / "opts.yaml").write_text(BASE)
    assert _run(["train", str(folder / "opts.yaml"), "--out", str(folder / "run"), "--quiet",
                 "--epochs", "1"]).exit_code == 0
    return folder / "run" / "checkpoint-last.npz"


@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_each_option_resumes_bit_identically(option, base, pretrained, tmp_path):
    flags = [f for s in OPTIONS[option] for f in ("--set", s)]
    if option == "init_from":
        flags = ["--init-from", str(pretrained)]
    full, cut = tmp_path / "full", tmp_path / "cut"
    result = _run(["train", base, "--out", str(full), "--quiet"] + flags)
    assert result.exit_code == 0, result.output
    assert _run(["train", base, "--out", str(cut), "--quiet", "--max-steps", "13"] + flags
                ).exit_code == 0
    resume_flags = [] if option == "init_from" else flags
    result = _run(["train", base, "--resume", str(cut / "checkpoint-last.npz"), "--quiet"]
                  + resume_flags)
    assert result.exit_code == 0, result.output
    for name in ("checkpoint-last.npz", "checkpoint-best.npz"):
        a, opt_a, meta_a = read_checkpoint(str(full / name))
        b, opt_b, meta_b = read_checkpoint(str(cut / name))
        assert all(np.array_equal(a[k], b[k]) for k in a), name
        assert all(np.array_equal(opt_a[k], opt_b[k]) for k in opt_a), name
        assert meta_a["global_step"] == meta_b["global_step"]
    assert _without_clock(_records(full)) == _without_clock(_records(cut))
    if option == "early_stopping":
        assert [r["epoch"] for r in _records(full) if r["event"] == "early_stop"] == [2]


def test_early_stopping_ends_the_run_and_keeps_the_best(base, tmp_path):
    out = tmp_path / "run"
    result = _run(["train", base, "--out", str(out), "--quiet", "--set", "train.epochs=30",
                   "--set", "train.early_stopping={metric: val_loss, patience: 2}",
                   "--set", "optimizer.lr=0.3"])
    assert result.exit_code == 0, result.output
    records = _records(out)
    epochs = [r for r in records if r["event"] == "epoch"]
    stop = next(r for r in records if r["event"] == "early_stop")
    losses = [e["val_loss"] for e in epochs]
    best = int(np.argmin(losses)) + 1
    assert len(epochs) < 30 and stop["epoch"] == len(epochs) == best + 2
    assert stop["best_epoch"] == best
    assert read_checkpoint(str(out / "checkpoint-best.npz"))[2]["best"]["epoch"] == best
    last_line = result.stdout.strip().splitlines()[-1]
    assert last_line.startswith(f"early stopping after epoch {best + 2}: val_loss has not "
                                f"improved by more than 0 for 2 epochs"), last_line
    assert f"checkpoint-best.npz holds epoch {best}" in last_line
    again = _run(["train", base, "--resume", str(out / "checkpoint-last.npz"), "--set",
                  "train.epochs=30", "--set", "train.early_stopping={metric: val_loss, "
                                              "patience: 2}", "--set", "optimizer.lr=0.3"])
    assert again.exit_code == 2 and "stopped early" in again.stderr


def test_early_stopping_needs_validation_data(write_config):
    config = write_config(BASE.replace("  val: {split: 0.2}\n", "").replace(
        "train: {epochs: 3, batch_size: 32}", "train: {epochs: 3, early_stopping: {patience: 2}}"))
    result = _run(["summary", config])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert "train.early_stopping.metric: early stopping watches val_loss" in result.stderr
    assert ":11:" in result.stderr  # the line of train:


def test_warmup_ramps_the_learning_rate_per_step(base, tmp_path):
    out = tmp_path / "run"
    assert _run(["train", base, "--out", str(out), "--quiet", "--epochs", "2", "--set",
                 "schedule.warmup_steps=4"]).exit_code == 0
    lrs = [r["lr"] for r in _records(out) if r["event"] == "step"]
    assert lrs[:6] == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1, 0.1], rel=1e-15)


def test_step_milestones_decay_after_those_epochs_as_multisteplr(base, tmp_path):
    out = tmp_path / "run"
    assert _run(["train", base, "--out", str(out), "--quiet", "--epochs", "4", "--set",
                 "schedule={type: step, milestones: [1, 3], gamma: 0.5}"]).exit_code == 0
    lrs = {r["epoch"]: r["lr"] for r in _records(out) if r["event"] == "step"}
    assert lrs == pytest.approx({1: 0.1, 2: 0.05, 3: 0.05, 4: 0.025}, rel=1e-15)


@pytest.mark.parametrize("milestones", ["[]", "[3, 3]", "4", "[0, 2]"])
def test_milestones_that_are_not_increasing_epochs_are_one_line(base, milestones):
    result = _run(["summary", base, "--set",
                   f"schedule={{type: step, milestones: {milestones}}}"])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert "schedule.milestones: must be a list of increasing epoch numbers" in result.stderr


def test_sgd_nesterov_and_adamw_kernels_follow_pytorchs_formulas():
    rng = np.random.default_rng(0)
    w0, grads = rng.standard_normal(7), rng.standard_normal((3, 7))
    lr, mu, wd = 0.1, 0.9, 0.01
    # torch.optim.SGD(nesterov=True): g += wd*w; v = mu*v + g; w -= lr*(g + mu*v)
    w, v, update = w0.copy(), np.zeros(7), np.empty(7)
    ref_w, ref_v = w0.copy(), np.zeros(7)
    for g in grads:
        sgd_update(w, g, v, lr, mu, True, wd, update)
        d = g + wd * ref_w
        ref_v = mu * ref_v + d
        ref_w = ref_w - lr * (d + mu * ref_v)
        np.testing.assert_allclose(w, ref_w, rtol=1e-13)
    # torch.optim.AdamW: w *= 1 - lr*wd; m, v as Adam's on g alone; w -= lr*m̂/(√v̂ + eps)
    b1, b2, eps = 0.9, 0.999, 1e-8
    w, m, v = w0.copy(), np.zeros(7), np.zeros(7)
    ref_w, ref_m, ref_v = w0.copy(), np.zeros(7), np.zeros(7)
    for step, g in enumerate(grads, start=1):
        before = w.copy()
        adam_update(w, g, m, v, lr, b1, b2, eps, wd, True, step, update)
        ref_w = ref_w * (1 - lr * wd)
        ref_m = b1 * ref_m + (1 - b1) * g
        ref_v = b2 * ref_v + (1 - b2) * g * g
        ref_w = ref_w - lr * (ref_m / (1 - b1 ** step)) / (np.sqrt(ref_v / (1 - b2 ** step)) + eps)
        np.testing.assert_allclose(w, ref_w, rtol=1e-13)
        np.testing.assert_array_equal(update, w - before)


def test_nesterov_without_momentum_is_a_config_error(write_config):
    config = write_config(BASE.replace("momentum: 0.9}", "momentum: 0, nesterov: true}"))
    result = _run(["summary", config])
    assert result.exit_code == 2 and "optimizer.nesterov: Nesterov momentum needs a " \
                                     "momentum above 0" in result.stderr


def test_clipping_scales_every_gradient_to_the_max_norm_and_logs_the_norm(base, tmp_path):
    config = load_config(base)
    network = Network(config, dtype="float64")
    x = np.random.default_rng(1).standard_normal((4, 1, 8, 8))
    network.loss_and_gradients(x, np.arange(4))
    before = {f"{layer.name}.{key}": layer.grads[key].copy() for layer, key in
              network.parameters()}
    total = np.sqrt(sum(np.sum(g ** 2) for g in before.values()))
    assert clip_gradients(network, total / 4) == pytest.approx(total, rel=1e-12)
    after = {f"{layer.name}.{key}": layer.grads[key] for layer, key in network.parameters()}
    assert np.sqrt(sum(np.sum(g ** 2) for g in after.values())) == pytest.approx(total / 4,
                                                                                rel=1e-5)
    for name in before:
        np.testing.assert_allclose(after[name], before[name] / 4, rtol=1e-5)
    assert clip_gradients(network, total) < total  # under the limit: left alone
    np.testing.assert_array_equal(after["dense5.weight"], network.layers[4].grads["weight"])

    out = tmp_path / "run"
    assert _run(["train", base, "--out", str(out), "--quiet", "--epochs", "1", "--set",
                 "train.clip_grad_norm=0.01"]).exit_code == 0
    steps = [r for r in _records(out) if r["event"] == "step"]
    assert all(r["grad_norm_total"] > 0.01 for r in steps)


def test_init_from_loads_the_weights_and_skips_a_new_head(base, write_config, pretrained,
                                                          tmp_path):
    weights = read_checkpoint(str(pretrained))[0]
    assert _run(["train", base, "--out", str(tmp_path / "init"), "--quiet", "--max-steps", "1",
                 "--set", "optimizer.lr=1e-12", "--set", "optimizer.momentum=0",
                 "--init-from", str(pretrained)]).exit_code == 0
    started = read_checkpoint(str(tmp_path / "init" / "checkpoint-last.npz"))
    for key, value in weights.items():
        np.testing.assert_allclose(started[0][key], value, rtol=1e-6)  # one step of lr 1e-12
    assert started[2]["optimizer_steps"] == 1  # a fresh optimizer
    record = next(r for r in _records(tmp_path / "init") if r["event"] == "init_from")
    assert record == {"event": "init_from", "checkpoint": str(pretrained), "skipped": []}

    five = write_config(BASE.replace("units: 10}", "units: 10, name: head}").replace(
        "filters: 4", "filters: 4, name: body"), "five.yaml")
    result = _run(["train", five, "--out", str(tmp_path / "bad"), "--init-from",
                   str(pretrained)])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.output
    assert "--init-from-skip" in result.stderr and not (tmp_path / "bad").exists()

    new_head = write_config(BASE.replace("units: 10}", "units: 10, init: zeros}"), "head.yaml")
    result = _run(["train", new_head, "--out", str(tmp_path / "head"), "--quiet",
                   "--max-steps", "1", "--set", "optimizer.lr=1e-12",
                   "--init-from", str(pretrained), "--init-from-skip", "dense5"])
    assert result.exit_code == 0, result.output
    head = read_checkpoint(str(tmp_path / "head" / "checkpoint-last.npz"))[0]
    np.testing.assert_allclose(head["conv1.weight"], weights["conv1.weight"], rtol=1e-6)
    assert np.abs(head["dense5.weight"]).max() < 1e-9  # left at init (zeros)
    result = _run(["train", base, "--init-from", str(pretrained), "--init-from-skip", "dense"])
    assert result.exit_code == 2 and "did you mean 'dense5'" in result.stderr


def test_trace_and_gradcheck_take_a_checkpoint(base, pretrained):
    weights = read_checkpoint(str(pretrained))[0]
    result = _run(["trace", base, "--checkpoint", str(pretrained), "--format", "json"])
    assert result.exit_code == 0, result.output
    steps = json.loads(result.stdout)["steps"]
    first = next(s for s in steps if s["layer"] == "conv1" and s["what"] == "output")
    untrained = json.loads(_run(["trace", base, "--format", "json"]).stdout)["steps"]
    assert first["value"] != next(s for s in untrained if s["layer"] == "conv1"
                                  and s["what"] == "output")["value"]
    kernel_new = next(s for s in steps if s["layer"] == "conv1" and s["what"] == "kernel_new")
    grad = next(s for s in steps if s["layer"] == "conv1" and s["what"] == "kernel_grad")
    np.testing.assert_allclose(np.array(kernel_new["value"]),
                               weights["conv1.weight"] - 0.1 * np.array(grad["value"]),
                               rtol=1e-6, atol=1e-9)
    result = _run(["gradcheck", base, "--checkpoint", str(pretrained), "--format", "json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["passed"] and doc["checkpoint"] == str(pretrained) and doc["biases_nudged"] == []


def test_eval_prints_the_confusion_matrix_and_per_class_accuracy(base, pretrained):
    result = _run(["eval", base, "--checkpoint", str(pretrained), "--format", "json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    matrix = np.array(doc["confusion_matrix"])
    assert matrix.shape == (10, 10) and matrix.sum() == doc["samples"] == 80
    assert np.trace(matrix) / matrix.sum() == doc["accuracy"]
    for row in doc["per_class"]:
        assert row["samples"] == matrix[row["class"]].sum()
        assert row["correct"] == matrix[row["class"], row["class"]]
    text = _run(["eval", base, "--checkpoint", str(pretrained)]).stdout
    assert "confusion matrix (rows: true class, columns: predicted class)" in text
    assert text.count("\n") == 1 + 11 + 1 + 11


def test_tensorboard_event_files_hold_the_logged_numbers(base, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    result = _run(["train", base, "--out", str(out), "--quiet", "--epochs", "2", "--set",
                   "log.tensorboard=true", "--set", "log.every=3"])
    assert result.exit_code == 0, result.output
    events = EventAccumulator(str(out))
    events.Reload()
    records = _records(out)
    steps = [r for r in records if r["event"] == "step"]
    logged = [(e.step, e.value) for e in events.Scalars("train/loss")]
    assert logged == [(r["step"], np.float32(r["loss"])) for r in steps]
    delta = [e.value for e in events.Scalars("layers/conv1/delta_norm")]
    assert delta == [np.float32(r["layers"]["conv1"]["delta_norm"]) for r in steps]
    epochs = [r for r in records if r["event"] == "epoch"]
    assert [(e.step, e.value) for e in events.Scalars("epoch/val_acc")] == [
        (r["step"], np.float32(r["val_acc"])) for r in epochs]


def test_tensorboard_without_tensorboardx_is_one_line(base, monkeypatch, tmp_path):
    import builtins

    real_import = builtins.__import__

    def no_tensorboardx(name, *args, **kwargs):
        if name == "tensorboardX":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboardx)
    result = _run(["train", base, "--out", str(tmp_path / "run"), "--set",
                   "log.tensorboard=true"])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert " -m pip install tensorboardX" in result.stderr
    assert not (tmp_path / "run").exists()
    smoke = _run(["train", base, "--smoke", "--set", "log.tensorboard=true"])
    assert smoke.exit_code == 0, smoke.output  # a smoke run writes no event files
