"""Writes that fail as a full, read-only, forbidden or vanished place makes them fail, at
the OS level, under one folder only (the kernel cache and everything else stay real).

ENOSPC: a file is made, but what is written to it goes to /dev/full, where the kernel
        itself fails every write with ENOSPC (os.write and Python's file objects alike).
EROFS, EACCES, ENOENT: creating a file or folder, or opening one to write, fails.

`builtins.open` in a write mode fails too, whatever the code: a write that went around
convtrain.outputs would then fail in the test instead of passing unseen. Root ignores
permission bits and a test cannot mount a read-only or full file system, hence this.
"""

import builtins
import errno
import os

CODES = {"ENOSPC": errno.ENOSPC, "EROFS": errno.EROFS, "EACCES": errno.EACCES,
         "ENOENT": errno.ENOENT}
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def inject(monkeypatch, name, folder, only=None):
    """From now on, writes under folder (whose file name contains `only`, if given) fail
    with errno `name` ("ENOSPC", ...)."""
    code = CODES[name]
    folder = os.path.realpath(folder)
    real_open, real_mkdir = os.open, os.mkdir
    real_builtin_open = builtins.open

    def hit(path):
        if not isinstance(path, (str, bytes, os.PathLike)):
            return False
        full = os.path.realpath(os.fsdecode(path))
        inside = full == folder or full.startswith(folder + os.sep)
        return inside and (only is None or only in os.path.basename(full))

    def failure(path):
        return OSError(code, os.strerror(code), os.fsdecode(path))

    def fake_open(path, flags, mode=0o777, *, dir_fd=None):
        if flags & WRITE_FLAGS and hit(path):
            if code != errno.ENOSPC:
                raise failure(path)
            os.close(real_open(path, flags, mode, dir_fd=dir_fd))  # made, as on a full disk
            return real_open("/dev/full", os.O_WRONLY)
        return real_open(path, flags, mode, dir_fd=dir_fd)

    def fake_mkdir(path, mode=0o777, *, dir_fd=None):
        if code != errno.ENOSPC and hit(path):
            raise failure(path)
        return real_mkdir(path, mode, dir_fd=dir_fd)

    def fake_builtin_open(file, mode="r", *args, **kwargs):
        if any(c in mode for c in "wax+") and hit(file):
            raise failure(file)
        return real_builtin_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(os, "open", fake_open)
    monkeypatch.setattr(os, "mkdir", fake_mkdir)
    monkeypatch.setattr(builtins, "open", fake_builtin_open)


def snapshot(folder):
    """{relative path: bytes} of every file under folder but the run lock (whose only
    content, the pid of the process holding it, each run writes anew)."""
    files = {}
    for root, _, names in os.walk(folder):
        for name in names:
            if name == ".lock":
                continue
            path = os.path.join(root, name)
            with open(path, "rb") as handle:
                files[os.path.relpath(path, folder)] = handle.read()
    return files


def temporary_files(folder):
    return [name for _, _, names in os.walk(folder) for name in names if ".tmp" in name]


def run(args):
    """`convtrain ARGS` in this process (click's runner), any exception raised."""
    from click.testing import CliRunner

    from convtrain.cli import main

    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def one_line_error(result):
    """The one line, starting 'error: ', of a command that failed with exit 2."""
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]
