"""Every file convtrain writes goes through here, so that nothing a user made is ever lost.

The rules, for every command:
- A file is written whole or not at all: bytes go to a temporary file beside the target,
  are fsynced, then renamed over it. A write that fails (a missing folder, a read-only or
  full disk, no permission) is an OutputError, one line and exit 2, and leaves no
  temporary file behind; whatever was at the target before is still there, unchanged.
- An append (metrics.jsonl) that fails is cut back to where it started.
- A command never writes over a file it reads, nor over a file it did not make: an
  existing file at a target is replaced only where `check_target` is told it is the
  command's own (this run's checkpoint, a picture of this run), or the user said
  --overwrite and the file is none of a run's own files.

Only os-level calls (os.open, os.write, os.fsync, os.replace) touch the disk here: the
tests inject ENOSPC, EROFS, EACCES and ENOENT at that level.
"""

import errno
import os
import tempfile

from convtrain.errors import UserError

# The files a training run owns in its folder; --overwrite never replaces one of them.
RUN_FILES = ("config.yaml", "metrics.jsonl", "checkpoint-last.npz", "checkpoint-best.npz")


class OutputError(UserError):
    """A file could not be written, or must not be: one line, exit 2."""


NOTHING_CHANGED = "nothing there was changed"
NOT_A_FOLDER = "exists and is not a folder"
IS_A_FOLDER = "is a folder: give the file to write"


def missing_folder(folder):
    return f"the folder {folder} does not exist"


def failed_write(exc, path, flag=None, kept=NOTHING_CHANGED):
    """The OutputError of an OSError met writing path."""
    reason = exc.strerror or str(exc)
    folder = os.path.dirname(os.path.abspath(path))
    if exc.errno == errno.ENOENT and not os.path.isdir(folder):
        reason = missing_folder(folder)
    return OutputError(f"cannot write: {reason}; {kept}", file=path, path=flag)


def same_file(a, b):
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def inside(path, folder):
    """Whether path lies in folder (at any depth), by real paths."""
    if not os.path.isdir(folder):
        return False
    real, home = os.path.realpath(path), os.path.realpath(folder)
    return real != home and os.path.commonpath([real, home]) == home


def belongs_to_a_run(path):
    """Whether path is one of the files a training run keeps in its folder, or a
    checkpoint (any .npz) kept there."""
    folder = os.path.dirname(os.path.abspath(path))
    name = os.path.basename(path)
    return ((name in RUN_FILES or name.endswith(".npz"))
            and os.path.exists(os.path.join(folder, "metrics.jsonl")))


def check_target(path, flag, reads=None, own=None, overwrite=False):
    """Before any work: may `path` be written? Refused (OutputError) when it is a folder,
    when it is a file the command reads or lies in a folder it reads (reads: {what: path},
    e.g. {"--checkpoint": …, "data.train": "images/"}),
    or when it exists and is neither the command's own (own(path) is true) nor given up by
    --overwrite (never a run's own files)."""
    if os.path.isdir(path):
        raise OutputError(IS_A_FOLDER, file=path, path=flag)
    for what, source in (reads or {}).items():
        if source is not None and same_file(path, source):
            raise OutputError(f"is the {what} this command reads: give another file to write",
                              file=path, path=flag)
        if source is not None and inside(path, source):
            raise OutputError(f"is in {source}, the {what} folder this command reads: give a "
                              f"file outside it", file=path, path=flag)
    if not os.path.lexists(path) or (own is not None and own(path)):
        return
    if not overwrite:
        raise OutputError("exists, and convtrain replaces a file only when told: give "
                          "another path, or pass --overwrite to replace it",
                          file=path, path=flag)
    if belongs_to_a_run(path):
        raise OutputError("belongs to a training run (its folder has metrics.jsonl); "
                          "--overwrite never replaces a run's own files or a checkpoint "
                          "kept there: give another path", file=path, path=flag)


def make_folder(folder, flag):
    """The folder files will go to: there already (False), or made now (True); else an
    OutputError."""
    if os.path.isdir(folder):
        return False
    if os.path.lexists(folder):
        raise OutputError(NOT_A_FOLDER, file=folder, path=flag)
    try:
        os.makedirs(folder)
    except OSError as exc:
        raise OutputError(f"cannot create the folder: {exc.strerror or exc}", file=folder,
                          path=flag) from None
    return True


def write_whole(path, data, flag=None, kept=NOTHING_CHANGED):
    """Write bytes `data` to path whole, or not at all (OutputError, no temporary file)."""
    folder = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        handle, tmp = tempfile.mkstemp(prefix=".tmp-", suffix="-" + os.path.basename(path),
                                       dir=folder)
        try:
            _write_all(handle, data)
            os.fsync(handle)
        finally:
            os.close(handle)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's file is its owner's only; not an output
        os.replace(tmp, path)
        tmp = None
        _sync_folder(folder)
    except OSError as exc:
        raise failed_write(exc, path, flag, kept) from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    return path


def write_text(path, text, flag=None, kept=NOTHING_CHANGED):
    return write_whole(path, text.encode("utf-8"), flag, kept)


def _write_all(handle, data):
    view = memoryview(data)
    while view:
        view = view[os.write(handle, view):]


def _sync_folder(folder):
    """The rename is on disk once the folder is; a file system that cannot fsync a folder
    (some network ones) has made it as durable as it can."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


class AppendFile:
    """A file written line by line (metrics.jsonl): each append is flushed to the file at
    once (a killed run keeps every line), and one that fails is cut back to where it began,
    so the file holds whole lines only."""

    def __init__(self, path, flag=None):
        self.path = path
        self.flag = flag
        try:
            self.handle = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        except OSError as exc:
            raise failed_write(exc, path, flag) from None

    def size(self):
        return os.fstat(self.handle).st_size

    def append(self, text):
        start = self.size()
        try:
            _write_all(self.handle, text.encode("utf-8"))
        except OSError as exc:
            self.cut_back(start)
            raise failed_write(exc, self.path, self.flag,
                               "the lines written before are whole") from None

    def cut_back(self, size):
        """Back to `size` bytes (what it held before the appends being taken back)."""
        try:
            os.ftruncate(self.handle, size)
        except OSError:
            pass  # then the appends that failed wrote nothing either

    def close(self):
        os.close(self.handle)
