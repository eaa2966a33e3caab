"""A run whose training accuracy is at chance after an epoch says so, once: a warning on
stderr (--quiet too) and a metrics.jsonl record; the run goes on and exits 0."""

import json
import os

import numpy as np
from click.testing import CliRunner

from convtrain.cli import main
from convtrain.run.train import chance_level

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIGITS = os.path.join(ROOT, "configs", "digits.yaml")


def _train(out, *settings):
    """Two epochs of digits into out; returns (result, the epoch and warning records)."""
    args = ["train", DIGITS, "--epochs", "2", "--quiet", "--out", str(out)]
    for setting in settings:
        args += ["--set", setting]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    with open(out / "metrics.jsonl") as handle:
        records = [json.loads(line) for line in handle]
    return (result, [r for r in records if r["event"] == "epoch"],
            [r for r in records if r["event"] == "warning"])


def test_a_run_at_chance_warns_once_and_goes_on(tmp_path):
    """The user's example: lr=5 on digits trains at chance (train_acc 0.10 and 0.11)."""
    result, epochs, warnings = _train(tmp_path / "run", "optimizer.lr=5")
    lines = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert lines == [
        f"warning: training accuracy after epoch 1 is {epochs[0]['train_acc']:.4f}, chance "
        f"level (0.1057, what always answering the most frequent class scores): the network "
        f"is not learning. Try a lower optimizer.lr (now 5), and check that the labels "
        f"belong to the images"]
    assert [(w["epoch"], w["kind"], "warning: " + w["message"]) for w in warnings] == \
        [(1, "chance", lines[0])]
    assert len(epochs) == 2 and "epoch 2/2" in result.stdout


def test_a_run_that_learns_does_not_warn(tmp_path):
    result, epochs, warnings = _train(tmp_path / "run")
    assert "warning" not in result.stderr and warnings == []
    assert len(epochs) == 2 and epochs[0]["train_acc"] > 0.5


def test_chance_is_the_most_frequent_class_share():
    assert chance_level(np.array([0, 1, 2, 3]), 4) == 0.25
    assert chance_level(np.array([2, 2, 2, 1]), 10) == 0.75  # not 1/10: class 2 is 3 in 4


def test_a_run_too_short_to_learn_is_not_judged(tmp_path):
    """The newcomer's folder of a few images: an epoch of 2 steps is at chance for every
    network; the warning waits for 20 steps in all."""
    result, epochs, warnings = _train(tmp_path / "run", "optimizer.lr=5", "data.train.limit=64")
    assert len(epochs) == 2 and epochs[-1]["step"] < 20
    assert "warning" not in result.stderr and warnings == []
