"""Nothing lost, the second look: what a newcomer still met after the first fixes.
--overwrite never reaches the data a command reads; a resume in place never rewinds its
run; plot never writes into another run's folder or the training data; a run that failed
says so in its metrics.jsonl; a run of fewer steps than log.every still plots."""

import errno
import json
import os
import shutil

import numpy as np
import pytest

import faults
from convtrain.outputs import failed_write
from nets import small_cnn

CONFIG = small_cnn("again", epochs=1, batch_size=32, log_every=2)
_run, _one_line_error = faults.run, faults.one_line_error


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(config, run folder, its checkpoint after epoch 1 kept aside as epoch1.npz, the run
    then resumed in place to epoch 2)."""
    base = tmp_path_factory.mktemp("again")
    config = base / "again.yaml"
    config.write_text(CONFIG)
    run = base / "run"
    assert _run(["train", config, "--out", run, "--quiet"]).exit_code == 0
    shutil.copy(run / "checkpoint-last.npz", run / "epoch1.npz")
    result = _run(["train", run / "config.yaml", "--epochs", "2", "--resume",
                   run / "checkpoint-last.npz", "--set", "optimizer.lr=0.05", "--quiet"])
    assert result.exit_code == 0, result.output
    return config, run, result


@pytest.fixture
def run(trained, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(trained[1], copy)
    return copy


def test_quiet_still_says_a_resume_changes_the_settings(trained):
    stderr = trained[2].stderr
    assert "resume: the config changes what the checkpoint was trained with: optimizer.lr" \
        in stderr, stderr


def test_a_resume_in_place_from_an_older_checkpoint_is_refused(run, tmp_path):
    before = faults.snapshot(run)
    line = _one_line_error(_run(["train", run / "config.yaml", "--epochs", "3", "--resume",
                                 run / "epoch1.npz", "--quiet"]))
    assert "its run went on to step 20" in line and "--out NEW_FOLDER" in line, line
    assert faults.snapshot(run) == before
    branch = tmp_path / "branch"  # where the message sends it: a new folder, from epoch 1
    result = _run(["train", run / "config.yaml", "--epochs", "3", "--resume",
                   run / "epoch1.npz", "--out", branch, "--quiet"])
    assert result.exit_code == 0, result.output
    epochs = [json.loads(line)["epoch"] for line in (branch / "metrics.jsonl").open()
              if '"event": "epoch"' in line]
    assert epochs == [1, 2, 3] and faults.snapshot(run) == before


def _npz_config(tmp_path):
    """The config of the trained run, its data a .npz file, and a folder of one image."""
    from convtrain.data.sources import read_builtin

    x, y = read_builtin("digits")
    data = tmp_path / "data"
    data.mkdir()
    np.savez(data / "digits.npz", x=x[:100], y=y[:100])
    photos = tmp_path / "photos"
    photos.mkdir()
    from PIL import Image

    Image.fromarray((x[0] * 15).astype(np.uint8).reshape(8, 8)).save(photos / "one.png")
    config = tmp_path / "npz.yaml"
    config.write_text(CONFIG.replace("{format: builtin, name: digits, scale: 16, limit: 400}",
                                     f"{{format: npz, path: {data / 'digits.npz'}, scale: 16}}"))
    return config, data, photos


def test_overwrite_never_reaches_the_data_a_command_reads(run, tmp_path):
    config, data, photos = _npz_config(tmp_path)
    before = faults.snapshot(tmp_path)
    checkpoint = ["--checkpoint", run / "checkpoint-last.npz"]
    line = _one_line_error(_run(["trace", config, *checkpoint, "--out", data / "digits.npz",
                                 "--overwrite"]))
    assert "is the data.train this command reads" in line, line
    line = _one_line_error(_run(["predict", config, photos, *checkpoint, "--out",
                                 photos / "one.png", "--overwrite"]))
    assert f"is the INPUT {photos} this command reads" not in line  # the folder, said so:
    assert f"is in {photos}, the INPUT {photos} folder this command reads" in line, line
    line = _one_line_error(_run(["predict", config, photos, *checkpoint, "--out",
                                 photos / "new.txt"]))
    assert "folder this command reads: give a file outside it" in line, line
    assert faults.snapshot(tmp_path) == before
    result = _run(["predict", config, photos, *checkpoint, "--out", tmp_path / "p.txt"])
    assert result.exit_code == 0, result.output


def test_plot_never_writes_into_another_runs_folder(run, trained, tmp_path):
    other = trained[1]
    before = faults.snapshot(other)
    line = _one_line_error(_run(["plot", run, "--out", other]))
    assert "is the folder of another run" in line, line
    assert faults.snapshot(other) == before


def test_plot_never_writes_into_the_training_data(run, tmp_path):
    import yaml

    images = tmp_path / "images"
    images.mkdir()
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["data"]["train"] = {"format": "folder", "path": str(images)}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    line = _one_line_error(_run(["plot", run, "--out", images / "pictures"]))
    assert f"is in {images}, the data.train folder the run trained on" in line, line
    assert os.listdir(images) == []


def test_a_plot_that_cannot_write_leaves_no_folder_it_made(run, tmp_path, monkeypatch):
    pictures = tmp_path / "pictures"
    faults.inject(monkeypatch, "ENOSPC", pictures)
    _one_line_error(_run(["plot", run, "--out", pictures]))
    assert not pictures.exists()


def test_a_run_of_fewer_steps_than_log_every_still_plots(tmp_path, write_config):
    config = write_config(small_cnn("few", epochs=2, log_every=1000))
    out = tmp_path / "few"
    result = _run(["train", config, "--out", out, "--quiet", "--plot"])
    assert result.exit_code == 0, result.output
    events = [json.loads(line)["event"] for line in (out / "metrics.jsonl").open()]
    assert "step" not in events and events.count("epoch") == 2
    for name in ("curves.png", "layers.png", "kernels.png", "features.png"):
        assert (out / name).stat().st_size > 5_000, name


def test_a_run_that_diverges_says_so_in_its_metrics(tmp_path, write_config):
    config = write_config(CONFIG)
    out = tmp_path / "diverged"
    result = _run(["train", config, "--out", out, "--quiet", "--set", "loss=mse",
                   "--set", "optimizer.lr=1000"])
    assert result.exit_code == 1
    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["event"] == "failed" and "diverged" in last["reason"]
    assert result.stderr.strip().endswith(last["reason"]), result.stderr


def test_a_vanished_file_in_a_folder_that_is_there_is_not_called_a_missing_folder(tmp_path):
    exc = OSError(errno.ENOENT, "No such file or directory")
    assert "does not exist" not in str(failed_write(exc, str(tmp_path / "x")))
    assert "the folder" in str(failed_write(exc, str(tmp_path / "gone" / "x")))


# --- the third look (a newcomer's second pass) ---

def test_another_runs_checkpoint_copied_into_a_run_folder_is_refused(run, tmp_path,
                                                                     write_config):
    longer = tmp_path / "longer"
    config = write_config(small_cnn("again", epochs=3, seed=1, log_every=2))
    assert _run(["train", config, "--out", longer, "--quiet"]).exit_code == 0
    shutil.copy(longer / "checkpoint-last.npz", run / "from-longer.npz")  # step 30 > 20
    before = faults.snapshot(run)
    line = _one_line_error(_run(["train", run / "config.yaml", "--epochs", "4", "--resume",
                                 run / "from-longer.npz", "--quiet"]))
    assert "is not the last checkpoint of the run in" in line and "--out NEW_FOLDER" in line
    assert faults.snapshot(run) == before
    shutil.copy(run / "checkpoint-last.npz", run / "copy.npz")  # a copy of its own: goes on
    result = _run(["train", run / "config.yaml", "--epochs", "3", "--resume", run / "copy.npz",
                   "--quiet"])
    assert result.exit_code == 0, result.output


def test_a_resume_names_changed_data_and_seed_with_quiet_too(run):
    result = _run(["train", run / "config.yaml", "--epochs", "3", "--resume",
                   run / "checkpoint-last.npz", "--set", "data.val.split=0.5", "--set",
                   "seed=5", "--quiet"])
    assert result.exit_code == 0, result.output
    note = next(line for line in result.stderr.splitlines() if line.startswith("resume:"))
    assert "seed 0 -> 5" in note and "data.val_split 0.2 -> 0.5" in note, note


def test_a_run_folder_inside_the_training_images_is_refused(tmp_path, write_config):
    from PIL import Image

    images = tmp_path / "images"
    for label in ("a", "b"):
        (images / label).mkdir(parents=True)
        for k in range(4):
            Image.fromarray(np.full((8, 8), 40 * k + (100 if label == "b" else 0),
                                    np.uint8)).save(images / label / f"{k}.png")
    config = write_config(CONFIG.replace(
        "{format: builtin, name: digits, scale: 16, limit: 400}",
        f"{{format: folder, path: {images}, scale: 255}}"))
    line = _one_line_error(_run(["train", config, "--out", images / "run1", "--quiet"]))
    assert f"is in {images}, the data.train folder this run reads" in line, line
    assert not (images / "run1").exists()


def test_a_resume_that_fails_before_a_checkpoint_gives_the_config_back(run):
    before = (run / "config.yaml").read_bytes()
    result = _run(["train", run / "config.yaml", "--epochs", "3", "--resume",
                   run / "checkpoint-last.npz", "--set", "loss=mse",
                   "--set", "optimizer.lr=1e30", "--quiet"])
    import re

    assert result.exit_code == 1, result.output
    assert (run / "config.yaml").read_bytes() == before
    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    said = int(re.search(r"diverged at step (\d+)", result.stderr).group(1))
    assert last["event"] == "failed" and last["step"] == said > 20  # the step it names


def test_overwrite_never_replaces_a_checkpoint_kept_in_a_run_folder(run):
    shutil.copy(run / "checkpoint-last.npz", run / "step20.npz")
    before = faults.snapshot(run)
    line = _one_line_error(_run(["trace", run / "config.yaml", "--out", run / "step20.npz",
                                 "--overwrite"]))
    assert "belongs to a training run" in line, line
    assert faults.snapshot(run) == before
