"""`convtrain export`: ONNX models of networks with every layer type and option pass
onnx's full check, and ONNX Runtime's outputs equal `predict`'s scores (eval mode) to 1e-5,
at batch 1 and 7; the metadata says how to prepare an input; bad input is one line."""

import json
import sys

import numpy as np
import onnx
import onnxruntime
import pytest
from click.testing import CliRunner
from nets import train_into

from convtrain.cli import main
from convtrain.extras import pip_install
from convtrain.spec.config import load_config
from convtrain.model.network import Network
from convtrain.use.onnx_export import export_onnx
from convtrain.use.predict import predict

# Every layer type and option across three networks: op: convolution, rectangular kernels,
# stride 2, `same` padding with an odd total (kernel 4: one row above, two below), every
# activation, both pools, flatten, dense, batchnorm of images and of vectors (affine and
# not), residual blocks nested two deep, with and without a shortcut, globalavgpool,
# dropout.
PLAIN = """input: [3, 13, 11]
layers:
  - {type: conv2d, filters: 5, kernel: [3, 2], op: convolution, stride: [2, 1], padding: [1, 0]}
  - {type: leaky_relu, slope: 0.2}
  - {type: conv2d, filters: 4, kernel: 4, padding: same, bias: false}
  - {type: sigmoid}
  - {type: maxpool, size: [2, 3], stride: [1, 2]}
  - {type: conv2d, filters: 6, kernel: 1}
  - {type: tanh}
  - {type: avgpool, size: 2}
  - {type: flatten}
  - {type: dense, units: 9}
  - {type: batchnorm}
  - {type: relu}
  - {type: dropout, rate: 0.3}
  - {type: dense, units: 4, bias: false}
"""

RESNET = """input: [2, 8, 8]
layers:
  - {type: conv2d, name: stem, filters: 6, kernel: 3, padding: 1}
  - {type: batchnorm, name: stem_bn}
  - {type: relu}
  - type: residual
    name: outer
    body:
      - type: residual
        name: inner
        body:
          - {type: conv2d, name: c, filters: 6, kernel: 3, padding: 1}
          - {type: batchnorm, name: bn, affine: false}
      - {type: relu}
      - {type: conv2d, name: c2, filters: 8, kernel: 3, stride: 2, padding: same}
    shortcut:
      - {type: conv2d, name: proj, filters: 8, kernel: 1, stride: 2}
  - {type: relu}
  - {type: globalavgpool}
  - {type: dropout, rate: 0.5}
  - {type: dense, units: 3}
"""

CONV_LAST = """input: [1, 6, 6]
dtype: float64
layers:
  - {type: conv2d, filters: 2, kernel: 3, op: convolution}
  - {type: batchnorm}
"""


def _trained(text, steps=3):
    """A network of the config, its batchnorm running statistics moved by training steps."""
    config = load_config("net.yaml", text=text + "train: {batch_size: 4}\n")
    network = Network(config)
    rng = np.random.default_rng(1)
    labels = config.num_outputs
    for step in range(steps):
        network.mode.step = step + 1
        x = rng.standard_normal((4,) + tuple(config.input)).astype(network.dtype)
        network.loss_and_gradients(x, rng.integers(0, labels, size=4) % labels)
    return config, network


@pytest.mark.parametrize("text", [PLAIN, RESNET, CONV_LAST], ids=["plain", "resnet", "conv-last"])
def test_onnx_runtime_gives_predicts_scores(text):
    config, network = _trained(text)
    moved = [layer.buffers["running_mean"] for layer in network.all_layers()
             if layer.spec.type == "batchnorm"]
    assert moved and all(np.any(mean != 0) for mean in moved)
    model = export_onnx(network, config, classes=None)
    onnx.checker.check_model(model, full_check=True)
    session = onnxruntime.InferenceSession(model.SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(2)
    for batch in (1, 7):
        x = rng.standard_normal((batch,) + tuple(config.input))
        ours = predict(network, x.astype(network.dtype))
        theirs = session.run(["scores"], {"input": x.astype(np.float32)})[0]
        assert theirs.shape == ours.shape == (batch, config.num_outputs)
        np.testing.assert_allclose(theirs, ours, rtol=1e-5, atol=1e-5 * np.abs(ours).max())


DIGITS = """name: digits-small
input: [1, 8, 8]
layers:
  - {type: conv2d, filters: 6, kernel: 3, padding: 1, bias: false}
  - {type: batchnorm}
  - {type: relu}
  - {type: maxpool, size: 2}
  - {type: flatten}
  - {type: dropout, rate: 0.2}
  - {type: dense, units: 10}
train: {epochs: 1, batch_size: 32}
data:
  train: {format: builtin, name: digits, scale: 16, limit: 200, mean: 0.3, std: 0.4}
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(config path, checkpoint path) of DIGITS trained one epoch."""
    return train_into(tmp_path_factory.mktemp("digits"), DIGITS, "c.yaml")


def test_export_command_writes_a_model_with_the_preprocessing_in_its_metadata(trained,
                                                                             tmp_path):
    from convtrain.data.sources import read_builtin

    config, checkpoint = trained
    out = tmp_path / "model.onnx"
    result = CliRunner().invoke(main, ["export", config, "--checkpoint", checkpoint,
                                       "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"wrote {out}: ONNX opset 17")
    model = onnx.load(str(out))
    onnx.checker.check_model(model, full_check=True)
    meta = {prop.key: prop.value for prop in model.metadata_props}
    assert json.loads(meta["convtrain.scale"]) == 16.0 and json.loads(meta["convtrain.input"]) \
        == [1, 8, 8]
    assert json.loads(meta["convtrain.mean"]) == [0.3] and json.loads(meta["convtrain.std"]) == [0.4]
    # The user's three lines: prepare the pixels as the metadata says, run, compare with
    # what `predict` prints for the same pixels.
    pixels = read_builtin("digits")[0][:7]
    np.save(tmp_path / "seven.npy", pixels)
    result = CliRunner().invoke(main, ["predict", config, "--checkpoint", checkpoint,
                                       str(tmp_path / "seven.npy"), "--format", "json"])
    assert result.exit_code == 0, result.output
    scores = np.array([row["scores"] for row in json.loads(result.stdout)["predictions"]])
    prepared = (pixels[:, None] / np.float32(16) - np.float32(0.3)) / np.float32(0.4)
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    theirs = session.run(["scores"], {"input": prepared.astype(np.float32)})[0]
    assert scores.shape == theirs.shape == (7, 10)
    np.testing.assert_allclose(theirs, scores, rtol=1e-5, atol=1e-5 * np.abs(scores).max())


def test_export_errors_are_one_line(trained, tmp_path, monkeypatch):
    config, checkpoint = trained
    result = CliRunner().invoke(main, ["export", config, "--checkpoint", checkpoint,
                                       "--out", str(tmp_path / "no" / "model.onnx")])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert "--out: the folder" in result.stderr and "does not exist" in result.stderr
    result = CliRunner().invoke(main, ["export", config, "--checkpoint", checkpoint,
                                       "--out", str(tmp_path)])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert f"--out: is a folder: give the file to write, e.g. {tmp_path}/digits-small.onnx" \
        in result.stderr
    other = tmp_path / "other.yaml"
    other.write_text(DIGITS.replace("filters: 6", "filters: 7"))
    result = CliRunner().invoke(main, ["export", str(other), "--checkpoint", checkpoint,
                                       "--out", str(tmp_path / "m.onnx")])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert checkpoint in result.stderr and "conv" in result.stderr
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if the extra were not installed
    result = CliRunner().invoke(main, ["export", config, "--checkpoint", checkpoint,
                                       "--out", str(tmp_path / "m.onnx")])
    assert result.exit_code == 2 and result.stderr == (
        f"error: export needs the onnx package, an optional extra: {pip_install('onnx')}\n")
    assert "convtrain[" not in result.stderr  # on a public index, another project's name
    assert not (tmp_path / "m.onnx").exists()


def test_the_readmes_deploy_lines_give_predicts_scores(trained, tmp_path, repo_root):
    """docs/commands.md's deploy lines, run as they are printed, on a model `export` wrote."""
    from convtrain.data.sources import read_builtin

    config, checkpoint = trained
    model = tmp_path / "digits.onnx"
    assert CliRunner().invoke(main, ["export", config, "--checkpoint", checkpoint, "--out",
                                     str(model)]).exit_code == 0
    readme = open(f"{repo_root}/docs/commands.md", encoding="utf-8").read()
    block = readme[readme.index("**Deploy.**"):]
    lines = [line[4:] for line in block.split("\n\n")[1].splitlines()]
    assert lines[0].startswith("import json") and lines[-1].startswith("scores = ")
    pixels = read_builtin("digits")[0][:5, None].astype(np.float64)
    np.save(tmp_path / "five.npy", pixels)
    space = {"pixels": pixels}
    code = "\n".join(lines).replace('"digits.onnx"', repr(str(model)))
    exec(compile(code, "docs/commands.md", "exec"), space)
    result = CliRunner().invoke(main, ["predict", config, "--checkpoint", checkpoint,
                                       str(tmp_path / "five.npy"), "--format", "json"])
    scores = np.array([row["scores"] for row in json.loads(result.stdout)["predictions"]])
    np.testing.assert_allclose(space["scores"], scores, rtol=1e-5,
                               atol=1e-5 * np.abs(scores).max())
