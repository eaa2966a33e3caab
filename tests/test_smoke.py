"""`convtrain train --smoke`: it passes on every shipped config, on the data the config names
(synthetic stand-ins where that is a download), and fails on a network with a planted bug."""

import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from convtrain.cli import main
from convtrain.layers.conv2d import Conv2d

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(ROOT, "configs")


def _synthetic_cifar(folder):
    """The project's own stand-in for cifar-10-binary.tar.gz, where the config looks for it;
    5 x 52 training records: the smoke's slice of 256, and a tar of 1 MB, not 177."""
    subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "make_synthetic_cifar.py"),
                    str(folder / "data" / "cifar-10-binary.tar.gz"), "--per-file", "52"],
                   check=True, capture_output=True)


def _synthetic_mnist(folder):
    """The four MNIST .gz files in data/, as lenet5-mnist.yaml says (the project's own
    stand-in, 256 training images)."""
    subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "make_synthetic_mnist.py"),
                    str(folder / "data")], check=True, capture_output=True)


# config: (how to make the data it names, or None for the builtin digits; --max-steps;
# other arguments). ResNet-20 takes 3 steps instead of 20: a step of batch 128 costs 0.4 s
# on 2 cores.
SHIPPED = {
    "digits.yaml": (None, 20, []),
    "resnet-digits.yaml": (None, 20, []),
    "lenet5-mnist.yaml": (_synthetic_mnist, 20, []),
    "resnet20-cifar10.yaml": (_synthetic_cifar, 3, []),
    # 4 steps of 128 (16 s here): the loss of its first 3 can still rise at lr 0.1
    "mobilenetv2-cifar10.yaml": (_synthetic_cifar, 4, []),
    "squeezenet-cifar10.yaml": (_synthetic_cifar, 3, []),
    # 2 steps of 8 on 64 samples: the smoke's loss over its 256, before and after, costs 10 s
    "densenet-cifar10.yaml": (_synthetic_cifar, 2, ["--set", "train.batch_size=8",
                                                    "--set", "data.train.limit=64"]),
    "seed-example.yaml": (None, 20, []),  # names no data: seeded random samples
}


def test_every_shipped_config_is_smoked_here():
    assert set(os.listdir(CONFIGS)) == set(SHIPPED)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_smoke_passes_on_each_shipped_config(name, tmp_path, monkeypatch):
    make_data, steps, other = SHIPPED[name]
    if make_data:
        make_data(tmp_path)
    monkeypatch.chdir(tmp_path)  # the configs name data/ beside where convtrain runs
    result = CliRunner().invoke(main, ["train", os.path.join(CONFIGS, name), "--smoke",
                                       "--max-steps", str(steps), *other])
    assert result.exit_code == 0, result.output
    samples = 64 if "data.train.limit=64" in other else 256
    assert result.stdout.startswith(f"smoke: ok — {steps} steps on {samples} samples, loss ")


def test_smoke_fails_when_every_conv_kernel_gradient_has_the_wrong_sign(monkeypatch):
    """The planted bug: each conv layer's backward returns -dL/dK (dx is right), so those
    weights climb the loss. On resnet-digits, batchnorm and dropout included: measuring the
    loss with batch statistics must not make the check pass whatever the network does."""
    backward = Conv2d.backward

    def wrong_sign(self, dout, need_dx=True):
        dx = backward(self, dout, need_dx)
        self.grads["weight"] *= -1
        return dx

    monkeypatch.setattr(Conv2d, "backward", wrong_sign)
    result = CliRunner().invoke(main, ["train", os.path.join(CONFIGS, "resnet-digits.yaml"),
                                       "--smoke"])
    assert result.exit_code == 1, result.output
    assert result.stdout.startswith("smoke: FAILED — loss did not go down in 20 steps on 256 "
                                    "samples: "), result.stdout


def test_smoke_without_data_fails_on_the_worked_examples_net_with_a_wrong_sign(monkeypatch):
    """The worked example names no data: smoke trains it on seeded random samples, and that
    still tells a kernel gradient of the wrong sign from a right one."""
    backward = Conv2d.backward

    def wrong_sign(self, dout, need_dx=True):
        dx = backward(self, dout, need_dx)
        self.grads["weight"] *= -1
        return dx

    config = os.path.join(CONFIGS, "seed-example.yaml")
    assert CliRunner().invoke(main, ["train", config, "--smoke"]).exit_code == 0
    monkeypatch.setattr(Conv2d, "backward", wrong_sign)
    result = CliRunner().invoke(main, ["train", config, "--smoke"])
    assert result.exit_code == 1, result.output
    assert result.stdout.startswith("smoke: FAILED — loss did not go down"), result.stdout
