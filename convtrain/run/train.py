"""The training loop: epochs of shuffled batches, validation, checkpoints.

Shuffling is a pure function of (seed, epoch), and a checkpoint records how
many batches of the current epoch are done, so `--resume` replays nothing and
skips nothing: it continues with the very next batch. Where the words and numbers
go is runlog.py's business; the counters a checkpoint keeps are runstate.py's.
"""

import os
import signal
import time

import numpy as np

from convtrain.run import report
from convtrain.data.augment import EpochBatches
from convtrain.run.compiling import ready_kernels
from convtrain.errors import RunFailed, UserError, everywhere
from convtrain.model.network import Network
from convtrain.model.optim import Optimizer, learning_rate, step_learning_rate
from convtrain.run.runfolder import (
    BEST,
    LAST,
    METRICS,
    RESOLVED_CONFIG,
    RunCheckpoints,
    remove_temp_checkpoints,
    tidy_metrics,
    write_resolved_config,
)
from convtrain.run.runlog import RunLog, SilentLog
from convtrain.run.runstate import RunState, init_run, resume_run
from convtrain.model.step import Diverged, train_step
from convtrain.outputs import write_text
from convtrain.team import Solo

EVAL_BATCH = 256
# An epoch's training accuracy is "at chance" when it got less than this fraction of the
# way from chance to 1: under 0.145 for 10 balanced classes. A run that learns anything
# clears it in its first epoch (digits: 0.67); lr=5 on digits stayed at 0.10.
CHANCE_MARGIN = 0.05
# A network is judged at chance only after this many steps (as many as --smoke takes):
# after an epoch of 2 steps, chance is where every network still is.
CHANCE_MIN_STEPS = 20


def evaluate(network, x, y, batch_size=EVAL_BATCH, predictions=None, team=None):
    """(mean loss, accuracy) over (x, y), forward only; fills `predictions` (N,) with the
    predicted classes when given. Processes sharing the work (team) take every K-th batch;
    the batches' losses are added up in order all the same."""
    team = team or Solo()
    batches = {}  # start: (loss, correct)
    for start in range(team.rank * batch_size, len(y), team.size * batch_size):
        scores = network.forward(x[start:start + batch_size])
        labels = y[start:start + batch_size]
        loss, _, _ = network.loss_fn(scores, labels)
        predicted = np.argmax(scores, axis=1)
        batches[start] = (loss, int(np.sum(predicted == labels)))
        if predictions is not None:
            predictions[start:start + batch_size] = predicted
    for theirs in team.allgather(batches):
        batches.update(theirs)
    total_loss, correct = 0.0, 0
    for start in sorted(batches):
        loss, right = batches[start]
        total_loss += loss * len(y[start:start + batch_size])
        correct += right
    return total_loss / len(y), correct / len(y)


class _StopFlag:
    """SIGINT sets `raised`; the loop finishes the current step, checkpoints, and exits 130.
    A second SIGINT to this process stops it at once.

    The loop acts on `agreed`: whether any process of the run was interrupted, asked after
    each step (team.any), so that all stop after the same one. `raised` is never written
    but by the handler: a SIGINT that comes while the processes are agreeing (the handler
    runs once the MPI call returns) counts at the next step instead of being overwritten.
    And mpiexec hands Ctrl-C to every process, so this one's may come after the others
    agreed to stop: that is no second Ctrl-C."""

    def __init__(self):
        self.raised = False
        self.agreed = False
        self.received = 0

    def __call__(self, signum, frame):
        self.received += 1
        if self.received > 1:
            raise KeyboardInterrupt
        self.raised = True

    def agree(self, team):
        """Whether to stop now: this process or another was interrupted."""
        self.agreed = self.agreed or team.any(self.raised)
        return self.agreed


class Trainer:
    def __init__(self, config, datasets, quiet=False, max_steps=None, classes=None, team=None,
                 console=True):
        """datasets: (x, y, val_x, val_y) from `load_datasets`; classes: the class names
        the checkpoints keep (`data.class_names`), or None; team: the processes sharing
        each batch (convtrain.team; default this one alone). Every process keeps the
        same state; only rank 0 prints and writes."""
        self.config = config
        self.datasets = datasets
        self.max_steps = max_steps
        self.team = team or Solo()
        self.network = Network(config)
        self.network.mode.team = self.team
        if config.log.timing:
            self.network.timings = {}
        self.optimizer = Optimizer(config.optimizer, self.network)
        self.state = RunState(config, classes)
        self.log = (RunLog if self.team.is_root else SilentLog)(quiet, config.train.epochs, console)
        self.checkpoints = None
        self.chance = chance_level(datasets[1], config.num_outputs)
        self.warned_chance = False
        # (notes, metrics record) of --resume and --init-from, said once the run folder
        # is locked.
        self.opening = []
        self.saved = 0  # checkpoints this run wrote

    def resume_from(self, checkpoint, path):
        """Continue from a checkpoint read by `read_checkpoint` from path."""
        self.opening.append(resume_run(checkpoint, path, self.network, self.optimizer,
                                       self.state))

    def init_from(self, checkpoint, path, skip=()):
        """Start from a checkpoint's weights (fine-tuning); see `init_run`."""
        self.opening.append(init_run(checkpoint, path, self.config, self.network, skip))

    def run(self, out_dir):
        """Train into the run folder out_dir (metrics.jsonl, checkpoints). Returns the best
        epoch's summary."""
        self.checkpoints = SharedCheckpoints(out_dir, self.team)
        for notes, _ in self.opening:
            for note, quiet_too in notes:
                self.log.note(note, quiet_too=quiet_too)
        x, y, val_x, val_y = self.datasets
        compile_s = _ready_kernels(self, x, y)
        state = self.state
        if state.resumed:
            self.checkpoints.tidy_for_resume(state, self.log)
        stop = _StopFlag()
        previous = signal.signal(signal.SIGINT, stop)
        try:
            self.log.open(out_dir, self.config.log.tensorboard, state.global_step)
            self._begin(compile_s)
            for epoch in range(state.epochs_done + 1, self.config.train.epochs + 1):
                if not self._epoch(epoch, x, y, val_x, val_y, stop):
                    break
            return state.best
        except RunFailed as exc:
            self._record_failure(exc)
            raise
        finally:
            # A run of several processes that agreed to stop on a Ctrl-C ends now, with exit
            # 130: the Ctrl-C mpiexec hands this process may still be on its way, and must not
            # kill it while MPI shuts down (SIG_IGN holds until exit; a Python handler would not).
            stopping_together = stop.agreed and self.team.size > 1
            signal.signal(signal.SIGINT, signal.SIG_IGN if stopping_together else previous)
            self.log.close()

    def _record_failure(self, exc):
        """The last record of a run that failed (diverged) says so and why: the folder
        holds how it ended. A resume that failed before its first checkpoint gives the
        folder back its config.yaml: the printed resume command must not meet the settings
        that failed. If even that cannot be written, the failure is still said."""
        try:
            self.log.record({"event": "failed", "step": exc.step,
                             "reason": str(exc)})
            if self.state.resumed and not self.saved:
                self.checkpoints.put_config_back()
        except UserError:
            pass

    def _begin(self, compile_s):
        """The opening records, and a resumed run's config.yaml (its new settings): all
        written, or none (a resume that cannot begin leaves its folder as it was)."""
        begun = self.log.written()
        try:
            for _, record in self.opening:
                self.log.record(record)
            self.log.record({"event": "compile", "seconds": compile_s})
            if self.state.resumed:
                self.checkpoints.write_config(self.config)
        except UserError:
            self.log.cut_back(begun)
            raise

    def _epoch(self, epoch, x, y, val_x, val_y, stop):
        """One epoch (or the rest of one). Returns whether training goes on."""
        config, state = self.config, self.state
        batches = EpochBatches(config, x, y, epoch)
        epoch_lr = learning_rate(config.optimizer, config.schedule, epoch, config.train.epochs)
        started, trained = time.perf_counter(), 0
        with self.log.progress_bar(epoch, len(batches), state.step_in_epoch) as bar:
            while state.step_in_epoch < len(batches):
                xb, yb = batches[state.step_in_epoch]
                lr = step_learning_rate(epoch_lr, config.schedule, state.global_step + 1)
                bar.update(1, self._step(xb, yb, lr, epoch))
                trained += len(yb)
                if config.checkpoint_every and state.global_step % config.checkpoint_every == 0:
                    self.checkpoint(LAST)
                if stop.agree(self.team) or self._at_max_steps():
                    break
        seconds = time.perf_counter() - started
        if state.step_in_epoch < len(batches):
            self.checkpoint(LAST)
            self._stopped_mid_epoch(stop)
            return False
        reason = self._end_epoch(epoch, seconds, trained, val_x, val_y)
        if stop.agree(self.team):
            self._interrupted()
        if reason:
            self.log.stopped_early(epoch, reason, state.best["epoch"])
            return False
        if self._at_max_steps():
            self.log.stopped_at_max_steps(self.max_steps, self.checkpoints.resume_command())
            return False
        return True

    def _at_max_steps(self):
        return self.max_steps and self.state.global_step >= self.max_steps

    def _step(self, xb, yb, lr, epoch):
        state, every = self.state, self.config.log.every
        try:
            result = train_step(self.network, self.optimizer, xb, yb, lr,
                                state.global_step + 1, self.config.train.clip_grad_norm,
                                delta_norms=(state.global_step + 1) % every == 0)
        except Diverged as exc:  # every process saw the same loss and weights
            raise everywhere(RunFailed(f"training diverged at step {state.global_step + 1}: "
                                       f"{exc}{self.checkpoints.what_is_kept()}",
                                       step=state.global_step + 1)) from None
        state.global_step += 1
        state.add_batch(result.loss, result.correct, len(yb))
        if result.delta_norms is not None:
            clipped = {"grad_norm_total": result.total_norm} if result.total_norm else {}
            self.log.step(self.network, result.updates,
                          {"epoch": epoch, "step": state.global_step, "loss": result.loss,
                           "lr": lr, **clipped}, result.delta_norms)
        return result.loss

    def _end_epoch(self, epoch, seconds, trained, val_x, val_y):
        """Validate, log, checkpoint. Returns early stopping's reason to stop, or None."""
        val_loss = val_acc = None
        if val_x is not None:
            with np.errstate(over="ignore", invalid="ignore"):
                val_loss, val_acc = evaluate(self.network, val_x, val_y, team=self.team)
            if not np.isfinite(val_loss):
                raise everywhere(RunFailed(f"training diverged in epoch {epoch}: the validation "
                                           f"loss is {val_loss}{self.checkpoints.what_is_kept()}",
                                           step=self.state.global_step))
        record, improved, reason = self.state.end_epoch(epoch, val_loss, val_acc)
        record.update({"step": self.state.global_step, "seconds": seconds,
                       "images_per_s": trained / seconds if seconds > 0 else None})
        self.log.record(record)
        self.checkpoint(LAST)
        if improved:
            self.checkpoint(BEST)
        self.log.result(report.epoch_line(record, self.config.train.epochs), quiet_too=True)
        self._warn_at_chance(record)
        return reason

    def _warn_at_chance(self, record):
        """Once a run: a warning (stderr, --quiet too, and a metrics record) after an epoch
        whose training accuracy is at chance, once the run has taken CHANCE_MIN_STEPS
        steps. Not an error: the run goes on, and may yet learn; but a run that ends at
        chance otherwise exits 0 without a word."""
        chance, accuracy = self.chance, record["train_acc"]
        if self.warned_chance or self.state.global_step < CHANCE_MIN_STEPS \
                or accuracy > chance + CHANCE_MARGIN * (1.0 - chance):
            return
        self.warned_chance = True
        message = (f"training accuracy after epoch {record['epoch']} is {accuracy:.4f}, "
                   f"chance level ({chance:.4f}, what always answering the most frequent "
                   f"class scores): the network is not learning. "
                   f"Try a lower optimizer.lr (now {self.config.optimizer.lr:g}), and check "
                   f"that the labels belong to the images")
        self.log.record({"event": "warning", "epoch": record["epoch"],
                         "step": self.state.global_step, "kind": "chance",
                         "message": message})
        self.log.note(f"warning: {message}", quiet_too=True)

    def checkpoint(self, name):
        self.checkpoints.save(name, self.network, self.optimizer,
                              self.state.meta(self.optimizer.steps))
        self.saved += 1

    def _stopped_mid_epoch(self, stop):
        if stop.agreed:
            self._interrupted()
        self.log.stopped_at_max_steps(self.max_steps, self.checkpoints.resume_command())

    def _interrupted(self):
        """Ctrl-C: the checkpoint is already written; say how to go on, exit 130."""
        self.log.interrupted(self.state.global_step, self.checkpoints.resume_command())
        raise SystemExit(130)


def chance_level(y, classes):
    """The training accuracy of a network that learned nothing: that of always answering
    the most frequent class of the labels y (N,) in [0, classes); 1 / classes when the
    classes are balanced, more when not."""
    return np.bincount(y, minlength=classes).max() / len(y)


def _ready_kernels(trainer, x, y):
    """Compile or load every kernel the training calls, and say so; returns the seconds.
    Rank 0 first: processes sharing a kernel cache then load what it compiled."""
    team, config = trainer.team, trainer.config
    augment = config.data.train.augment if config.data.train else None
    seconds, kernels = team.root_first(
        lambda: ready_kernels(trainer.network, trainer.optimizer, x, y, augment))
    trainer.log.note(f"{kernels}; not counted in epoch times")
    if team.size > 1:
        batch = config.train.batch_size
        trainer.log.note(f"{team.size} processes share each batch of {batch}: "
                         f"{batch // team.size} samples each")
    return seconds


class SharedCheckpoints:
    """The run folder's checkpoints, as every process of a run sees them: rank 0 writes
    (a failed write ends every process: team.root_does); the others hold nothing and
    have nothing to say."""

    def __init__(self, out_dir, team):
        self.out_dir = out_dir
        self.team = team
        self.folder = RunCheckpoints(out_dir) if team.is_root else None
        self.config_before = None  # a resumed run's config.yaml before it began

    def save(self, name, network, optimizer, meta):
        self.team.root_does(lambda: self.folder.save(name, network, optimizer, meta))

    def what_is_kept(self):
        return self.folder.what_is_kept() if self.folder else ""

    def write_config(self, config):
        """Write the run's config.yaml, keeping the text it held before (rank 0)."""
        def write():
            path = os.path.join(self.out_dir, RESOLVED_CONFIG)
            if os.path.exists(path):
                with open(path, encoding="utf-8") as handle:
                    self.config_before = handle.read()
            write_resolved_config(config, self.out_dir)

        self.team.root_does(write)

    def put_config_back(self):
        """config.yaml as it was before write_config (if there was one)."""
        def put_back():
            if self.config_before is not None:
                write_text(os.path.join(self.out_dir, RESOLVED_CONFIG), self.config_before)

        self.team.root_does(put_back)

    def resume_command(self):
        return self.folder.resume_command() if self.folder else ""

    def tidy_for_resume(self, state, log):
        """Before a resumed run goes on: drop what the run before wrote after its last
        checkpoint."""
        def tidy():
            remove_temp_checkpoints(self.out_dir)
            dropped = tidy_metrics(os.path.join(self.out_dir, METRICS), state.global_step,
                                   state.epochs_done)
            if dropped:  # said with --quiet too: records that were there are gone
                log.note(f"{METRICS}: dropped {dropped} record(s) written after the "
                         f"checkpoint (those steps run again)", quiet_too=True)

        self.team.root_does(tidy)
