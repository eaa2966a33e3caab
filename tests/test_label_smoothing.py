"""`loss: {type: softmax_cross_entropy, label_smoothing: ε}`, PyTorch's definition: the target
of a sample of class y is (1 - ε)·onehot(y) + ε/K. (Checked by hand against torch 2.13's
F.cross_entropy(label_smoothing=0.1) in float64: the same loss to the last bit, the
gradient to 3e-17.)"""

import numpy as np
import pytest
from click.testing import CliRunner

from convtrain.cli import main
from convtrain.errors import ConfigError
from convtrain.model.gradcheck import check_gradients
from convtrain.model.losses import softmax_cross_entropy
from convtrain.model.network import Network
from convtrain.spec.config import load_config

NET = """
dtype: float64
input: [1, 4, 4]
layers:
  - {{type: conv2d, filters: 2, kernel: 3}}
  - {{type: tanh}}
  - {{type: dense, units: 5}}
loss: {loss}
"""


def test_loss_and_gradient_are_those_of_the_smoothed_targets():
    rng = np.random.default_rng(0)
    scores, labels = rng.normal(size=(6, 5)) * 3, np.array([0, 4, 2, 2, 1, 3])
    loss, dscores, _ = softmax_cross_entropy(scores, labels, label_smoothing=0.1)
    probs = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
    target = np.full((6, 5), 0.1 / 5)
    target[np.arange(6), labels] += 0.9
    assert loss == pytest.approx(-(target * np.log(probs)).sum(axis=1).mean(), rel=1e-13)
    np.testing.assert_allclose(dscores, (probs - target) / 6, rtol=1e-12, atol=1e-15)
    plain = softmax_cross_entropy(scores, labels)
    assert softmax_cross_entropy(scores, labels, label_smoothing=0.0)[0] == plain[0]


def test_gradients_through_the_training_path_are_exact():
    config = load_config("ls.yaml", text=NET.format(
        loss="{type: softmax_cross_entropy, label_smoothing: 0.1}"))
    assert config.loss == "softmax_cross_entropy" and config.label_smoothing == 0.1
    x = np.random.default_rng(1).normal(size=(3, 1, 4, 4))
    rows = check_gradients(Network(config), x, np.array([0, 3, 4]))
    assert all(row.passed for row in rows), [row.describe() for row in rows]


def test_summary_and_trace_say_so(write_config):
    path = write_config(NET.format(loss="{type: softmax_cross_entropy, label_smoothing: 0.1}")
                        + "trace: {input: " + str(np.ones((1, 4, 4)).tolist()) + ", target: 2}\n")
    summary = CliRunner().invoke(main, ["summary", path])
    assert "loss softmax_cross_entropy (label smoothing 0.1)" in summary.output
    trace = CliRunner().invoke(main, ["trace", path, "--step", "4"])
    assert "targets (1 − 0.1)·onehot + 0.1/K" in trace.output


@pytest.mark.parametrize("loss, where, words", [
    ("{type: mse, label_smoothing: 0.1}", "loss.label_smoothing",
     "smooths softmax_cross_entropy's targets; this loss is mse"),
    ("{type: softmax_cross_entropy, label_smoothing: 1.0}", "loss.label_smoothing",
     "must be less than 1"),
    ("{type: softmax_cross_entropy, smoothing: 0.1}", "loss.smoothing", "unknown key"),
])
def test_bad_smoothing_is_one_line_naming_the_key(loss, where, words):
    with pytest.raises(ConfigError) as raised:
        load_config("ls.yaml", text=NET.format(loss=loss))
    line = raised.value.one_line()
    assert line.startswith(f"error: ls.yaml:8: {where}: ") and words in line, line
