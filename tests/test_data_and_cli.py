"""Data formats on their good paths, and the installed command as a real subprocess."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
from click.testing import CliRunner

from convtrain.cli import main
from convtrain.spec.config import load_config
from convtrain.data.sources import load_datasets

HEAD = "input: [1, 2, 3]\nlayers:\n  - {type: flatten}\n  - {type: dense, units: 4}\n"


def test_npz_with_custom_keys_and_scale(write_config, tmp_path):
    images = np.arange(5 * 6).reshape(5, 2, 3)
    np.savez(tmp_path / "d.npz", pixels=images, classes=np.array([0, 1, 2, 3, 0]))
    path = write_config(HEAD + f"data:\n  train: {{format: npz, path: {tmp_path / 'd.npz'}, "
                               f"x: pixels, y: classes, scale: 10}}\n")
    x, y, val_x, _ = load_datasets(load_config(path))
    assert x.shape == (5, 1, 2, 3) and x.dtype == np.float32 and val_x is None
    np.testing.assert_allclose(x[1, 0], images[1] / 10)
    assert y.tolist() == [0, 1, 2, 3, 0]


def test_csv_with_header_and_separate_val_source(write_config, tmp_path):
    rows = ["label,p0,p1,p2,p3,p4,p5"] + [f"{i % 4},{','.join(str(i + j) for j in range(6))}"
                                          for i in range(8)]
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "v.csv").write_text("3,1,2,3,4,5,6\n")
    path = write_config(HEAD + f"data:\n  train: {{format: csv, path: {tmp_path / 'd.csv'}, "
                               f"header: true}}\n  val: {{format: csv, path: {tmp_path / 'v.csv'}}}\n")
    x, y, val_x, val_y = load_datasets(load_config(path))
    assert x.shape == (8, 1, 2, 3) and y.tolist() == [0, 1, 2, 3, 0, 1, 2, 3]
    assert x[2, 0].tolist() == [[2, 3, 4], [5, 6, 7]]
    assert val_x.shape == (1, 1, 2, 3) and val_y.tolist() == [3]


def test_builtin_digits_and_seeded_split():
    config = load_config("d.yaml", text="input: [1, 8, 8]\nlayers:\n  - {type: flatten}\n"
                                        "  - {type: dense, units: 10}\ndata:\n  train: {format: "
                                        "builtin, name: digits, scale: 16}\n  val: {split: 0.25}\n")
    x, y, val_x, val_y = load_datasets(config)
    assert len(y) + len(val_y) == 1797 and len(val_y) == 449
    x = np.asarray(x)
    assert 0 <= x.min() and x.max() == 1.0 and set(np.unique(y)) == set(range(10))
    again = load_datasets(config)
    assert np.array_equal(again[3], val_y)


def test_version_and_help_through_the_installed_command():
    exe = os.path.join(os.path.dirname(sys.executable), "convtrain")
    command = [exe] if os.path.exists(exe) else [sys.executable, "-m", "convtrain"]
    proc = subprocess.run(command + ["--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and "convtrain, version" in proc.stdout
    proc = subprocess.run(command + ["--help"], capture_output=True, text=True)
    for verb in ("train", "trace", "eval", "gradcheck", "summary", "time"):
        assert verb in proc.stdout


def test_sigint_checkpoints_and_exits_130(tmp_path, repo_root):
    config = os.path.join(repo_root, "configs", "digits.yaml")
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "convtrain", "train", config, "--out", str(out),
                             "--epochs", "200", "--quiet"], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "checkpoint-last.npz").exists():
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Resume with: " in err and " -m convtrain train " in err and "Traceback" not in err
    result = CliRunner().invoke(main, ["eval", config, "--checkpoint",
                                       str(out / "checkpoint-last.npz")])
    assert result.exit_code == 0


def test_lenet5_config_runs_on_mnist_format_files(tmp_path, repo_root, monkeypatch):
    """The shipped LeNet-5 config, on gzip IDX files laid out as the README says."""
    import gzip
    import struct

    def write_idx(path, array):
        header = bytes([0, 0, 8, array.ndim]) + b"".join(struct.pack(">I", d)
                                                         for d in array.shape)
        with gzip.open(path, "wb") as handle:
            handle.write(header + array.astype(np.uint8).tobytes())

    rng = np.random.default_rng(0)
    (tmp_path / "data").mkdir()
    for prefix, count in (("train", 192), ("t10k", 64)):
        labels = rng.integers(0, 10, size=count)
        images = rng.integers(0, 50, size=(count, 28, 28))
        images[np.arange(count), 2 * labels + 3, 2 * labels + 3] = 255  # learnable signal
        write_idx(tmp_path / "data" / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(tmp_path / "data" / f"{prefix}-labels-idx1-ubyte.gz", labels)
    monkeypatch.chdir(tmp_path)
    config = os.path.join(repo_root, "configs", "lenet5-mnist.yaml")
    result = CliRunner().invoke(main, ["train", config, "--out", "run", "--epochs", "1",
                                       "--quiet"])
    assert result.exit_code == 0, result.output
    assert "epoch 1/1" in result.stdout and "val_acc" in result.stdout
    assert (tmp_path / "run" / "checkpoint-best.npz").exists()
