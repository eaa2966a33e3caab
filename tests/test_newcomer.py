"""The smaller points of issue 28's item 7, each as a newcomer met it."""

import os

from convtrain.run import tensorboard


class _Recorder:
    def __init__(self):
        self.scalars = {}

    def add_scalar(self, tag, value, step):
        self.scalars[tag] = (value, step)


def test_tensorboard_gets_the_tables_update_weight_ratio_beside_the_norms():
    writer = tensorboard.EventWriter.__new__(tensorboard.EventWriter)
    writer.writer = _Recorder()
    writer.add({"event": "step", "step": 7, "loss": 1.0, "lr": 0.1,
                "layers": {"conv1": {"delta_norm": 0.5, "grad_norm": 2.0,
                                     "update_norm": 0.004, "weight_norm": 2.0},
                           "relu1": {"delta_norm": 0.25}}})
    scalars = writer.writer.scalars
    assert scalars["layers/conv1/update_ratio"] == (0.002, 7)  # ‖ΔW‖/‖W‖, as the table shows
    assert scalars["layers/conv1/weight_norm"] == (2.0, 7)
    assert scalars["layers/relu1/delta_norm"] == (0.25, 7)
    assert "layers/relu1/update_ratio" not in scalars  # no weight, no ratio


NPZ_CONFIG = """name: tiny
input: [1, 8, 8]
layers:
  - {type: conv2d, filters: 2, kernel: 3}
  - {type: relu}
  - {type: flatten}
  - {type: dense, units: 10}
train: {epochs: 1, batch_size: 32}
data:
  train: {format: npz, path: data/digits.npz, scale: 16}
log: {every: 1000}
"""


def _digits_npz(path, count=96):
    import numpy as np

    from convtrain.data.sources import read_builtin

    x, y = read_builtin("digits")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, x=x[:count], y=y[:count])


def test_the_printed_resume_command_works_from_another_directory(tmp_path, monkeypatch):
    import shlex

    from click.testing import CliRunner

    from convtrain.cli import main

    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    _digits_npz(project / "data" / "digits.npz")
    (project / "tiny.yaml").write_text(NPZ_CONFIG)
    elsewhere.mkdir()
    monkeypatch.chdir(project)  # the data path is relative to here
    result = CliRunner().invoke(main, ["train", "tiny.yaml", "--out", "run", "--max-steps", "2"])
    assert result.exit_code == 0, result.output
    resume = next(line for line in result.output.splitlines() if "--resume" in line)
    args = shlex.split(resume[resume.index(" train ") + 1:])  # after the program's name
    written = (project / "run" / "config.yaml").read_text()
    assert f"path: {project / 'data' / 'digits.npz'}" in written, written
    monkeypatch.chdir(elsewhere)
    args = [str(project / a) if a.startswith("run/") else a for a in args]
    result = CliRunner().invoke(main, args + ["--quiet"])
    assert result.exit_code == 0, result.output
    assert "epoch 1/1" in result.output
    # the run's config.yaml holds the data path made absolute: the same file, not a change
    assert "changes what the checkpoint was trained with" not in result.output


def test_the_printed_mpi_resume_command_names_the_venvs_mpiexec_off_path(tmp_path,
                                                                          monkeypatch):
    """After `make demo` and `pip install mpi4py mpich` into .venv, mpiexec is
    .venv/bin/mpiexec, not on PATH: `mpiexec -n 2 …` was `command not found`."""
    import sys

    from convtrain.run.runfolder import RunCheckpoints

    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    for name in ("python", "mpiexec", "convtrain"):
        (bin_dir / name).write_text("#!/bin/sh\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setenv("PMI_SIZE", "2")
    monkeypatch.setattr(sys, "executable", str(bin_dir / "python"))
    monkeypatch.setattr(sys, "argv", [".venv/bin/convtrain", "train"])
    command = RunCheckpoints("runs/A").resume_command()
    assert command.startswith(".venv/bin/mpiexec -n 2 .venv/bin/convtrain train "), command
    monkeypatch.setenv("PATH", str(bin_dir))  # an activated venv: the plain names work
    assert RunCheckpoints("runs/A").resume_command().startswith("mpiexec -n 2 convtrain train ")


def test_install_hints_name_this_python_and_the_packages_not_convtrain_extras(tmp_path,
                                                                             monkeypatch):
    """`pip install 'convtrain[images]'` failed outside the venv, and on a public index
    could install another project: the hint installs Pillow into this very Python."""
    import os
    import sys

    from convtrain.errors import DataError
    from convtrain.data.image_files import require_pillow

    monkeypatch.setitem(sys.modules, "PIL", None)  # as if Pillow were not installed
    bin_dir = tmp_path / ".venv" / "bin"
    monkeypatch.setattr(sys, "executable", str(bin_dir / "python"))
    monkeypatch.chdir(tmp_path)
    try:
        require_pillow("cats/a.png", "data.train")
    except DataError as exc:
        line = exc.one_line()
    assert line == ("error: cats/a.png: data.train: reading images needs Pillow, an optional "
                    "extra: .venv/bin/python -m pip install Pillow"), line
    monkeypatch.chdir(tmp_path / "..")  # from elsewhere, the path that works from there
    with_path = os.path.relpath(str(bin_dir / "python"))
    try:
        require_pillow("a.png")
    except DataError as exc:
        assert f"{with_path} -m pip install Pillow" in exc.one_line(), exc.one_line()


def _pngs(folder, x, y, per_class=3):
    """An image folder as a user makes one: a subfolder per class of 8-bit grey PNGs."""
    import numpy as np
    from PIL import Image

    for label in range(10):
        (folder / f"class{label}").mkdir(parents=True, exist_ok=True)
        for k, i in enumerate(np.flatnonzero(y == label)[:per_class]):
            pixels = (x[i].reshape(8, 8) * 16).clip(0, 255).astype(np.uint8)  # digits: 0..16
            Image.fromarray(pixels).save(folder / f"class{label}" / f"{k}.png")


def test_eval_data_reads_a_labelled_folder_or_any_source_file(tmp_path, monkeypatch):
    import numpy as np
    import pytest
    from click.testing import CliRunner

    from convtrain.cli import main
    from convtrain.data.sources import read_builtin

    pytest.importorskip("PIL")
    _digits_npz(tmp_path / "data" / "digits.npz")
    (tmp_path / "tiny.yaml").write_text(NPZ_CONFIG.replace("scale: 16", "scale: 1"))
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    assert runner.invoke(main, ["train", "tiny.yaml", "--out", "run", "--quiet"]).exit_code == 0
    x, y = read_builtin("digits")
    _pngs(tmp_path / "pictures", x, y)
    evaluate = ["eval", "tiny.yaml", "--checkpoint", "run/checkpoint-last.npz", "--data"]
    result = runner.invoke(main, evaluate + ["pictures"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("pictures: 30 samples  loss "), result.output
    np.savez(tmp_path / "more.npz", x=x[100:150], y=y[100:150])
    result = runner.invoke(main, evaluate + ["more.npz", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert '"samples": 50' in result.output and '"data": "more.npz"' in result.output
    (tmp_path / "notes.txt").write_text("cat\n")
    for wrong, words in (("notes.txt", "cannot tell the data format from the name"),
                         ("missing", "no such file or folder")):
        result = runner.invoke(main, evaluate + [wrong])
        assert result.exit_code == 2, result.output
        assert result.stderr.count("\n") == 1, result.stderr
        assert result.stderr.startswith(f"error: {wrong}: --data: {words}"), result.stderr
    assert "--data PATH" in runner.invoke(main, ["eval", "--help"]).output


def _readme_folder_yaml():
    """(the YAML block of README's "Train on your own images", its last line's number)."""
    import pathlib
    import re

    text = (pathlib.Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    start = text.index("\n## Train on your own images\n")
    match = re.compile(r"```yaml\n(.*?)```", re.S).search(text, start)
    assert match and "\n## " not in text[start + 1:match.start()], "no YAML in the section"
    return match.group(1), text[:match.end()].count("\n") + 1


def test_readme_has_a_complete_folder_config_in_its_first_100_lines(tmp_path, monkeypatch):
    import numpy as np
    import pytest
    from click.testing import CliRunner

    from convtrain.cli import main
    from convtrain.spec.config import load_config
    from convtrain.data.sources import class_names, load_datasets

    Image = pytest.importorskip("PIL.Image")
    text, last_line = _readme_folder_yaml()
    assert last_line <= 100, last_line
    (tmp_path / "my-images.yaml").write_text(text)
    monkeypatch.chdir(tmp_path)
    assert CliRunner().invoke(main, ["summary", "my-images.yaml"]).exit_code == 0
    config = load_config("my-images.yaml")
    assert config.data.train.format == "folder" and config.data.val.format == "folder"
    for split in ("train", "val"):  # the layout the section shows, of odd-sized pictures
        for name in ("cat", "dog", "fox"):
            (tmp_path / "photos" / split / name).mkdir(parents=True)
            Image.fromarray(np.full((40, 30, 3), 200, np.uint8)).save(
                tmp_path / "photos" / split / name / "001.png")
    x, y, val_x, val_y = load_datasets(config)
    assert len(y) == 3 and len(val_y) == 3 and x[:1].shape == (1, 3, 32, 32)
    assert class_names(config) == ["cat", "dog", "fox"] and config.num_outputs == 3


def test_a_mistyped_checkpoint_names_the_checkpoints_in_its_folder(tmp_path, monkeypatch,
                                                                    repo_root):
    from click.testing import CliRunner

    from convtrain.cli import main

    run = tmp_path / "runs" / "tiny"
    run.mkdir(parents=True)
    for name in ("checkpoint-best.npz", "checkpoint-last.npz"):
        (run / name).write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    config = os.path.join(repo_root, "configs", "digits.yaml")
    result = CliRunner().invoke(main, ["eval", config, "--checkpoint",
                                       "runs/tiny/checkpoint-bset.npz"])
    assert result.exit_code == 2
    assert result.stderr == (f"error: runs/tiny/checkpoint-bset.npz: no such checkpoint "
                             f"(relative paths start at {tmp_path}); runs/tiny holds "
                             f"checkpoint-best.npz, checkpoint-last.npz\n")
