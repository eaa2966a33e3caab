"""`convtrain trace` shows no negative zeros: not the -0.0 that ReLU and max-pool give for a
negative input (0·x), nor a small negative value rounded to zero, in text or HTML."""

import os
import re

import pytest
from click.testing import CliRunner

from convtrain.cli import main

# A ReLU that sees negative inputs, then a max-pool and a dense layer; float64 like the trace.
RELU = """name: relu
dtype: float64
input: [1, 4, 4]
layers:
  - {type: conv2d, filters: 2, kernel: 2, biases: [0.0, -0.01],
     weights: [[[[0.1, -0.3], [-0.5, 0.7]]], [[[-0.2, 0.4], [0.6, -0.8]]]]}
  - {type: relu}
  - {type: maxpool, size: 2, stride: 1}
  - {type: flatten}
  - {type: dense, units: 3}
trace:
  input: [[[.7, -.3, -.7, .5], [.9, -.5, -.2, .9], [-.1, .8, -.3, -.5], [0, .2, -.1, .6]]]
  target: 1
"""
# A number that shows as zero with a minus sign: -0, -0.00, -0.0000 (not -0.5, -0.001, -0e).
NEGATIVE_ZERO = re.compile(r"(?<![\w.])-0(\.0+)?(?![\w.])")


def _trace(*args):
    result = CliRunner().invoke(main, ["trace", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture
def relu(write_config):
    return write_config(RELU, "relu.yaml")


def _negative_zeros(text):
    return [text[max(m.start() - 30, 0):m.end() + 10] for m in NEGATIVE_ZERO.finditer(text)]


def test_the_pattern_finds_negative_zeros_and_nothing_else():
    assert _negative_zeros("  -0.0000   0.2900\n  -0\n min -0  max") != []
    assert len(_negative_zeros(" -0.0000 -0.00 -0 ")) == 3
    assert _negative_zeros(" -0.0001  -0.5  -0.001 -1e-05 0.0000 -10.0000 x-0 ") == []


@pytest.mark.parametrize("fmt", ["text", "html"])
@pytest.mark.parametrize("decimals", ["4", "2"])
def test_relu_and_maxpool_outputs_print_zero_not_minus_zero(relu, fmt, decimals):
    out = _trace(relu, "--format", fmt, "--decimals", decimals)
    assert _negative_zeros(out) == []
    if fmt == "text":
        relu_output = out.split("step  2")[1].split("step  3")[0]
        zero = "0." + "0" * int(decimals)
        assert re.search(rf"\n +{zero} +0\.29", relu_output)  # conv1's -0.64 after the ReLU


@pytest.mark.parametrize("recipe", ["exact", "textbook"])
@pytest.mark.parametrize("fmt", ["text", "html"])
def test_the_worked_example_rounds_small_negatives_to_zero_without_a_sign(repo_root, recipe,
                                                                           fmt):
    config = os.path.join(repo_root, "configs", "seed-example.yaml")
    for decimals in ("0", "1", "2", "4"):
        out = _trace(config, "--recipe", recipe, "--format", fmt, "--decimals", decimals)
        assert _negative_zeros(out) == [], decimals


def test_summaries_of_big_relu_outputs_say_min_0(repo_root):
    out = _trace(os.path.join(repo_root, "configs", "digits.yaml"))
    assert "min 0  max" in out
    assert _negative_zeros(out) == []
