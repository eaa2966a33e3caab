"""The run folder: made (or reopened by --resume), locked while a run writes into it,
given the resolved config that reproduces the run, and the checkpoints written there.

The lock is an flock on RUN/.lock, held for the life of the process: the kernel
releases it when the process ends, however it ends (SIGKILL included), so a stale
lock cannot block a resume.
"""

import fcntl
import json
import os
import shlex
import shutil
import sys
import time

import numpy as np

from convtrain.run.checkpoint import read_checkpoint, save_checkpoint
from convtrain.errors import UserError
from convtrain.outputs import (
    NOT_A_FOLDER,
    OutputError,
    inside,
    same_file,
    write_text,
    write_whole,
)

LOCK = ".lock"
RESOLVED_CONFIG = "config.yaml"
LAST, BEST = "checkpoint-last.npz", "checkpoint-best.npz"
METRICS = "metrics.jsonl"


def prepare_run_folder(name, out, resume, resumed=None, data_paths=None):
    """The folder to train into, made if missing; a run never writes into another's.

    A new run: `out` (default runs/NAME-TIME), which must be new or empty. --resume: the
    checkpoint's own run folder, when `out` is not given or is that folder; else `out`
    must be new or empty, and gets the history up to the checkpoint (`copy_history`).
    In place, only from the folder's last checkpoint (`_refuse_rewind`; resumed: the
    resume checkpoint's (params, global step), as read). Never in a data folder the run
    reads (data_paths: {key path: path}).

    Returns (folder, the folder to copy the history from, or None)."""
    home = (os.path.dirname(resume) or ".") if resume else None
    if out is None:
        out = home if resume else os.path.join("runs", f"{name}-{time.strftime('%Y%m%d-%H%M%S')}")
    if os.path.exists(out) and not os.path.isdir(out):
        raise UserError(NOT_A_FOLDER, file=out, path="--out")
    for what, path in (data_paths or {}).items():
        if same_file(out, path) or inside(out, path):
            raise UserError(f"is in {path}, the {what} folder this run reads: its files would "
                            f"be read as data; give a run folder outside it", file=out,
                            path="--out")
    in_place = resume is not None and os.path.isdir(out) and same_file(out, home)
    if in_place and not os.path.exists(os.path.join(home, METRICS)):
        raise UserError(f"is not in a run folder (no {METRICS} beside it), so there is no run "
                        f"to continue there: pass --out NEW_FOLDER to continue it in a new "
                        f"one", file=resume, path="--resume")
    if in_place:
        _refuse_rewind(home, resume, resumed)
    if not in_place and os.path.isdir(out) and set(os.listdir(out)) - {LOCK}:
        raise UserError(_occupied(out, home), file=out, path="--out")
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the run folder: {exc.strerror}", file=out,
                          path="--out") from None
    if not os.access(out, os.W_OK):
        raise OutputError("run folder is not writable", file=out, path="--out")
    return out, (None if in_place or resume is None else home)


def _refuse_rewind(home, resume, resumed):
    """A run goes on in its folder from its last checkpoint only (checkpoint-last.npz, or
    a copy of it): from an older one it would replace that checkpoint and the history
    after it; from another run's, it would mix two runs. Both refused."""
    last = os.path.join(home, LAST)
    if resumed is None or not os.path.exists(last) or same_file(last, resume):
        return
    params, resume_step = resumed
    last_params, _, last_meta = read_checkpoint(last)
    last_step = last_meta.get("global_step", 0)
    advice = (f"pass --out NEW_FOLDER to continue from it in a new folder (with the history "
              f"up to it), or --resume {last}")
    if last_step > resume_step:
        raise UserError(f"is from step {resume_step}, and its run went on to step {last_step} "
                        f"({last}); continuing from it here would replace that checkpoint and "
                        f"the history after step {resume_step}: {advice}", file=resume,
                        path="--resume")
    if last_step != resume_step or params.keys() != last_params.keys() or any(
            not np.array_equal(params[key], last_params[key]) for key in params):
        raise UserError(f"is not the last checkpoint of the run in {home} (its "
                        f"{LAST}, step {last_step}), nor a copy of it: another run's, which "
                        f"would replace that run's checkpoints and mix two histories: "
                        f"{advice}", file=resume, path="--resume")


def _occupied(out, home):
    """Why a folder with files in it cannot take this run, and what to do instead."""
    if home is not None:
        return (f"holds files of another run, and a resumed run goes on only in its own "
                f"folder ({home}) or in a new or empty --out, which then gets the history up "
                f"to the checkpoint: leave out --out, or give a new folder")
    if os.path.exists(os.path.join(out, LAST)):
        return (f"run folder exists and is not empty; pass --resume "
                f"{os.path.join(out, LAST)} to continue it, or another --out")
    if os.path.exists(os.path.join(out, METRICS)):
        return ("holds a run that ended before its first checkpoint, so there is nothing to "
                f"resume (the last record of its {METRICS} shows how far it got); give "
                "another --out, or remove the folder")
    return "folder exists and is not empty; give a new or empty folder"


def copy_history(home, out, resume, global_step, epochs_done):
    """Give the new folder `out` of a resumed run its history from the checkpoint's folder
    `home`: metrics.jsonl up to the checkpoint, the checkpoint itself as checkpoint-last.npz,
    and checkpoint-best.npz if it is from no later than the checkpoint. Returns the names
    copied."""
    copied = []
    metrics = os.path.join(home, METRICS)
    if os.path.exists(metrics):
        kept, _ = _records_up_to(metrics, global_step, epochs_done)
        write_text(os.path.join(out, METRICS), "".join(line + "\n" for line in kept), "--out")
        copied.append(METRICS)
    sources = [(resume, LAST)]
    best = os.path.join(home, BEST)
    if os.path.exists(best) and not same_file(best, resume) \
            and read_checkpoint(best)[2].get("global_step", 0) <= global_step:
        sources.append((best, BEST))
    elif same_file(best, resume):
        sources.append((resume, BEST))
    for source, name in sources:
        with open(source, "rb") as handle:
            write_whole(os.path.join(out, name), handle.read(), "--out")
        copied.append(name)
    return copied


def tidy_metrics(metrics_path, global_step, epochs_done):
    """Before a resumed run appends: drop the records a killed run wrote after its last
    checkpoint (those steps run again). Returns how many were dropped."""
    if not os.path.exists(metrics_path):
        return 0
    kept, dropped = _records_up_to(metrics_path, global_step, epochs_done)
    if dropped:
        write_text(metrics_path, "".join(line + "\n" for line in kept))
    return dropped


def _records_up_to(metrics_path, global_step, epochs_done):
    """(the lines of metrics_path up to a checkpoint's step and epoch, how many are not)."""
    try:
        with open(metrics_path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except OSError as exc:
        raise UserError(f"cannot read: {exc.strerror}", file=metrics_path) from None
    kept = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line cut short by the kill
        if record.get("event") == "step" and record.get("step", 0) > global_step:
            continue
        if record.get("event") == "epoch" and record.get("epoch", 0) > epochs_done:
            continue
        kept.append(line)
    return kept, len(lines) - len(kept)


def lock_run_folder(out):
    """Hold RUN/.lock for the rest of this process, or stop (exit 2) before anything is
    written when another process holds it. Returns the open lock file (keep it)."""
    path = os.path.join(out, LOCK)
    try:
        handle = open(path, "a+", encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot open the run folder's lock file: {exc.strerror}", file=path,
                        path="--out") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise UserError(f"another convtrain process is training in this run folder (pid "
                        f"{holder}); wait for it to end, or pass another --out", file=out,
                        path="--out") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def write_resolved_config(config, out):
    """RUN/config.yaml: the config with --set/--epochs applied and defaults filled in,
    written whole. `convtrain train RUN/config.yaml --resume …` continues the run with
    exactly its settings. Returns the path."""
    import yaml

    text = yaml.safe_dump(config.resolved, sort_keys=False, default_flow_style=None)
    return write_text(os.path.join(out, RESOLVED_CONFIG), text)


def remove_temp_checkpoints(out):
    """Temp files of a checkpoint write that a kill interrupted."""
    for name in os.listdir(out):
        if name.startswith(".tmp-") and name.endswith(".npz"):
            os.unlink(os.path.join(out, name))


def invoked_as():
    """The command that started this process, in a form to paste: `convtrain` where that
    name on PATH is this very program, else the path it was started by
    (`.venv/bin/convtrain` after `make demo`), or `python -m convtrain`."""
    started = sys.argv[0] if sys.argv else ""
    if os.path.basename(started) == "convtrain":
        on_path = shutil.which("convtrain")
        if on_path and os.path.realpath(on_path) == os.path.realpath(started):
            return "convtrain"
        return shlex.quote(started)
    if started.endswith(os.path.join("convtrain", "__main__.py")):
        return f"{shlex.quote(sys.executable)} -m convtrain"
    return "convtrain"


class RunCheckpoints:
    """checkpoint-last.npz and checkpoint-best.npz in one run folder."""

    def __init__(self, out):
        self.out = out

    def save(self, name, network, optimizer, meta):
        save_checkpoint(os.path.join(self.out, name), network, optimizer, meta)

    def resume_command(self):
        """The command that continues this run with the very settings it ran with (the
        resolved config carries every --set and --epochs)."""
        from convtrain.run.launch import launched_size, launcher_command

        processes = launched_size() or 1  # any number would do: the results are the same
        launcher = f"{launcher_command()} -n {processes} " if processes > 1 else ""
        return (f"{launcher}{invoked_as()} train "
                f"{shlex.quote(os.path.join(self.out, RESOLVED_CONFIG))} "
                f"--resume {shlex.quote(os.path.join(self.out, LAST))}")

    def what_is_kept(self):
        """The end of a divergence line: which checkpoint is left, if any."""
        path = os.path.join(self.out, LAST)
        if not os.path.exists(path):
            return ("; no checkpoint was written before it (the first comes at the end of "
                    "epoch 1, or after checkpoint.every steps); lower optimizer.lr and try again "
                    f"into another --out ({self.out} keeps this run's {METRICS})")
        step = read_checkpoint(path)[2].get("global_step")
        return (f". The last good checkpoint {path} (step {step}) is left as it was; lower "
                f"optimizer.lr and try again")
