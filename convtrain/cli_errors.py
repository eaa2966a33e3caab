"""How the command line fails: one line on stderr and an exit code, never a traceback for
bad input (exit 2), a failed run (exit 1) or Ctrl-C (130); of a run on several
processes, one line for all, and one process's failure ends them all."""

import errno
import functools
import sys

import click

from convtrain.errors import EndedElsewhere, RunFailed, UserError, printable


def reports_errors(command):
    """Turn UserError into one line + exit 2 and RunFailed into one line + exit 1. Of a
    run on several processes (convtrain.run.distributed), only rank 0 prints an error that
    every process met; one that a process met alone ends the whole job."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except EndedElsewhere as exc:
            sys.exit(exc.exit_code)
        except UserError as exc:
            # The same input gives every process the same error; input that only some can
            # read is agreed on first (MpiTeam.all_succeed).
            _fail(exc.one_line(), exc.exit_code, everywhere=True)
        except RunFailed as exc:
            _fail(printable(f"error: {exc}"), RunFailed.exit_code,
                  getattr(exc, "everywhere", False))
        except KeyboardInterrupt:
            _fail("error: interrupted", 130, everywhere=False)
        except MemoryError as exc:
            _fail(f"error: out of memory ({exc}); lower train.batch_size or the layer sizes",
                  RunFailed.exit_code, everywhere=False)
        except OSError as exc:
            # A write convtrain does not make itself (Numba's kernel cache, TensorBoard's
            # event files) into a full, read-only or missing place: still one line.
            if exc.errno not in _WRITE_FAILURES:
                raise
            where = f"{exc.filename}: " if exc.filename else ""
            _fail(printable(f"error: {where}cannot write: {exc.strerror}"), UserError.exit_code,
                  everywhere=False)
        except Exception:
            from convtrain.run.distributed import joined

            if joined() is not None:  # a bug: say where, and end the other processes too
                import traceback

                traceback.print_exc()
                joined().abort(1)
            raise

    return wrapper


_WRITE_FAILURES = (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOENT,
                   errno.EDQUOT)


def _fail(line, exit_code, everywhere):
    """Print line and exit. On one of several processes: only rank 0 prints an error met
    `everywhere`; one met here alone is printed with this process's rank and ends all."""
    from convtrain.run.distributed import joined
    from convtrain.run.launch import launched_rank

    team = joined()
    if team is not None and not everywhere:
        click.echo(line + (f" (process {team.rank} of {team.size})" if team.rank else ""),
                   err=True)
        team.abort(exit_code)
    if not launched_rank():
        click.echo(line, err=True)
    sys.exit(exit_code)


class OneLineErrors(click.Group):
    """Click's usage errors print three lines; convtrain promises one (exit code 2)."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            result = super().main(args, prog_name, complete_var, False, **extra)
        except click.exceptions.NoArgsIsHelpError as exc:
            click.echo(exc.format_message())
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            hint = ""
            ctx = getattr(exc, "ctx", None)
            if ctx is not None:
                hint = f" (see {ctx.command_path} --help)"
            from convtrain.run.launch import launched_rank

            if not launched_rank():  # of several processes, only the first says it
                click.echo(f"error: {exc.format_message()}{hint}", err=True)
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:
            click.echo("aborted", err=True)
            sys.exit(1)
        sys.exit(result if isinstance(result, int) else 0)
