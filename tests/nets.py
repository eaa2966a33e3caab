"""The small CNN most tests train: four 3×3 filters, ReLU, 2×2 max-pool and a dense layer
of 10, on a slice of the builtin 8×8 digits. Each test file sets what it varies."""

LAYERS = """layers:
  - {type: conv2d, filters: 4, kernel: 3, padding: same}
  - {type: relu}
  - {type: maxpool, size: 2}
  - {type: flatten}
  - {type: dense, units: 10}
"""


def small_cnn(name, seed=0, epochs=1, batch_size=32, limit=400, val_split=0.2,
              optimizer="{type: sgd, lr: 0.1, momentum: 0.9}", schedule=None,
              log_every=None, extra=""):
    """YAML text of the small CNN. Line 1 is name:, 11 is train: (12 with a schedule)."""
    lines = [f"name: {name}", f"seed: {seed}", "input: [1, 8, 8]", LAYERS.rstrip("\n")]
    if optimizer:
        lines.append(f"optimizer: {optimizer}")
    if schedule:
        lines.append(f"schedule: {schedule}")
    lines += [f"train: {{epochs: {epochs}, batch_size: {batch_size}}}", "data:",
              f"  train: {{format: builtin, name: digits, scale: 16, limit: {limit}}}"]
    if val_split:
        lines.append(f"  val: {{split: {val_split}}}")
    if log_every:
        lines.append(f"log: {{every: {log_every}}}")
    return "\n".join(lines) + "\n" + extra


def train_into(folder, config_text, name="c.yaml"):
    """Write config_text to folder/name, train it there with `convtrain train --quiet` (in
    this process) into folder/run; returns (config path, checkpoint-last.npz path)."""
    from click.testing import CliRunner

    from convtrain.cli import main

    (folder / name).write_text(config_text)
    result = CliRunner().invoke(main, ["train", str(folder / name), "--out",
                                       str(folder / "run"), "--quiet"])
    assert result.exit_code == 0, result.output
    return str(folder / name), str(folder / "run" / "checkpoint-last.npz")


def assert_onnx_runtime_agrees(config, network, x, rtol=1e-5, atol=1e-5):
    """The network's ONNX export, run by ONNX Runtime on x (float32), gives the scores the
    network's own eval-mode forward pass gives."""
    import numpy as np
    import onnxruntime

    from convtrain.use.onnx_export import export_onnx

    session = onnxruntime.InferenceSession(export_onnx(network, config).SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"input": x})[0], network.forward(x),
                               rtol=rtol, atol=atol)
