"""The run folder: made (or reopened by --resume), locked while a run writes into it,
given the resolved config that reproduces the run, and the checkpoints written there.

The lock is an flock on RUN/.lock, held for the life of the process: the kernel
releases it when the process ends, however it ends (SIGKILL included), so a stale
lock cannot block a resume.
"""

import fcntl
import os
import shlex
import shutil
import sys
import time

from convtrain.checkpoint import read_checkpoint, save_checkpoint
from convtrain.errors import RunFailed, UserError

LOCK = ".lock"
RESOLVED_CONFIG = "config.yaml"
LAST, BEST = "checkpoint-last.npz", "checkpoint-best.npz"


def prepare_run_folder(name, out, resume):
    """The folder to train into: out, else the checkpoint's folder on --resume, else
    runs/NAME-TIME. Made if missing; refused if not writable, or if a fresh run would
    mix into an earlier run's files."""
    if out is None:
        if resume:
            out = os.path.dirname(resume) or "."  # as the user wrote it, relative or not
        else:
            out = os.path.join("runs", f"{name}-{time.strftime('%Y%m%d-%H%M%S')}")
    if os.path.exists(out) and not os.path.isdir(out):
        raise UserError("exists and is not a folder", file=out, path="--out")
    if not resume and os.path.isdir(out) and set(os.listdir(out)) - {LOCK}:
        raise UserError("run folder exists and is not empty; pass --resume "
                        "CHECKPOINT to continue it, or another --out", file=out, path="--out")
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the run folder: {exc.strerror}", file=out,
                        path="--out") from None
    if not os.access(out, os.W_OK):
        raise UserError("run folder is not writable", file=out, path="--out")
    return out


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
    written atomically. `convtrain train RUN/config.yaml --resume …` continues the run
    with exactly its settings. Returns the path."""
    import yaml

    path = os.path.join(out, RESOLVED_CONFIG)
    tmp = path + ".tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            yaml.safe_dump(config.resolved, handle, sort_keys=False, default_flow_style=None)
        os.replace(tmp, path)
    except OSError as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise UserError(f"cannot write the resolved config: {exc.strerror or exc}",
                        file=path, path="--out") from None
    return path


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
        path = os.path.join(self.out, name)
        try:
            save_checkpoint(path, network, optimizer, meta)
        except OSError as exc:
            raise RunFailed(f"cannot write {path}: {exc.strerror or exc}. The checkpoint "
                            f"there before, if any, is whole and unchanged") from None

    def resume_command(self):
        """The command that continues this run with the very settings it ran with (the
        resolved config carries every --set and --epochs)."""
        from convtrain.launch import launched_size, launcher_command

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
                    "epoch 1, or after checkpoint.every steps); lower optimizer.lr and try again")
        step = read_checkpoint(path)[2].get("global_step")
        return (f". The last good checkpoint {path} (step {step}) is left as it was; lower "
                f"optimizer.lr and try again")
