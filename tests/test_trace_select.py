"""`convtrain trace`'s text view of a deep network: 1x1 kernels summarised like any other,
and --layer / --step to show part of the trace, in every format."""

import json
import os
import re

import pytest
from click.testing import CliRunner

from convtrain.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESNET = os.path.join(ROOT, "configs", "resnet-digits.yaml")
# A label line, one line holding a single number, then the next label or the step's end.
ONE_NUMBER_SLICE = re.compile(r"^ {4}\[[^\]\n]*\]\n +\S+ *\n(?= {4}\[|\n|$)", re.M)

ONE_BY_ONE = """name: one-by-one
dtype: float64
input: [2, 3, 3]
layers:
  - {type: conv2d, name: squeeze, filters: 3, kernel: 1}
  - {type: flatten}
  - {type: dense, units: 2}
trace:
  target: 1
  input: [[[.1, .2, .3], [.4, .5, .6], [.7, .8, .9]], [[1, 0, -1], [0, 1, 0], [-1, 0, 1]]]
"""


def _trace(*args, code=0):
    result = CliRunner().invoke(main, ["trace", *args])
    assert result.exit_code == code, result.output
    return result


@pytest.fixture(scope="module")
def resnet_text():
    return _trace(RESNET).stdout


def test_the_pattern_sees_one_number_slices():
    assert ONE_NUMBER_SLICE.findall("    [filter 0, channel 0]\n    0.1234\n"
                                    "    [filter 0, channel 1]\n   -0.5\n\nstep 3")
    assert not ONE_NUMBER_SLICE.findall("    [channel 0]\n    0.1  0.2\n    0.3  0.4\n")


def test_resnet_digits_prints_no_kernel_as_one_number_slices(resnet_text):
    assert ONE_NUMBER_SLICE.findall(resnet_text) == []
    proj = resnet_text.split("step 56 ")[1].split("step 58 ")[0]
    assert proj.count("shape [32, 16, 1, 1]: min") == 2  # kernel_grad, kernel_new
    assert len(resnet_text.splitlines()) < 1200  # 5,168 when each 1x1 plane had its slice


def test_an_array_of_many_channels_shows_eight_and_counts_the_rest(resnet_text):
    """32 channels of 4x4 (under the summary's limit) once printed 32 grids, in 17 steps."""
    assert max(int(label) for label in re.findall(r"\[channel (\d+)\]", resnet_text)) == 7
    assert "24 more of its 32 slices not shown; all of it: shape [32, 4, 4]: min" in resnet_text
    full = _trace(RESNET, "--full", "--step", "19").stdout
    assert "[channel 31]" in full and "more of its" not in full


def test_a_small_1x1_kernel_is_one_filter_by_channel_grid(write_config):
    text = _trace(write_config(ONE_BY_ONE)).stdout
    grad = text.split("∂L/∂K1 = x ⋆ δ1")[1].split("\nstep")[0]
    assert "[1x1 planes: one row per filter, one column per channel]" in grad
    rows = [line for line in grad.splitlines()[1:] if re.fullmatch(r" +(-?\d+\.\d+ *){2}", line)]
    assert len(rows) == 3  # 3 filters x 2 channels
    assert ONE_NUMBER_SLICE.findall(text) == []


def _steps(*args):
    return [(s["step"], s["layer"], s["what"])
            for s in json.loads(_trace(RESNET, "--format", "json", *args).stdout)["steps"]]


def test_layer_shows_that_layers_steps_with_their_numbers():
    steps = _steps("--layer", "res2.proj")
    assert [(n, what) for n, _, what in steps] == [(16, "output"), (56, "kernel_grad"),
                                                  (57, "kernel_new"), (58, "input_delta")]
    both = _steps("--layer", "res2.proj", "--layer", "stem")
    assert {layer for _, layer, _ in both} == {"res2.proj", "stem"}


def test_a_blocks_name_takes_the_layers_inside_it():
    layers = {layer for _, layer, _ in _steps("--layer", "res1")}
    assert layers == {"res1", "res1.c1", "res1.bn1", "res1.relu3", "res1.c2", "res1.bn2"}


def test_step_takes_numbers_ranges_and_lists_and_combines_with_layer():
    assert [n for n, _, _ in _steps("--step", "5")] == [5]
    assert [n for n, _, _ in _steps("--step", "5-7", "--step", "0,91")] == [0, 5, 6, 7, 91]
    assert [n for n, _, _ in _steps("--layer", "res2.proj", "--step", "50-57")] == [56, 57]


@pytest.mark.parametrize("fmt", ["text", "html"])
def test_text_and_html_show_only_the_chosen_steps(fmt):
    out = _trace(RESNET, "--format", fmt, "--step", "47-49").stdout
    shown = re.findall(r"^step (\d+)" if fmt == "text" else r'id="step-(\d+)"', out, re.M)
    assert shown == ["47", "48", "49"]


@pytest.mark.parametrize("args,message", [
    (["--layer", "res2.c3"], "error: --layer: no layer 'res2.c3' (did you mean 'res2.c2'?); "
                             "the layers, as `convtrain summary` names them: stem, stem_bn,"),
    (["--step", "92"], "error: --step: step 92 is out of range: this trace has steps 0-91"),
    (["--step", "90-95"], "error: --step: step 95 is out of range: this trace has steps 0-91"),
    (["--step", "five"], "error: --step: 'five' is not a step number N, a range N-M"),
    (["--step", "9-5"], "error: --step: '9-5' is an empty range"),
    (["--layer", "res2.proj", "--step", "0-3"], "error: --step: no step of --layer res2.proj "
                                                "is among the steps asked for; its steps are "
                                                "16, 56-58"),
])
def test_bad_choices_exit_2_with_one_line(args, message):
    result = _trace(RESNET, *args, code=2)
    assert result.stdout == ""
    assert result.stderr.startswith(message) and result.stderr.count("\n") == 1, result.stderr
