"""What a run tells its user: the resume command after Ctrl-C, the divergence line, --quiet,
stdout against stderr, and the lock that keeps two runs out of one folder."""

import fcntl
import json
import os
import shlex
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from convtrain.run.checkpoint import read_checkpoint
from convtrain.cli import main
from nets import small_cnn

CONFIG = small_cnn("talk", seed=5, epochs=2, limit=320, log_every=4)


def _run(args):
    return CliRunner().invoke(main, args, catch_exceptions=False)


def _records(folder):
    with open(os.path.join(folder, "metrics.jsonl")) as handle:
        return [json.loads(line) for line in handle]


def _text(path):
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


def test_the_resume_command_printed_after_ctrl_c_keeps_epochs_and_set(write_config, tmp_path,
                                                                       repo_root):
    config = write_config(CONFIG.replace("limit: 320", "limit: 1500"))
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "convtrain", "train", config, "--out",
                             str(out), "--epochs", "300", "--set", "optimizer.lr=0.0123",
                             "--set", "log.every=1"], cwd=repo_root,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and '"event": "epoch"' not in _text(out / "metrics.jsonl"):
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    line = next(x for x in err.splitlines() if "Resume with: " in x)
    command = shlex.split(line.split("Resume with: ", 1)[1])
    assert command[:3] == [sys.executable, "-m", "convtrain"]  # as this run was started
    command = command[3:]
    done = read_checkpoint(str(out / "checkpoint-last.npz"))[2]["global_step"]
    result = _run(command + ["--max-steps", str(done + 3), "--quiet"])
    assert result.exit_code == 0, result.output
    resumed = [r for r in _records(out) if r["event"] == "step" and r["step"] > done]
    assert [r["step"] for r in resumed] == [done + 1, done + 2, done + 3]
    assert all(r["lr"] == 0.0123 for r in resumed)


def test_divergence_before_any_checkpoint_says_there_is_none(write_config, tmp_path):
    config = write_config(CONFIG)
    out = tmp_path / "run"
    result = _run(["train", config, "--out", str(out), "--set", "loss=mse",
                   "--set", "optimizer.lr=1e30"])
    assert result.exit_code == 1
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: training diverged at step 2:"), line  # step 1 made it
    # training keeps no deltas: the step is run again to find where it began
    assert "; the first non-finite delta is at layer " in line, line
    assert "last good checkpoint" not in line and "no checkpoint was written" in line, line
    assert not [name for name in os.listdir(out) if name.endswith(".npz")]


def test_divergence_after_a_checkpoint_names_it(write_config, tmp_path):
    config = write_config(CONFIG)
    out = tmp_path / "run"
    assert _run(["train", config, "--out", str(out), "--max-steps", "4"]).exit_code == 0
    result = _run(["train", config, "--resume", str(out / "checkpoint-last.npz"),
                   "--set", "loss=mse", "--set", "optimizer.lr=1e30"])
    assert result.exit_code == 1
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: training diverged at step 6:"), line
    assert f"{out / 'checkpoint-last.npz'} (step 4) is left as it was" in line, line


def test_quiet_prints_epoch_lines_only(write_config, tmp_path):
    config = write_config(CONFIG)
    out = tmp_path / "run"
    assert _run(["train", config, "--out", str(out), "--quiet", "--max-steps", "3"]).exit_code == 0
    result = _run(["train", config, "--resume", str(out / "checkpoint-last.npz"), "--quiet",
                   "--set", "optimizer.lr=0.05"])
    assert result.exit_code == 0, result.output
    # the one note --quiet keeps: the run goes on with other settings than it began with
    assert result.stderr == ("resume: the config changes what the checkpoint was trained "
                             "with: optimizer.lr 0.1 -> 0.05\n")
    assert [line.split()[:2] for line in result.stdout.splitlines()] == [["epoch", "1/2"],
                                                                         ["epoch", "2/2"]]


def test_the_log_goes_to_stdout_and_the_progress_notes_to_stderr(write_config, tmp_path):
    config = write_config(CONFIG)
    result = _run(["train", config, "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    out, err = result.stdout, result.stderr
    assert "epoch 2/2  train_loss" in out and "epoch 2/2  train_loss" not in err
    assert "step 4  epoch 1  loss" in out  # the per-layer table
    assert "conv1       conv2d" in out  # the summary table
    assert "run folder: " in err and "kernels ready in" in err
    assert "run folder" not in out and "kernels ready" not in out
    assert "epoch 1/2\n" not in err  # no progress-bar label off a terminal


def test_a_second_run_into_a_locked_run_folder_stops_before_writing(write_config, tmp_path):
    config = write_config(CONFIG)
    out = tmp_path / "run"
    assert _run(["train", config, "--out", str(out), "--quiet", "--max-steps", "3"]).exit_code == 0
    before = (out / "metrics.jsonl").read_bytes()
    with open(out / ".lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another process's run, here
        result = _run(["train", config, "--resume", str(out / "checkpoint-last.npz")])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.output
    assert "another convtrain process is training in this run folder" in result.stderr
    assert (out / "metrics.jsonl").read_bytes() == before
    assert _run(["train", config, "--resume", str(out / "checkpoint-last.npz"),
                 "--quiet"]).exit_code == 0  # the lock goes with the process that held it


def test_every_shipped_config_round_trips_through_its_resolved_copy(repo_root, tmp_path):
    """The printed resume command trains from RUN/config.yaml: it must read back as the
    very config it was written from."""
    from convtrain.spec.config import load_config
    from convtrain.run.runfolder import write_resolved_config

    folder = os.path.join(repo_root, "configs")
    for name in sorted(os.listdir(folder)):
        config = load_config(os.path.join(folder, name), ["train.epochs=7"])
        out = tmp_path / name
        out.mkdir()
        again = load_config(write_resolved_config(config, str(out)))
        assert again.resolved == config.resolved, name
        assert again.architecture_fingerprint() == config.architecture_fingerprint(), name
        assert again.train.epochs == 7


def test_the_printed_commands_start_as_this_process_did(monkeypatch, tmp_path):
    from convtrain.run import runfolder
    program = tmp_path / "venv bin" / "convtrain"
    program.parent.mkdir()
    program.write_text("")
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(sys, "argv", [str(program), "train"])
    assert runfolder.invoked_as() == shlex.quote(str(program))
    program.chmod(0o755)
    monkeypatch.setenv("PATH", str(program.parent))
    assert runfolder.invoked_as() == "convtrain"
    monkeypatch.setattr(sys, "argv", ["/x/convtrain/__main__.py", "train"])
    assert runfolder.invoked_as() == f"{shlex.quote(sys.executable)} -m convtrain"


def test_quiet_still_says_how_to_continue_after_max_steps(write_config, tmp_path):
    result = _run(["train", write_config(CONFIG), "--out", str(tmp_path / "run"), "--quiet",
                   "--max-steps", "2"])
    assert result.exit_code == 0 and result.stdout == ""
    assert result.stderr.startswith("stopped after --max-steps 2; checkpoint-last.npz holds "
                                    "the state; continue with: convtrain train ")


@pytest.mark.parametrize("flag, expected", [
    ("optimizer.type=adamW", "with --set optimizer.type=adamW: optimizer.type: unknown value "
                             "'adamW' (did you mean 'adamw'?)"),
    ("optimiser.lr=0.1", "with --set optimiser.lr=0.1: optimiser: unknown key 'optimiser' "
                         "(did you mean 'optimizer'?)"),
    ("optimizer.type=adam", ":10: optimizer.momentum: 'momentum' is a key of sgd, not of adam; "
                            "adam takes: lr, weight_decay, beta1, beta2, eps"),
    # a whole mapping from the flag: no line of the file is named
    ("schedule={type: step, milestones: [3, 2]}",
     "with --set schedule={type: step, milestones: [3, 2]}: schedule.milestones: must be"),
])
def test_config_errors_point_at_the_likely_slip(write_config, flag, expected):
    result = _run(["summary", write_config(CONFIG), "--set", flag])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert expected in result.stderr, result.stderr


def test_a_text_file_given_as_npz_data_is_named_for_what_it_is(write_config, tmp_path):
    (tmp_path / "notes.npz").write_text("a: 1\n")
    config = write_config(CONFIG.replace("{format: builtin, name: digits, scale: 16, limit: 320}",
                                         f"{{format: npz, path: {tmp_path / 'notes.npz'}}}"))
    result = _run(["train", config, "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and "pickle" not in result.stderr
    assert result.stderr.endswith("data.train: not an .npz archive but a text file\n")


def test_resuming_with_max_steps_already_reached_is_refused(write_config, tmp_path):
    config = write_config(CONFIG)
    out = tmp_path / "run"
    assert _run(["train", config, "--out", str(out), "--max-steps", "4"]).exit_code == 0
    before = (out / "checkpoint-last.npz").read_bytes()
    for steps in ("4", "2"):
        result = _run(["train", config, "--resume", str(out / "checkpoint-last.npz"),
                       "--max-steps", steps])
        assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.output
        assert (f"--max-steps: the checkpoint is at step 4 already: nothing to do up to step "
                f"{steps}") in result.stderr
    assert (out / "checkpoint-last.npz").read_bytes() == before
    result = _run(["eval", config, "--checkpoint", str(out / "checkpoint-last.npz")])
    assert "(checkpoint at step 4, in epoch 1)" in result.stdout


def test_a_resumed_run_prints_paths_as_they_were_given(write_config, tmp_path, monkeypatch):
    config = write_config(CONFIG)
    monkeypatch.chdir(tmp_path)
    assert _run(["train", config, "--out", "run", "--max-steps", "2"]).exit_code == 0
    result = _run(["train", "run/config.yaml", "--resume", "run/checkpoint-last.npz",
                   "--max-steps", "4"])
    assert result.exit_code == 0, result.output
    assert "run/config.yaml --resume run/checkpoint-last.npz" in result.stderr
    assert str(tmp_path) not in result.stderr
