"""`convtrain plot` and `train --plot`: four valid PNGs of sensible size, and clean
failures on an empty or half-written run folder or without matplotlib."""

import os
import struct
import sys

import pytest
from click.testing import CliRunner

from convtrain.cli import main

CONFIG = """name: pics
seed: 2
input: [1, 8, 8]
layers:
  - {type: conv2d, filters: 4, kernel: 3, padding: same}
  - {type: relu}
  - {type: maxpool, size: 2}
  - {type: conv2d, filters: 6, kernel: 3}
  - {type: flatten}
  - {type: dense, units: 10}
optimizer: {type: sgd, lr: 0.1, momentum: 0.9}
train: {epochs: 2, batch_size: 32}
data:
  train: {format: builtin, name: digits, scale: 16, limit: 300}
  val: {split: 0.2}
log: {every: 2}
"""
FILES = ("curves.png", "layers.png", "kernels.png", "features.png")


def _run(args):
    return CliRunner().invoke(main, args, catch_exceptions=False)


def _png_size(path):
    """(width, height) from a PNG's IHDR chunk; fails on anything that is not a PNG."""
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", path
    assert data[-8:-4] == b"IEND", f"{path} is cut short"
    return struct.unpack(">II", data[16:24])


def _one_line(result, *texts):
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    for text in texts:
        assert text in result.stderr, result.stderr


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pics")
    (folder / "pics.yaml").write_text(CONFIG)
    result = _run(["train", str(folder / "pics.yaml"), "--out", str(folder / "run"),
                   "--quiet", "--plot"])
    assert result.exit_code == 0, result.output
    return folder / "run"


def test_train_plot_writes_four_valid_pngs_of_sensible_size(run_dir):
    for name in FILES:
        width, height = _png_size(run_dir / name)
        assert 300 <= width <= 4000 and 150 <= height <= 4000, (name, width, height)
        assert os.path.getsize(run_dir / name) > 5_000, name
    assert not [n for n in os.listdir(run_dir) if n.startswith(".tmp-")]


def test_plot_command_writes_them_elsewhere(run_dir, tmp_path):
    result = _run(["plot", str(run_dir), "--out", str(tmp_path / "pictures")])
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == [str(tmp_path / "pictures" / name) for name in FILES]
    for name in FILES:
        _png_size(tmp_path / "pictures" / name)


def test_plot_fails_cleanly_on_an_empty_folder(tmp_path):
    _one_line(_run(["plot", str(tmp_path)]), "no metrics.jsonl here")
    _one_line(_run(["plot", str(tmp_path / "nope")]), "no such folder")
    (tmp_path / "c.yaml").write_text(CONFIG)
    _one_line(_run(["plot", str(tmp_path / "c.yaml")]), "is a file, not a run folder: plot "
                                                       "takes the folder a run wrote")


def test_plot_of_a_runs_file_names_its_folder(run_dir):
    _one_line(_run(["plot", str(run_dir / "metrics.jsonl")]),
              f"is a file, not a run folder", f": give its folder, {run_dir}")


def test_plot_fails_cleanly_on_a_half_written_run(run_dir, tmp_path):
    half = tmp_path / "half"
    half.mkdir()
    # Compiling, nothing trained yet:
    (half / "metrics.jsonl").write_text('{"event": "compile", "seconds": 1.0}\n')
    _one_line(_run(["plot", str(half)]), "no step or epoch records: nothing to plot (the run "
                                         "is still compiling, or stopped before log.every",
              "lower log.every, or train longer")
    (half / "metrics.jsonl").write_text('{"event": "compile", "seconds": 1.0}\n{"event": '
                                        '"failed", "step": 3, "reason": "training diverged"}\n')
    _one_line(_run(["plot", str(half)]), "the run failed before it logged any (training "
                                         "diverged)")
    # Steps logged, but killed before the first checkpoint:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()[:4]
    (half / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    (half / "config.yaml").write_text((run_dir / "config.yaml").read_text())
    _one_line(_run(["plot", str(half)]), "no checkpoint yet")
    # A damaged line in the middle is named by its number:
    (half / "metrics.jsonl").write_text(lines[0] + "\n{\"event\": \"st\n" + lines[1] + "\n")
    _one_line(_run(["plot", str(half)]), "metrics.jsonl:2", "not a JSON record")


def test_a_last_line_cut_short_is_left_out(run_dir, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("config.yaml", "checkpoint-best.npz"):
        (copy / name).write_bytes((run_dir / name).read_bytes())
    text = (run_dir / "metrics.jsonl").read_text()
    (copy / "metrics.jsonl").write_text(text + '{"event": "step", "epo')
    assert _run(["plot", str(copy)]).exit_code == 0


def test_without_matplotlib_both_commands_say_how_to_install_it(run_dir, tmp_path,
                                                                monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    _one_line(_run(["plot", str(run_dir)]), " -m pip install matplotlib")
    config = tmp_path / "pics.yaml"
    config.write_text(CONFIG)
    _one_line(_run(["train", str(config), "--out", str(tmp_path / "run"), "--plot"]),
              " -m pip install matplotlib")
    assert not (tmp_path / "run").exists()  # refused before training



def test_missing_data_fails_before_any_picture_is_written(run_dir, tmp_path):
    """Data paths are relative to the working directory: from elsewhere, the feature
    picture's sample cannot load, and nothing is written."""
    moved = tmp_path / "moved"
    moved.mkdir()
    (moved / "checkpoint-best.npz").write_bytes((run_dir / "checkpoint-best.npz").read_bytes())
    (moved / "metrics.jsonl").write_text((run_dir / "metrics.jsonl").read_text())
    config = (run_dir / "config.yaml").read_text()
    assert "format: builtin" in config
    (moved / "config.yaml").write_text(config.replace("format: builtin", "format: npz")
                                       .replace("name: digits", "path: gone.npz"))
    result = _run(["plot", str(moved)])
    _one_line(result, "gone.npz")
    assert not [name for name in os.listdir(moved) if name.endswith(".png")]


COLOUR = """name: colour
seed: 2
input: [3, 8, 8]
layers:
  - {{type: conv2d, filters: 5, kernel: 3, padding: same}}
  - {{type: relu}}
  - {{type: flatten}}
  - {{type: dense, units: 2}}
train: {{epochs: 1, batch_size: 16}}
data:
  train: {{format: npz, path: {path}, scale: 255, mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25]}}
log: {{every: 1}}
"""


def test_colour_inputs_and_first_layer_kernels_are_drawn_in_colour(tmp_path):
    import numpy as np

    from convtrain.views import plot_pictures as pictures
    from convtrain.views.plots import require_pyplot
    from convtrain.spec.config import load_config
    from convtrain.model.network import Network

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=48)
    x = np.zeros((48, 3, 8, 8), dtype=np.uint8)
    x[:, 0] = np.where(labels == 0, 230, 20)[:, None, None]  # red against blue
    x[:, 2] = np.where(labels == 0, 20, 230)[:, None, None]
    np.savez(tmp_path / "rgb.npz", x=x, y=labels)
    (tmp_path / "c.yaml").write_text(COLOUR.format(path=tmp_path / "rgb.npz"))
    run = tmp_path / "run"
    result = _run(["train", str(tmp_path / "c.yaml"), "--out", str(run), "--quiet", "--plot"])
    assert result.exit_code == 0, result.output
    assert all(_png_size(run / name) for name in FILES)
    plt = require_pyplot()
    config = load_config(str(tmp_path / "c.yaml"))
    network = Network(config)
    sample = pictures.sample(config)
    features = pictures.features(plt, network, sample, classes=["red", "blue"])
    assert features.axes[0].get_title() == f"input ({['red', 'blue'][sample[1]]}, label " \
                                           f"{sample[1]})"
    shown = features.axes[0].images[0].get_array()
    assert shown.shape == (8, 8, 3)  # the input as RGB, the bytes as stored
    np.testing.assert_array_equal(shown, x[0].transpose(1, 2, 0))
    kernels = pictures.kernels(plt, network, "checkpoint-last.npz")
    images = [axis.images[0].get_array() for axis in kernels.axes if axis.images]
    assert len(images) == 5 and all(p.shape == (3, 3, 3) for p in images)  # one per filter
    weight = network.layers[0].params["weight"][0]
    np.testing.assert_allclose(images[0], ((weight - weight.min()) / np.ptp(weight))
                               .transpose(1, 2, 0), rtol=1e-6)


def test_a_single_logged_step_is_drawn_as_a_dot():
    from convtrain.views import plot_pictures as pictures
    from convtrain.views.plots import require_pyplot

    plt = require_pyplot()
    records = [{"event": "step", "step": 5, "epoch": 1, "loss": 2.0}]
    from convtrain.spec.config import load_config

    config = load_config("one.yaml", text=CONFIG)
    figure = pictures.curves(plt, records, config)
    line = figure.axes[0].get_lines()[0]
    assert list(line.get_xdata()) == [5] and line.get_marker() == "."
