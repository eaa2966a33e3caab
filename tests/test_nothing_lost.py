"""Nothing a user made is ever lost: no command writes over a file it reads or did not
make, --resume stays in its own run, and every write path, made to fail with ENOSPC,
EROFS, EACCES or ENOENT, ends with exit 2 and one line, no temporary file, and every file
that was there before byte for byte as it was."""

import json
import os
import re
import shutil

import pytest

import faults
from nets import small_cnn

CONFIG = small_cnn("lost", epochs=1, batch_size=32, log_every=2)
ERRNOS = list(faults.CODES)
_run, _one_line_error = faults.run, faults.one_line_error


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(config, run folder) of one short run, trained once; tests copy the folder."""
    base = tmp_path_factory.mktemp("trained")
    config = base / "lost.yaml"
    config.write_text(CONFIG)
    assert _run(["train", config, "--out", base / "run", "--quiet"]).exit_code == 0
    return config, base / "run"


@pytest.fixture
def run(trained, tmp_path):
    config, folder = trained
    copy = tmp_path / "run"
    shutil.copytree(folder, copy)
    return config, copy


# --- the defects a newcomer met ---

def test_resume_into_another_runs_folder_is_refused_and_leaves_it_whole(trained, tmp_path):
    config, a = trained
    b = tmp_path / "B"
    assert _run(["train", config, "--out", b, "--set", "seed=7", "--quiet"]).exit_code == 0
    before = faults.snapshot(b)
    result = _run(["train", a / "config.yaml", "--epochs", "2", "--resume",
                   a / "checkpoint-last.npz", "--out", b, "--quiet"])
    line = _one_line_error(result)
    assert "goes on only in its own folder" in line
    assert faults.snapshot(b) == before


def test_resume_into_a_new_folder_takes_the_history_with_it(run, tmp_path):
    config, a = run
    new = tmp_path / "new"
    result = _run(["train", a / "config.yaml", "--epochs", "2", "--resume",
                   a / "checkpoint-last.npz", "--out", new, "--quiet"])
    assert result.exit_code == 0, result.output
    old = (a / "metrics.jsonl").read_text().splitlines()
    now = (new / "metrics.jsonl").read_text().splitlines()
    assert now[:len(old)] == old
    assert [json.loads(line)["event"] for line in now].count("epoch") == 2
    assert {"checkpoint-last.npz", "checkpoint-best.npz", "config.yaml"} <= set(os.listdir(new))


def test_the_records_a_resume_drops_are_said_with_quiet_too(run):
    config, a = run
    with open(a / "metrics.jsonl", "a") as handle:  # as a run killed after a checkpoint
        handle.write(json.dumps({"event": "step", "epoch": 1, "step": 999}) + "\n")
    result = _run(["train", a / "config.yaml", "--epochs", "2", "--resume",
                   a / "checkpoint-last.npz", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "dropped 1 record(s)" in result.stderr


def test_resume_needs_a_run_folder_to_go_on_in(trained, tmp_path):
    config, a = trained
    loose = tmp_path / "downloads"
    loose.mkdir()
    shutil.copy(a / "checkpoint-last.npz", loose / "model.npz")
    line = _one_line_error(_run(["train", config, "--epochs", "2", "--resume",
                                 loose / "model.npz"]))
    assert "is not in a run folder" in line and "--out NEW_FOLDER" in line
    assert os.listdir(loose) == ["model.npz"]


@pytest.mark.parametrize("target", ["checkpoint-best.npz", "config.yaml"])
def test_export_never_writes_over_a_file_it_reads(run, target):
    _, a = run
    before = faults.snapshot(a)
    export = ["export", a / "config.yaml", "--checkpoint", a / "checkpoint-best.npz", "--out",
              a / target]
    for extra in ([], ["--overwrite"]):
        assert "this command reads" in _one_line_error(_run(export + extra))
    assert faults.snapshot(a) == before


def test_export_predict_and_trace_keep_a_file_that_is_there_unless_told(run, tmp_path):
    _, a = run
    mine = tmp_path / "mine.txt"
    mine.write_text("my notes\n")
    common = ["--checkpoint", a / "checkpoint-last.npz", "--out", mine]
    for args in (["export", a / "config.yaml"], ["predict", a / "config.yaml", "-"],
                 ["trace", a / "config.yaml"]):
        line = _one_line_error(_run(args + common))
        assert "pass --overwrite to replace it" in line
        assert mine.read_text() == "my notes\n"
    assert _run(["predict", a / "config.yaml", "-"] + common + ["--overwrite"]).exit_code == 0
    assert mine.read_text().startswith("0 ")  # the first sample's prediction


def test_overwrite_never_replaces_another_runs_files(run, tmp_path, trained):
    _, a = run
    _, other = trained
    before = faults.snapshot(other)
    line = _one_line_error(_run(["predict", a / "config.yaml", "-", "--checkpoint",
                                 a / "checkpoint-last.npz", "--out",
                                 other / "metrics.jsonl", "--overwrite"]))
    assert "belongs to a training run" in line
    assert faults.snapshot(other) == before


def test_plot_replaces_only_pictures_of_its_own_run(run, tmp_path):
    _, a = run
    pictures = tmp_path / "pictures"
    assert _run(["plot", a, "--out", pictures]).exit_code == 0
    assert _run(["plot", a, "--out", pictures]).exit_code == 0  # its own: replaced
    other = tmp_path / "other"
    shutil.copytree(a, other)
    before = faults.snapshot(pictures)
    line = _one_line_error(_run(["plot", other, "--out", pictures]))
    assert "curves.png" in line and "--overwrite" in line
    assert faults.snapshot(pictures) == before


def test_a_folder_whose_run_ended_before_a_checkpoint_is_not_offered_to_resume(tmp_path,
                                                                              write_config):
    config = write_config(CONFIG)
    out = tmp_path / "diverged"
    result = _run(["train", config, "--out", out, "--quiet", "--set", "loss=mse",
                   "--set", "optimizer.lr=1000"])
    assert result.exit_code == 1 and not (out / "checkpoint-last.npz").exists()
    line = _one_line_error(_run(["train", config, "--out", out]))
    assert "--resume" not in line and "ended before its first checkpoint" in line


# --- every write path against a full, read-only, forbidden or vanished place ---

@pytest.mark.parametrize("code", ERRNOS)
def test_train_into_a_new_folder(code, trained, tmp_path, monkeypatch):
    config, _ = trained
    faults.inject(monkeypatch, code, tmp_path / "new")
    _one_line_error(_run(["train", config, "--out", tmp_path / "new", "--quiet"]))
    assert not faults.temporary_files(tmp_path)


@pytest.mark.parametrize("only", [None, "config.yaml", "metrics.jsonl"])
@pytest.mark.parametrize("code", ERRNOS)
def test_resume_in_place(code, only, run, monkeypatch):
    _, a = run
    before = faults.snapshot(a)
    faults.inject(monkeypatch, code, a, only=only)
    _one_line_error(_run(["train", a / "config.yaml", "--epochs", "2", "--resume",
                          a / "checkpoint-last.npz", "--quiet"]))
    assert faults.snapshot(a) == before
    assert not faults.temporary_files(a)


@pytest.mark.parametrize("code", ERRNOS)
def test_a_checkpoint_write_mid_run(code, run, monkeypatch):
    _, a = run
    last = (a / "checkpoint-last.npz").read_bytes()
    faults.inject(monkeypatch, code, a, only="checkpoint-last.npz")
    line = _one_line_error(_run(["train", a / "config.yaml", "--epochs", "2", "--resume",
                                 a / "checkpoint-last.npz", "--quiet"]))
    assert line.endswith("the checkpoint there before, if any, is whole and unchanged")
    assert (a / "checkpoint-last.npz").read_bytes() == last
    for record in (a / "metrics.jsonl").read_text().splitlines():
        json.loads(record)  # whole lines only
    assert not faults.temporary_files(a)


@pytest.mark.parametrize("code", ERRNOS)
def test_plot(code, run, monkeypatch):
    _, a = run
    assert _run(["plot", a]).exit_code == 0
    before = faults.snapshot(a)
    faults.inject(monkeypatch, code, a, only=".png")
    _one_line_error(_run(["plot", a]))
    assert faults.snapshot(a) == before
    assert not faults.temporary_files(a)


@pytest.mark.parametrize("code", ERRNOS)
def test_plot_into_a_folder(code, run, tmp_path, monkeypatch):
    _, a = run
    faults.inject(monkeypatch, code, tmp_path / "pictures")
    _one_line_error(_run(["plot", a, "--out", tmp_path / "pictures"]))
    assert not faults.temporary_files(tmp_path)


@pytest.mark.parametrize("command", ["export", "predict", "trace", "trace-html"])
@pytest.mark.parametrize("code", ERRNOS)
def test_a_single_file_output(code, command, run, tmp_path, monkeypatch):
    _, a = run
    out = tmp_path / "out" / "result"
    out.parent.mkdir()
    args = {"predict": ["predict", a / "config.yaml", "-"],
            "trace-html": ["trace", a / "config.yaml", "--format", "html"]}.get(
        command, [command, a / "config.yaml"])
    args += ["--checkpoint", a / "checkpoint-last.npz", "--out", out, "--overwrite"]
    assert _run(args).exit_code == 0
    before = faults.snapshot(out.parent)
    faults.inject(monkeypatch, code, out.parent)
    _one_line_error(_run(args))
    assert faults.snapshot(out.parent) == before
    assert not faults.temporary_files(out.parent)


@pytest.mark.parametrize("code", ERRNOS)
def test_the_image_folder_cache_is_no_error(code, tmp_path, monkeypatch):
    from PIL import Image

    data = tmp_path / "images"
    for label, colour in (("red", (200, 0, 0)), ("blue", (0, 0, 200))):
        (data / label).mkdir(parents=True)
        for i in range(4):
            Image.new("RGB", (6, 6), colour).save(data / label / f"{i}.png")
    config = tmp_path / "folder.yaml"
    config.write_text("name: f\ninput: [3, 6, 6]\nlayers:\n  - {type: flatten}\n"
                      "  - {type: dense, units: 2}\ntrain: {epochs: 1, batch_size: 4}\n"
                      f"data:\n  train: {{format: folder, path: {data}, scale: 255}}\n")
    before = faults.snapshot(data)
    faults.inject(monkeypatch, code, data)
    result = _run(["train", config, "--out", tmp_path / "run", "--quiet"])
    assert result.exit_code == 0, result.output
    assert faults.snapshot(data) == before  # no cache written, nothing else touched
    assert not faults.temporary_files(data)


# --- the rule, kept: one module writes ---

WRITES = re.compile(r"open\([^)]*[\"'][wax]b?\+?[\"']|\.savefig\((?!picture)|os\.replace\(|"
                    r"np\.save\w*\((?!buffer)|\.write_text\(|\.write_bytes\(|mkstemp\(")
# Opened to write elsewhere, and neither an output: the run lock (a pid) and the kernel
# cache folder's probe (an empty file, removed at once).
ALLOWED = ['convtrain/run/runfolder.py: handle = open(path, "a+", encoding="utf-8")',
           'convtrain/runtime.py: handle, probe = tempfile.mkstemp(prefix=".convtrain-probe-", '
           'dir=folder)']


def test_every_file_convtrain_writes_goes_through_outputs(repo_root):
    """A new write path that goes around convtrain/outputs.py (whole or not at all, exit 2
    on failure, never over another's file) fails here."""
    package = os.path.join(repo_root, "convtrain")
    found = []
    for root, _, names in os.walk(package):
        for name in sorted(names):
            path = os.path.join(root, name)
            if not name.endswith(".py") or name == "outputs.py":
                continue
            with open(path, encoding="utf-8") as handle:
                found += [f"{os.path.relpath(path, repo_root)}: {line.strip()}"
                          for line in handle if WRITES.search(line)]
    assert sorted(found) == sorted(ALLOWED)


COMPILE = """import sys
sys.path.insert(0, {tests!r})
import faults
from convtrain.cli import main


class Patch:  # monkeypatch's setattr, for a process of its own
    setattr = staticmethod(setattr)


faults.inject(Patch(), {code!r}, {cache!r})
main(["compile", {config!r}, "--threads", "1"])
"""


@pytest.mark.parametrize("code", ERRNOS)
def test_compile_into_the_kernel_cache(code, trained, tmp_path, repo_root):
    """In a process of its own: Numba reads its cache folder once, when it loads."""
    import subprocess
    import sys

    config, _ = trained
    cache = tmp_path / "kernels"
    script = COMPILE.format(tests=os.path.join(repo_root, "tests"), code=code,
                            cache=str(cache), config=str(config))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env={**os.environ, "NUMBA_CACHE_DIR": str(cache)}, timeout=300)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert not faults.temporary_files(tmp_path)
