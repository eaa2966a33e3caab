"""Where a run's words and numbers go: the console, metrics.jsonl and TensorBoard.

By the convention of command-line tools, what a run produces goes to stdout — the
layer summary, the per-layer tables, the epoch lines and the line that says why a
run ended early — so `convtrain train x.yaml > log.txt` keeps the log. Progress
bars, notes ("kernels ready", "run folder: …") and warnings go to stderr, where a
terminal still shows them. `--quiet` keeps the epoch lines and the end-of-run line;
errors always print.
"""

import contextlib
import os
import sys

import click

from convtrain.run import report
from convtrain.outputs import AppendFile
from convtrain.run.runfolder import BEST, LAST, METRICS


class _SilentBar:
    def update(self, steps, item=None):
        pass


class RunLog:
    def __init__(self, quiet, epochs, console=True):
        """quiet: epoch lines and end-of-run lines only; console False: nothing printed
        (the Python API's default), metrics.jsonl written all the same."""
        self.quiet = quiet
        self.console = console
        self.epochs = epochs
        self.metrics = None
        self.tensorboard = None
        self.bar_active = False

    def open(self, out_dir, tensorboard=False, first_step=0):
        """Append to out_dir/metrics.jsonl (and start TensorBoard event files there)."""
        self.metrics = AppendFile(os.path.join(out_dir, METRICS))
        if tensorboard:
            from convtrain.run.tensorboard import EventWriter

            self.tensorboard = EventWriter(out_dir, first_step)

    def close(self):
        if self.tensorboard is not None:
            self.tensorboard.close()
        if self.metrics is not None:
            self.metrics.close()

    def written(self):
        """metrics.jsonl's size now, for `cut_back`."""
        return self.metrics.size()

    def cut_back(self, size):
        """Take back the records written since metrics.jsonl had `size` bytes."""
        self.metrics.cut_back(size)

    def record(self, record):
        """One metrics.jsonl line, written at once: a killed run keeps every record it
        logged."""
        self.metrics.append(report.dumps(record) + "\n")
        if self.tensorboard is not None:
            self.tensorboard.add(record)

    def step(self, network, updates, fields, delta_norms=None):
        """The per-layer record and table after a step; fields: epoch, step, loss, lr and
        any extras for the record; delta_norms as report.layer_record takes them."""
        layers = report.layer_record(network, updates, delta_norms)
        for name, times in (network.timings or {}).items():
            layers[name].update(times)
        record = {"event": "step", **fields, "layers": layers}
        self.record(record)
        self.result(report.layer_table(fields["step"], fields["epoch"], fields["loss"],
                                       fields["lr"], layers))

    def result(self, text, quiet_too=False):
        """A line of the run's log, on stdout."""
        if self.console and (quiet_too or not self.quiet):
            self._clear_bar()
            click.echo(text)

    def note(self, text, quiet_too=False):
        """Progress and diagnostics, on stderr."""
        if self.console and (quiet_too or not self.quiet):
            self._clear_bar()
            click.echo(text, err=True)

    def stopped_early(self, epoch, reason, best_epoch):
        self.record({"event": "early_stop", "epoch": epoch, "reason": reason,
                     "best_epoch": best_epoch})
        self.result(f"early stopping after epoch {epoch}: {reason}. {BEST} holds epoch "
                    f"{best_epoch}", quiet_too=True)

    def stopped_at_max_steps(self, max_steps, resume_command):
        self.note(f"stopped after --max-steps {max_steps}; {LAST} holds the state; "
                  f"continue with: {resume_command}", quiet_too=True)

    def interrupted(self, step, resume_command):
        self.note(f"interrupted at step {step}; checkpoint written. Resume with: "
                  f"{resume_command}", quiet_too=True)

    def _clear_bar(self):
        # The bar redraws itself in place on stderr (only ever a terminal); a line printed
        # after it would start in the middle of the bar's line.
        if self.bar_active:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()

    @contextlib.contextmanager
    def progress_bar(self, epoch, batches, done):
        """click's progress bar on stderr, on a terminal only (elsewhere click would still
        print its label once an epoch, noise in a CI log); silent for --quiet."""
        if self.quiet or not self.console or not sys.stderr.isatty():
            yield _SilentBar()
            return
        with click.progressbar(length=batches, label=f"epoch {epoch}/{self.epochs}",
                               file=sys.stderr, show_pos=True, show_eta=True,
                               item_show_func=lambda loss: None if loss is None
                               else f"loss {loss:.4f}") as bar:
            bar.update(done)
            self.bar_active = True
            try:
                yield bar
            finally:
                self.bar_active = False


class SilentLog(RunLog):
    """The log of a process other than rank 0 of a run on several (convtrain.run.distributed):
    rank 0 says and writes everything; this one nothing."""

    def open(self, out_dir, tensorboard=False, first_step=0):
        pass

    def written(self):
        return 0

    def cut_back(self, size):
        pass

    def record(self, record):
        pass

    def step(self, network, updates, fields, delta_norms=None):
        pass

    def result(self, text, quiet_too=False):
        pass

    def note(self, text, quiet_too=False):
        pass

    @contextlib.contextmanager
    def progress_bar(self, epoch, batches, done):
        yield _SilentBar()
