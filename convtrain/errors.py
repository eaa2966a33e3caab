"""The errors convtrain reports to a user as one line, and their exit codes, and the wording
of the messages more than one place gives."""

import os


def printable(text):
    """text with control characters escaped (a "\\r" in a YAML string, say), so that a
    report quoting it stays on one line."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii")
                   for ch in str(text))


def no_such(what):
    """'no such file (relative paths start at /cwd)': a path that is not there, and where a
    relative one was looked for. what: file, folder, file or folder."""
    return f"no such {what} (relative paths start at {os.getcwd()})"


class UserError(Exception):
    """Bad input from the user: a config, a data file, a checkpoint, a flag.

    Rendered as one line, ``FILE:LINE: KEY.PATH: message``, with exit code 2.
    """

    exit_code = 2

    def __init__(self, message, file=None, path=None, line=None):
        super().__init__(message)
        self.message = message
        self.file = file
        self.path = path
        self.line = line

    def one_line(self):
        where = ""
        if self.file:
            where = str(self.file)
            if self.line:
                where += f":{self.line}"
            where += ": "
        if self.path:
            where += f"{self.path}: "
        return printable(f"error: {where}{self.message}")


class ConfigError(UserError):
    """The YAML spec is invalid."""


class DataError(UserError):
    """A data file is missing, unreadable or does not fit the spec."""


class RunFailed(Exception):
    """A run that started and failed (a non-finite loss, say): exit code 1. `step`: the
    step it failed at, for its metrics record (None where it is not one step's)."""

    exit_code = 1

    def __init__(self, message, step=None):
        super().__init__(message)
        self.step = step


class EndedElsewhere(Exception):
    """Another process of a run of several (convtrain.run.distributed) failed and reports why;
    this one ends with the same exit code and prints nothing."""

    def __init__(self, exit_code):
        super().__init__(f"ended by another process (exit code {exit_code})")
        self.exit_code = exit_code


def everywhere(exc):
    """Mark exc as raised by every process of a run of several at the same point (they all
    saw the same non-finite loss, or were told of one's failure): each then ends with its
    exit code, and only rank 0 prints it. An error without the mark, on a process of
    several, ends the whole job (distributed.MpiTeam.abort)."""
    exc.everywhere = True
    return exc
