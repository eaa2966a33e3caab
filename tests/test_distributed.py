"""`mpiexec -n K convtrain train`: real MPI (MPICH and mpi4py from the test extra), real
processes. Weights and metrics must not depend on K; a process that dies, fails or is
interrupted must end all of them; bad input is one line from rank 0."""

import json
import os
import signal
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from convtrain.run.checkpoint import read_checkpoint

MPIEXEC = os.path.join(os.path.dirname(sys.executable), "mpiexec")
TIMING_FIELDS = ("seconds", "images_per_s", "forward_ms", "backward_ms")

# conv, batchnorm of images and of vectors, dropout and dense: every layer whose training
# step sums over the batch or draws over it. 1,438 training samples in batches of 20: 72
# steps an epoch, the last batch of 18 split unevenly among four processes (4 + 4 + 5 + 5).
MIXED = """\
name: mixed
seed: 3
input: [1, 8, 8]
layers:
  - {type: conv2d, filters: 6, kernel: 3, padding: same}
  - {type: batchnorm}
  - {type: relu}
  - {type: maxpool, size: 2}
  - {type: conv2d, filters: 6, kernel: 3, padding: same, algorithm: winograd}
  - {type: relu}
  - {type: dropout, rate: 0.2}
  - {type: flatten}
  - {type: dense, units: 64}
  - {type: batchnorm}
  - {type: relu}
  - {type: dense, units: 10}
loss: softmax_cross_entropy
optimizer: {type: sgd, lr: 0.05, momentum: 0.9, weight_decay: 0.0001}
train: {epochs: EPOCHS, batch_size: 20, shuffle: true}
data:
  train: {format: builtin, name: digits, scale: 16}
  val: {split: 0.2}
log: {every: 5}
"""


def mixed(epochs=2):
    return MIXED.replace("EPOCHS", str(epochs))


def convtrain(*args, processes=None, cwd=None, timeout=180):
    """Run `convtrain ARGS`, under `mpiexec -n processes` when given."""
    command = [sys.executable, "-m", "convtrain", *args]
    if processes:
        command = [MPIEXEC, "-n", str(processes)] + command
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=timeout)


def arrays(folder, name="checkpoint-last.npz"):
    with np.load(os.path.join(folder, name), allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def assert_same_arrays(first, second):
    assert sorted(first) == sorted(second)
    different = [key for key in first if not np.array_equal(first[key], second[key])]
    assert not different, f"differ: {different}"


def records(folder, events=("step", "epoch")):
    """metrics.jsonl's step and epoch records, less the clock's fields."""
    kept = []
    with open(os.path.join(folder, "metrics.jsonl"), encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            if record["event"] not in events:
                continue
            for field in TIMING_FIELDS:
                record.pop(field, None)
            for layer in record.get("layers", {}).values():
                for field in TIMING_FIELDS:
                    layer.pop(field, None)
            kept.append(record)
    return kept


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The mixed config trained for 2 epochs by one ordinary process."""
    folder = tmp_path_factory.mktemp("reference")
    (folder / "mixed.yaml").write_text(mixed())
    result = convtrain("train", "mixed.yaml", "--out", "one", cwd=folder)
    assert result.returncode == 0, result.stderr
    return folder


@pytest.mark.parametrize("processes", [1, 2, 4])
def test_any_number_of_processes_gives_bit_identical_checkpoints_and_metrics(
        reference, processes, tmp_path):
    (tmp_path / "mixed.yaml").write_text(mixed())
    result = convtrain("train", "mixed.yaml", "--out", "run", processes=processes, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for name in ("checkpoint-last.npz", "checkpoint-best.npz"):
        assert_same_arrays(arrays(reference / "one", name), arrays(tmp_path / "run", name))
    expected = records(reference / "one")
    assert len(expected) == 2 * 72 // 5 + 2  # a step record every 5 steps, 2 epochs
    assert records(tmp_path / "run") == expected
    # Rank 0 alone prints: the epoch lines once.
    assert result.stdout.count("epoch 2/2") == 1
    if processes > 1:
        assert f"{processes} processes share each batch of 20" in result.stderr


def test_a_checkpoint_of_two_processes_resumes_in_one_to_the_same_weights(
        reference, tmp_path):
    (tmp_path / "mixed.yaml").write_text(mixed())
    # Step 100 is in the middle of epoch 2.
    cut = convtrain("train", "mixed.yaml", "--out", "run", "--max-steps", "100", processes=2,
                    cwd=tmp_path)
    assert cut.returncode == 0, cut.stderr
    # mpiexec named so that the line pastes: by its path when it is not on PATH
    launcher = "mpiexec" if shutil.which("mpiexec") else MPIEXEC
    assert f"continue with: {launcher} -n 2 " in cut.stderr
    resumed = convtrain("train", "mixed.yaml", "--resume", "run/checkpoint-last.npz",
                        cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_arrays(arrays(reference / "one"), arrays(tmp_path / "run"))
    assert records(tmp_path / "run") == records(reference / "one")


def _processes_of(out_folder):
    """{pid: PMI rank} of the convtrain processes training into out_folder."""
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                command = handle.read().split(b"\0")
            with open(f"/proc/{pid}/environ", "rb") as handle:
                environment = handle.read().split(b"\0")
        except OSError:
            continue
        if b"convtrain" in command and out_folder.encode() in command:
            ranks = [v.split(b"=")[1] for v in environment if v.startswith(b"PMI_RANK=")]
            if ranks:
                found[int(pid)] = int(ranks[0])
    return found


def test_a_process_killed_mid_epoch_ends_them_all_and_its_checkpoint_resumes(tmp_path):
    epochs = 20
    (tmp_path / "mixed.yaml").write_text(mixed(epochs))
    out = str(tmp_path / "killed")
    launcher = subprocess.Popen([MPIEXEC, "-n", "2", sys.executable, "-m", "convtrain", "train",
                                 "mixed.yaml", "--out", out, "--set", "checkpoint.every=7",
                                 "--quiet"], cwd=tmp_path, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    checkpoint = os.path.join(out, "checkpoint-last.npz")
    deadline = time.monotonic() + 120
    while not os.path.exists(checkpoint) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert os.path.exists(checkpoint), launcher.communicate()
    ranks = _processes_of(out)
    assert sorted(ranks.values()) == [0, 1]
    victim = next(pid for pid, rank in ranks.items() if rank == 1)
    os.kill(victim, signal.SIGKILL)
    killed = time.monotonic()
    launcher.communicate(timeout=60)  # raises if the others still run after 60 s
    while _processes_of(out) and time.monotonic() < killed + 60:
        time.sleep(0.1)
    assert not _processes_of(out), "a process outlived the one killed"
    assert launcher.returncode != 0
    # The last checkpoint loads, and the run goes on to the end, in one process.
    assert 0 < read_checkpoint(checkpoint)[2]["global_step"] < epochs * 72
    resumed = convtrain("train", "mixed.yaml", "--resume", checkpoint, "--quiet", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert f"epoch {epochs}/{epochs}" in resumed.stdout
    whole = convtrain("train", "mixed.yaml", "--out", "whole", "--quiet", cwd=tmp_path)
    assert_same_arrays(arrays(tmp_path / "whole"), arrays(out))


def _two_processes_past_their_first_epoch(tmp_path, out):
    """mpiexec -n 2 training the mixed config for 200 epochs into out, once it has ended
    its first epoch: the running launcher."""
    (tmp_path / "mixed.yaml").write_text(mixed(200))
    launcher = subprocess.Popen([MPIEXEC, "-n", "2", sys.executable, "-m", "convtrain", "train",
                                 "mixed.yaml", "--out", out, "--quiet"], cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = os.path.join(out, "metrics.jsonl")
    deadline = time.monotonic() + 120
    while not (os.path.exists(metrics)
               and open(metrics, encoding="utf-8").read().count('"event": "epoch"') >= 1):
        assert time.monotonic() < deadline and launcher.poll() is None
        time.sleep(0.05)
    return launcher


def test_ctrl_c_stops_every_process_after_the_same_step(tmp_path):
    launcher = _two_processes_past_their_first_epoch(tmp_path, str(tmp_path / "run"))
    launcher.send_signal(signal.SIGINT)  # what Ctrl-C does: mpiexec hands it to each
    _, stderr = launcher.communicate(timeout=60)
    assert launcher.returncode == 130, stderr
    assert stderr.count("interrupted at step") == 1
    step = int(stderr.split("interrupted at step ")[1].split(";")[0])
    assert read_checkpoint(str(tmp_path / "run" / "checkpoint-last.npz"))[2]["global_step"] == step


def test_ctrl_c_reaching_one_process_first_stops_them_all(tmp_path):
    """Rank 1 is interrupted alone: every process stops after the same step. Rank 0's own
    SIGINT, coming once they have agreed to stop, is not taken for a second Ctrl-C."""
    out = str(tmp_path / "run")
    launcher = _two_processes_past_their_first_epoch(tmp_path, out)
    ranks = {rank: pid for pid, rank in _processes_of(out).items()}
    os.kill(ranks[1], signal.SIGINT)
    time.sleep(0.05)  # the processes agree after the step they are in; rank 0 stops
    try:
        os.kill(ranks[0], signal.SIGINT)
    except ProcessLookupError:
        pass  # already done
    _, stderr = launcher.communicate(timeout=60)
    assert launcher.returncode == 130, stderr
    assert stderr.count("interrupted at step") == 1, stderr


def one_line(stderr):
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


def test_a_batch_that_the_processes_cannot_share_is_one_line_from_rank_0(tmp_path):
    (tmp_path / "mixed.yaml").write_text(mixed().replace("batch_size: 20", "batch_size: 21"))
    result = convtrain("train", "mixed.yaml", processes=2, cwd=tmp_path)
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert line.startswith("error: mixed.yaml:19: train.batch_size: 21 samples cannot be "
                           "shared equally by 2 processes"), line
    assert "(e.g. 20 or 22)" in line
    assert not (tmp_path / "runs").exists()
    timed = convtrain("time", "mixed.yaml", "--batch", "9", processes=2, cwd=tmp_path)
    assert timed.returncode == 2
    assert one_line(timed.stderr).startswith("error: --batch: 9 samples cannot be shared")


def test_more_threads_than_a_process_share_of_the_cores_is_one_warning(tmp_path):
    (tmp_path / "mixed.yaml").write_text(mixed())
    too_many = len(os.sched_getaffinity(0)) // 2 + 1  # each of 2 processes has half
    result = convtrain("train", "mixed.yaml", "--out", "run", "--max-steps", "2", "--threads",
                       str(too_many), "--quiet", processes=2, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning")]
    assert len(warnings) == 1, result.stderr
    assert (f"warning: --threads {too_many} is more than the "
            f"{len(os.sched_getaffinity(0)) // 2} core") in warnings[0]
    assert "with the other processes on this machine" in warnings[0]


def test_data_that_only_some_processes_can_read_is_one_line_naming_them(tmp_path):
    """Each process starts in its own folder (mpiexec's MPMD form): a relative data path
    finds the file in the first and nothing in the second, as on a machine without it."""
    config = mixed().replace("{format: builtin, name: digits, scale: 16}",
                             "{format: npz, path: digits.npz}").replace("val: {split: 0.2}",
                                                                        "val: null")
    rng = np.random.default_rng(0)
    for folder in ("has", "lacks"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "mixed.yaml").write_text(config)
    np.savez(tmp_path / "has" / "digits.npz", x=rng.random((40, 1, 8, 8), dtype=np.float32),
             y=rng.integers(0, 10, 40))
    command = [sys.executable, "-m", "convtrain", "train", "mixed.yaml", "--out",
               str(tmp_path / "run")]
    result = subprocess.run([MPIEXEC, "-n", "1", "-wdir", str(tmp_path / "has")] + command
                            + [":", "-n", "1", "-wdir", str(tmp_path / "lacks")] + command,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert line.startswith("error: digits.npz: data.train: no such file"), line
    assert "(on process 1 of 2, on " in line and "1 other could read it)" in line
    assert not (tmp_path / "run").exists()


def test_divergence_is_one_line_and_ends_every_process(tmp_path):
    (tmp_path / "mixed.yaml").write_text(mixed())
    result = convtrain("train", "mixed.yaml", "--out", "run", "--set", "optimizer.lr=1e30",
                       "--quiet", processes=2, cwd=tmp_path)
    assert result.returncode == 1
    line = one_line(result.stderr)
    assert line.startswith("error: training diverged at step"), line


def test_a_failed_checkpoint_write_ends_every_process(tmp_path):
    (tmp_path / "mixed.yaml").write_text(mixed())
    first = convtrain("train", "mixed.yaml", "--out", "run", "--max-steps", "30", "--quiet",
                      processes=2, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    # checkpoint-best.npz, written at the end of epoch 1, cannot be replaced by a file.
    (tmp_path / "run" / "checkpoint-best.npz").mkdir()
    result = convtrain("train", "mixed.yaml", "--resume", "run/checkpoint-last.npz", "--quiet",
                       processes=2, cwd=tmp_path, timeout=120)
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert line.startswith("error: run/checkpoint-best.npz: cannot write"), line


def test_an_ordinary_run_never_loads_mpi(tmp_path):
    (tmp_path / "mixed.yaml").write_text(mixed())
    script = ("import sys\nfrom convtrain.cli import main\n"
              "try:\n    main(['train', 'mixed.yaml', '--max-steps', '2', '--out', 'run'])\n"
              "except SystemExit as exc:\n    assert exc.code in (0, None), exc.code\n"
              "print('mpi4py' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "False"


def test_commands_that_do_not_share_their_work_run_once(tmp_path):
    (tmp_path / "mixed.yaml").write_text(mixed())
    alone = convtrain("summary", "mixed.yaml", cwd=tmp_path)
    launched = convtrain("summary", "mixed.yaml", processes=2, cwd=tmp_path)
    assert launched.returncode == 0 and launched.stdout == alone.stdout
    smoke = convtrain("train", "mixed.yaml", "--smoke", processes=2, cwd=tmp_path)
    assert smoke.returncode == 0, smoke.stderr
    assert len(smoke.stdout.splitlines()) == 1, smoke.stdout


def test_more_processes_than_cores_is_one_warning(tmp_path):
    (tmp_path / "mixed.yaml").write_text(mixed())
    cores = len(os.sched_getaffinity(0))
    result = convtrain("train", "mixed.yaml", "--out", "run", "--max-steps", "2", "--quiet",
                       processes=2 * cores, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning")]
    plural = "s" if cores > 1 else ""
    assert warnings == [f"warning: {2 * cores} processes on {cores} core{plural}: each has 0.5 "
                        f"of a core, and they take turns (slower, same results); start at most "
                        f"{cores} per machine"], result.stderr
