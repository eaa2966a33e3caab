"""batchnorm, residual blocks, globalavgpool and dropout: gradients against central
differences in float64 through Network.loss_and_gradients (training mode: batchnorm's
gradient goes through the batch statistics), batchnorm's statistics against NumPy, and
what a network does in training and in eval mode."""

import numpy as np
import pytest

from convtrain.spec.config import load_config
from convtrain.model.gradcheck import TOLERANCE, check_gradients
from convtrain.model.network import Network

CONV = "{type: conv2d, filters: 3, kernel: 3, padding: 1}"
BN3 = "{type: batchnorm, gamma: [1.5, -0.7, 0.9], beta: [0.2, -0.4, 0.1]}"

CASES = {
    "batchnorm-after-conv": [CONV, BN3, "{type: tanh}"],
    "batchnorm-after-dense": ["{type: flatten}", "{type: dense, units: 3}", BN3,
                              "{type: tanh}"],
    "batchnorm-no-affine": [CONV, "{type: batchnorm, affine: false}", "{type: tanh}"],
    "residual-identity": [CONV, "{type: tanh}",
                          "{type: residual, body: [" + CONV + ", " + BN3 + ", {type: tanh}, "
                          + CONV + "]}"],
    "residual-projection": [
        CONV, "{type: residual, name: res, body: [{type: conv2d, name: c1, filters: 4, "
              "kernel: 3, stride: 2, padding: 1}, {type: batchnorm, name: bn1}, {type: tanh}], "
              "shortcut: [{type: conv2d, name: proj, filters: 4, kernel: 1, stride: 2}, "
              "{type: batchnorm, name: pbn}]}", "{type: tanh}"],
    "residual-nested": [
        CONV, "{type: residual, name: outer, body: [" + CONV + ", {type: tanh}, "
              "{type: residual, name: inner, body: [" + CONV + ", {type: sigmoid}]}]}"],
    "globalavgpool": [CONV, "{type: tanh}", "{type: globalavgpool}"],
    "dropout": [CONV, "{type: tanh}", "{type: dropout, rate: 0.3}"],
}


def _network(layers, input_shape=(2, 6, 5), classes=4, dtype="float64"):
    text = (f"input: {list(input_shape)}\nseed: 3\nlayers:\n"
            + "".join(f"  - {layer}\n" for layer in layers)
            + f"  - {{type: flatten}}\n  - {{type: dense, units: {classes}}}\n")
    return Network(load_config("modern.yaml", text=text), dtype=dtype)


def _data(network, batch, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch,) + network.config.input)
    return x, rng.integers(0, network.config.num_outputs, size=batch)


@pytest.mark.parametrize("case", CASES)
def test_gradients(case):
    network = _network(CASES[case])
    network.mode.step = 7  # dropout's mask is fixed for a step
    rows = check_gradients(network, *_data(network, batch=4))
    layers = {row.layer for row in rows}
    assert "input" in layers
    for row in rows:
        assert row.checked - row.kinks > 0, f"{row.layer}.{row.argument}: nothing checked"
        assert row.max_rel_err < TOLERANCE, row.describe()
    if "residual" in case:
        assert any("." in name for name in layers)  # nested layers' parameters were checked


def test_batchnorm_statistics_and_running_averages_match_numpy():
    network = _network([CONV, "{type: batchnorm, momentum: 0.25, eps: 0.001}"], dtype="float64")
    conv, norm = network.layers[0], network.layers[1]
    x, _ = _data(network, batch=5)
    a = conv.forward(x)
    network.mode.training = True
    out = norm.forward(a)
    mean = a.mean(axis=(0, 2, 3))
    var = a.var(axis=(0, 2, 3))  # biased, for normalising
    expected = (a - mean[None, :, None, None]) / np.sqrt(var[None, :, None, None] + 0.001)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)
    count = 5 * a.shape[2] * a.shape[3]
    np.testing.assert_allclose(norm.buffers["running_mean"], 0.25 * mean, rtol=1e-12)
    np.testing.assert_allclose(norm.buffers["running_var"],
                               0.75 * 1.0 + 0.25 * var * count / (count - 1), rtol=1e-12)
    network.mode.training = False  # eval: the running statistics, not the batch's
    out = norm.forward(a)
    running_mean, running_var = norm.buffers["running_mean"], norm.buffers["running_var"]
    expected = ((a - running_mean[None, :, None, None])
                / np.sqrt(running_var[None, :, None, None] + 0.001))
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)


def test_dropout_is_off_outside_training_and_its_mask_depends_on_the_step():
    network = _network(["{type: flatten}", "{type: dropout, rate: 0.5}"], dtype="float32")
    x, _ = _data(network, batch=8)
    assert np.array_equal(network.forward(x), network.forward(x))  # eval: deterministic
    dropout = network.layers[1]
    network.mode.step = 3
    first, again = dropout.mask((8, 60)), dropout.mask((8, 60))
    network.mode.step = 4
    assert np.array_equal(first, again) and not np.array_equal(first, dropout.mask((8, 60)))
    assert set(np.unique(first)) == {0.0, 2.0} and 0.35 < np.mean(first == 0) < 0.65


def test_evaluation_leaves_the_running_statistics_alone():
    network = _network([CONV, BN3])
    x, labels = _data(network, batch=4)
    before = {key: value.copy() for key, value in network.state().items()}
    network.forward(x)
    for key, value in network.state().items():
        np.testing.assert_array_equal(value, before[key])
    network.loss_and_gradients(x, labels)
    assert not np.array_equal(network.state()["bn2.running_mean"], before["bn2.running_mean"])


def test_a_last_batch_of_one_sample_is_refused_before_training(write_config, tmp_path):
    from click.testing import CliRunner

    from convtrain.cli import main

    config = write_config("input: [1, 8, 8]\nlayers:\n  - {type: flatten}\n"
                          "  - {type: dense, units: 6}\n  - {type: batchnorm}\n"
                          "  - {type: dense, units: 10}\ntrain: {batch_size: 32}\n"
                          "data:\n  train: {format: builtin, name: digits, scale: 16, limit: 33}\n")
    result = CliRunner().invoke(main, ["train", config, "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"error: {config}:7: train.batch_size: the last batch of every "
                                    f"epoch would hold one sample (33 training samples in "
                                    f"batches of 32)")
    assert not (tmp_path / "run").exists()


RESNET = """name: tiny-resnet
seed: 5
input: [1, 8, 8]
layers:
  - {type: conv2d, name: stem, filters: 4, kernel: 3, padding: same, bias: false}
  - {type: batchnorm}
  - {type: relu}
  - type: residual
    name: res1
    body:
      - {type: conv2d, name: c1, filters: 4, kernel: 3, padding: 1, bias: false,
         algorithm: winograd}
      - {type: batchnorm, name: bn1}
      - {type: relu}
      - {type: conv2d, name: c2, filters: 4, kernel: 3, padding: 1, bias: false,
         algorithm: winograd}
      - {type: batchnorm, name: bn2}
  - {type: relu}
  - type: residual
    name: res2
    body:
      - {type: conv2d, name: c1, filters: 6, kernel: 3, stride: 2, padding: 1, bias: false}
      - {type: batchnorm, name: bn1}
    shortcut:
      - {type: conv2d, name: proj, filters: 6, kernel: 1, stride: 2, bias: false}
      - {type: batchnorm, name: projbn}
  - {type: relu}
  - {type: globalavgpool}
  - {type: dropout, rate: 0.2}
  - {type: dense, units: 10}
optimizer: {type: sgd, lr: 0.1, momentum: 0.9}
train: {epochs: 2, batch_size: 32}
data:
  train: {format: builtin, name: digits, scale: 16, limit: 400}
  val: {split: 0.2}
log: {every: 4}
"""


def _train(args):
    from click.testing import CliRunner

    from convtrain.cli import main

    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def _checkpoint(folder):
    from convtrain.run.checkpoint import read_checkpoint

    return read_checkpoint(str(folder / "checkpoint-last.npz"))


def _epochs(folder):
    import json

    with open(folder / "metrics.jsonl") as handle:
        records = [json.loads(line) for line in handle]
    return [(r["train_loss"], r["val_loss"], r["val_acc"]) for r in records
            if r["event"] == "epoch"]


def test_resume_mid_epoch_is_bit_identical_with_batchnorm_and_dropout(write_config, tmp_path):
    config = write_config(RESNET)
    full, cut = tmp_path / "full", tmp_path / "cut"
    _train(["train", config, "--out", str(full), "--quiet"])
    _train(["train", config, "--out", str(cut), "--quiet", "--max-steps", "13"])
    assert _checkpoint(cut)[2]["step_in_epoch"] == 3  # 10 batches an epoch: inside epoch 2
    _train(["train", config, "--resume", str(cut / "checkpoint-last.npz"), "--quiet"])
    a, b = _checkpoint(full)[0], _checkpoint(cut)[0]
    assert "res2.projbn.running_var" in a and set(a) == set(b)
    assert all(np.array_equal(a[key], b[key]) for key in a)
    assert _epochs(full) == _epochs(cut)
    # eval of the last checkpoint: the last epoch's validation accuracy, exactly
    result = _train(["eval", config, "--checkpoint", str(full / "checkpoint-last.npz"),
                     "--format", "json"])
    import json

    assert json.loads(result.stdout)["accuracy"] == _epochs(full)[-1][2]


def test_threads_1_and_2_are_bit_identical_with_batchnorm_and_dropout(write_config, tmp_path):
    config = write_config(RESNET)
    for threads in ("1", "2"):
        _train(["train", config, "--out", str(tmp_path / threads), "--threads", threads,
                "--quiet", "--epochs", "1"])
    a, b = _checkpoint(tmp_path / "1")[0], _checkpoint(tmp_path / "2")[0]
    assert all(np.array_equal(a[key], b[key]) for key in a)
    assert _epochs(tmp_path / "1") == _epochs(tmp_path / "2")


def test_the_console_table_and_metrics_name_nested_layers(write_config, tmp_path):
    import json

    result = _train(["train", write_config(RESNET), "--out", str(tmp_path / "run"),
                     "--epochs", "1"])
    assert "  res2.projbn " in result.stdout and "  res1.c1 " in result.stdout
    with open(tmp_path / "run" / "metrics.jsonl") as handle:
        step = next(r for r in map(json.loads, handle) if r["event"] == "step")
    assert set(step["layers"]["res1.bn1"]) == {"delta_norm", "grad_norm", "update_norm",
                                               "weight_norm"}  # γ as the weight
    assert set(step["layers"]["res1"]) == {"delta_norm"}


def test_time_reports_every_nested_layer(write_config):
    import json

    result = _train(["time", write_config(RESNET), "--iters", "2", "--format", "json"])
    rows = {row["name"]: row for row in json.loads(result.stdout)["layers"]}
    assert rows["res2.proj"]["depth"] == 1 and rows["res2"]["depth"] == 0
    assert rows["res2"]["forward_ms"] >= rows["res2.proj"]["forward_ms"] > 0
    text = _train(["time", write_config(RESNET), "--iters", "2"]).stdout
    assert "\n  res2.projbn " in text and "\nres2 " in text


def test_trace_shows_every_nested_step_and_its_exact_deltas_are_the_networks(write_config):
    import json

    from convtrain.spec.config import load_config
    from convtrain.views.trace import run_trace

    path = write_config(RESNET.replace("  - {type: dropout, rate: 0.2}\n", ""))
    config = load_config(path)
    result = run_trace(config)
    steps = [(step["layer"], step["what"]) for step in result["steps"]]
    for expected in [("res2.proj", "output"), ("res2", "delta"), ("res2.c1", "kernel_grad"),
                     ("res2", "body_delta"), ("res2.projbn", "kernel_grad"),
                     ("res2", "shortcut_delta"), ("res2", "input_delta"),
                     ("res1", "shortcut_delta")]:
        assert expected in steps
    # order: the body's steps, then the shortcut's, then their sum
    assert (steps.index(("res2", "body_delta")) < steps.index(("res2.projbn", "kernel_grad"))
            < steps.index(("res2", "shortcut_delta")) < steps.index(("res2", "input_delta")))
    by_key = {(step["layer"], step["what"]): np.asarray(step["value"]) for step in result["steps"]}
    np.testing.assert_array_equal(by_key[("res2", "input_delta")],
                                  by_key[("res2", "body_delta")]
                                  + by_key[("res2", "shortcut_delta")])
    # The trace's δx is the network's own dL/dx for the same sample (the first training
    # sample, with its label), in training mode.
    from convtrain.data.sources import load_datasets

    x, y, _, _ = load_datasets(config, need_val=False)
    network = Network(config, dtype="float64")
    _, _, dx = network.loss_and_gradients(x[:1].astype(np.float64), y[:1])
    np.testing.assert_array_equal(np.asarray(result["steps"][0]["value"]), x[0])
    np.testing.assert_allclose(by_key[("stem", "input_delta")], dx[0], rtol=1e-12, atol=1e-15)
    assert json.dumps(result, default=str)  # JSON-ready, full names as layer keys


def test_trace_refuses_a_batchnorm_over_the_batch_axis_alone(write_config):
    from click.testing import CliRunner

    from convtrain.cli import main

    path = write_config("input: [1, 8, 8]\nlayers:\n  - {type: flatten}\n"
                        "  - {type: dense, units: 4}\n  - {type: batchnorm}\n")
    result = CliRunner().invoke(main, ["trace", path])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert "cannot trace batchnorm 'bn3'" in result.stderr


def test_plot_draws_a_residual_run(write_config, tmp_path):
    run = tmp_path / "run"
    _train(["train", write_config(RESNET), "--out", str(run), "--quiet", "--epochs", "1"])
    _train(["plot", str(run)])
    assert sorted(p.name for p in run.glob("*.png")) == ["curves.png", "features.png",
                                                         "kernels.png", "layers.png"]


def test_init_from_skip_of_a_block_skips_every_layer_inside_it(write_config, tmp_path):
    from convtrain.run.checkpoint import read_checkpoint

    config = write_config(RESNET)
    _train(["train", config, "--out", str(tmp_path / "first"), "--quiet", "--epochs", "1"])
    wider = write_config(RESNET.replace("filters: 6", "filters: 8"), "wider.yaml")
    _train(["train", wider, "--out", str(tmp_path / "second"), "--quiet", "--epochs", "1",
            "--max-steps", "1", "--init-from", str(tmp_path / "first" / "checkpoint-last.npz"),
            "--init-from-skip", "res2", "--init-from-skip", "dense10"])
    second = read_checkpoint(str(tmp_path / "second" / "checkpoint-last.npz"))[0]
    assert second["res2.proj.weight"].shape == (8, 4, 1, 1)  # skipped: its own initialisation


def test_a_divergence_is_traced_to_the_layer_inside_a_block():
    from convtrain.model.divergence import first_bad_output

    network = _network([CONV, "{type: residual, name: r, body: [" + CONV + ", " + BN3 + "]}"])
    network.layers[1].paths[0][0].params["weight"][0, 0, 0, 0] = np.inf
    x, labels = _data(network, batch=3)
    with np.errstate(all="ignore"):
        network.loss_and_gradients(x, labels)
        assert first_bad_output(network, x) == "; the first non-finite output is at layer r.conv1"
