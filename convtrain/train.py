"""The training loop: epochs of shuffled batches, logging, validation, checkpoints.

Shuffling is a pure function of (seed, epoch), and a checkpoint records how
many batches of the current epoch are done, so `--resume` replays nothing and
skips nothing: it continues with the very next batch.
"""

import contextlib
import json
import os
import signal
import sys
import time

import click
import numpy as np

from convtrain import report
from convtrain.checkpoint import describe_architecture, load_into, save_checkpoint
from convtrain.data import load_datasets
from convtrain.errors import RunFailed, UserError
from convtrain.network import Network
from convtrain.optim import Optimizer, learning_rate

EVAL_BATCH = 256


def epoch_order(seed, epoch, count, shuffle):
    if not shuffle:
        return np.arange(count)
    return np.random.default_rng([seed, 2, epoch]).permutation(count)


def evaluate(network, x, y, batch_size=EVAL_BATCH):
    """(mean loss, accuracy) over (x, y), forward only."""
    total_loss, correct = 0.0, 0
    for start in range(0, len(y), batch_size):
        scores = network.forward(x[start:start + batch_size])
        labels = y[start:start + batch_size]
        loss, _, _ = network.loss_fn(scores, labels)
        total_loss += loss * len(labels)
        correct += int(np.sum(np.argmax(scores, axis=1) == labels))
    return total_loss / len(y), correct / len(y)


def warm_up(network, optimizer, x, y):
    """Run every kernel this network uses once, so JIT compilation (or loading the
    cache) happens here and never inside a timed epoch. Weights are left unchanged."""
    started = time.perf_counter()
    saved = {k: v.copy() for k, v in network.state().items()}
    saved_opt = {k: v.copy() for k, v in optimizer.state.items()}
    steps = optimizer.steps
    network.loss_and_gradients(x[:2], y[:2])
    optimizer.step(0.0)
    network.load_state(saved)
    optimizer.load_state(saved_opt, steps)
    return time.perf_counter() - started


def training_settings(config):
    """What a resumed run may change without changing the architecture, flat and named as
    the config's key paths."""
    settings = {f"optimizer.{k}": v for k, v in vars(config.optimizer).items()}
    settings.update({f"schedule.{k}": v for k, v in vars(config.schedule).items()})
    settings.update({f"train.{k}": v for k, v in vars(config.train).items()})
    return settings


def changed_settings(before, now):
    """'key old -> new; ...' for the settings that differ ('' when none, or no record)."""
    if not before:
        return ""
    return "; ".join(f"{key} {before.get(key)} -> {value}" for key, value in now.items()
                     if key in before and before[key] != value)


def tidy_for_resume(out_dir, metrics_path, global_step, epochs_done):
    """Before a resumed run appends: drop metrics records written after the checkpoint
    (a killed run got further than its last checkpoint; those steps run again), and
    temp files of a checkpoint write that was killed. Returns the records dropped."""
    for name in os.listdir(out_dir):
        if name.startswith(".tmp-") and name.endswith(".npz"):
            os.unlink(os.path.join(out_dir, name))
    if not os.path.exists(metrics_path):
        return 0
    with open(metrics_path, encoding="utf-8") as handle:
        lines = handle.read().splitlines()
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
    if len(kept) < len(lines):
        tmp = metrics_path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write("".join(line + "\n" for line in kept))
        os.replace(tmp, metrics_path)
    return len(lines) - len(kept)


class _SilentBar:
    def update(self, steps, item=None):
        pass


class _StopFlag:
    """SIGINT sets it; the loop finishes the current step, checkpoints, and exits 130."""

    def __init__(self):
        self.raised = False

    def __call__(self, signum, frame):
        if self.raised:
            raise KeyboardInterrupt
        self.raised = True


class Trainer:
    def __init__(self, config, datasets, quiet=False, max_steps=None):
        """datasets: (x, y, val_x, val_y) from `load_datasets`."""
        self.config = config
        self.datasets = datasets
        self.out_dir = None
        self.quiet = quiet
        self.max_steps = max_steps
        self.network = Network(config)
        if config.log.timing:
            self.network.timings = {}
        self.optimizer = Optimizer(config.optimizer, self.network)
        self.epochs_done = 0
        self.step_in_epoch = 0
        self.global_step = 0
        self.best = None
        self.partial = {"loss": 0.0, "correct": 0, "count": 0}
        self.metrics = None
        self.bar_active = False

    def say(self, text, always=False):
        if always or not self.quiet:
            if self.bar_active and sys.stderr.isatty():
                text = "\r\x1b[K" + text  # start on a clean line, not after the bar
            click.echo(text, err=True)

    def meta(self):
        return {"epochs_done": self.epochs_done, "step_in_epoch": self.step_in_epoch,
                "global_step": self.global_step, "optimizer_steps": self.optimizer.steps,
                "best": self.best, "partial": self.partial, "seed": self.config.seed,
                "shuffle_rng": {"kind": "numpy default_rng", "key": [self.config.seed, 2]},
                "optimizer": self.config.optimizer.type, "name": self.config.name,
                "settings": training_settings(self.config),
                "fingerprint": self.config.architecture_fingerprint(),
                "architecture": describe_architecture(self.config)}

    def resume_from(self, checkpoint, path):
        """Continue from a checkpoint read by `read_checkpoint` from path."""
        meta = load_into(checkpoint, path, self.config, self.network, self.optimizer)
        self.epochs_done = meta["epochs_done"]
        self.step_in_epoch = meta["step_in_epoch"]
        self.global_step = meta["global_step"]
        self.best = meta["best"]
        self.partial = meta["partial"]
        if self.epochs_done >= self.config.train.epochs:
            raise UserError(f"checkpoint has finished {self.epochs_done} epochs, and the config "
                            f"asks for {self.config.train.epochs}: nothing to do (raise "
                            f"--epochs to train further)", file=path)
        before = meta.get("settings") or {}
        now = training_settings(self.config)
        if self.step_in_epoch:
            for key in ("train.batch_size", "train.shuffle"):
                if key in before and before[key] != now[key]:
                    raise UserError(
                        f"the checkpoint stopped after batch {self.step_in_epoch} of epoch "
                        f"{self.epochs_done + 1} with {key} {before[key]}; changing it mid-epoch "
                        f"would skip or repeat samples (resume with {before[key]}, or from the "
                        f"end of an epoch)", file=path)
        self.say(f"resuming from {path}: epoch {self.epochs_done + 1}, "
                 f"step {self.step_in_epoch} of the epoch, global step {self.global_step}")
        changed = changed_settings(before, now)
        if changed:
            self.say(f"resume: the config changes what the checkpoint was trained with: "
                     f"{changed}", always=True)

    def checkpoint(self, name):
        path = os.path.join(self.out_dir, name)
        try:
            save_checkpoint(path, self.network, self.optimizer, self.meta())
        except OSError as exc:
            raise RunFailed(f"cannot write {path}: {exc.strerror or exc}. The checkpoint "
                            f"there before, if any, is whole and unchanged") from None

    def log(self, record):
        try:
            self.metrics.write(report.dumps(record) + "\n")
            self.metrics.flush()
        except OSError as exc:
            raise RunFailed(f"cannot write {self.metrics.name}: {exc.strerror or exc}. "
                            f"Checkpoints written so far are whole") from None

    def run(self, out_dir):
        """Train into the run folder out_dir (metrics.jsonl, checkpoints)."""
        self.out_dir = out_dir
        x, y, val_x, val_y = self.datasets
        compile_s = warm_up(self.network, self.optimizer, x, y)
        self.say(f"kernels ready in {compile_s:.1f} s (JIT compiled, or loaded from the cache); "
                 f"not counted in epoch times")
        stop = _StopFlag()
        previous = signal.signal(signal.SIGINT, stop)
        metrics_path = os.path.join(self.out_dir, "metrics.jsonl")
        resumed = self.global_step > 0 or self.epochs_done > 0
        if resumed:
            dropped = tidy_for_resume(self.out_dir, metrics_path, self.global_step,
                                      self.epochs_done)
            if dropped:
                self.say(f"metrics.jsonl: dropped {dropped} record(s) written after the "
                         f"checkpoint (those steps run again)")
        try:
            with open(metrics_path, "a", encoding="utf-8") as out:
                self.metrics = out
                if resumed:
                    self.log({"event": "resume", "step": self.global_step,
                              "epochs_done": self.epochs_done})
                self.log({"event": "compile", "seconds": compile_s})
                return self._epochs(x, y, val_x, val_y, stop)
        finally:
            signal.signal(signal.SIGINT, previous)

    def _epochs(self, x, y, val_x, val_y, stop):
        config = self.config
        batch = config.train.batch_size
        batches = -(-len(y) // batch)
        for epoch in range(self.epochs_done + 1, config.train.epochs + 1):
            lr = learning_rate(config.optimizer, config.schedule, epoch, config.train.epochs)
            order = epoch_order(config.seed, epoch, len(y), config.train.shuffle)
            started = time.perf_counter()
            trained = 0
            with self._progress_bar(epoch, batches) as bar:
                while self.step_in_epoch < batches:
                    index = order[self.step_in_epoch * batch:(self.step_in_epoch + 1) * batch]
                    loss = self._step(x[index], y[index], lr, epoch)
                    trained += len(index)
                    bar.update(1, loss)
                    if config.checkpoint_every and self.global_step % config.checkpoint_every == 0:
                        self.checkpoint("checkpoint-last.npz")
                    if stop.raised or self.max_steps and self.global_step >= self.max_steps:
                        break
            seconds = time.perf_counter() - started
            if self.step_in_epoch < batches:
                self.checkpoint("checkpoint-last.npz")
                if stop.raised:
                    self._interrupted()
                self.say(f"stopped after --max-steps {self.max_steps} (global step "
                         f"{self.global_step}); checkpoint-last.npz holds the state")
                return self.best
            self._end_epoch(epoch, seconds, trained, val_x, val_y)
            if stop.raised:
                self._interrupted()
            if self.max_steps and self.global_step >= self.max_steps:
                self.say(f"stopped after --max-steps {self.max_steps}")
                break
        return self.best

    @contextlib.contextmanager
    def _progress_bar(self, epoch, batches):
        """click's progress bar (it draws only on a terminal), or a silent one for --quiet."""
        if self.quiet:
            yield _SilentBar()
            return
        with click.progressbar(length=batches, label=f"epoch {epoch}/{self.config.train.epochs}",
                               file=sys.stderr, show_pos=True, show_eta=True,
                               item_show_func=lambda loss: None if loss is None
                               else f"loss {loss:.4f}") as bar:
            bar.update(self.step_in_epoch)
            self.bar_active = True
            try:
                yield bar
            finally:
                self.bar_active = False

    def _step(self, xb, yb, lr, epoch):
        network = self.network
        # Overflow is caught below as a non-finite loss or update; NumPy's warnings would
        # only interleave with the progress bar.
        with np.errstate(over="ignore", invalid="ignore"):
            loss, scores, _ = network.loss_and_gradients(xb, yb, input_grad=False)
        self.global_step += 1
        if not np.isfinite(loss):
            self._diverged(f"the loss is {loss}{self._where_forward_broke(xb)}")
        updates = self.optimizer.step(lr)
        # One pass over the weights: a non-finite update leaves a non-finite weight too.
        for layer, key in network.parameters():
            if not np.all(np.isfinite(layer.params[key])):
                name = f"{layer.name}.{key}"
                self._diverged(f"the update of {name} is not finite"
                               if not np.all(np.isfinite(updates[name]))
                               else f"the weight {name} became non-finite")
        self.step_in_epoch += 1
        self.partial["loss"] += loss * len(yb)
        self.partial["correct"] += int(np.sum(np.argmax(scores, axis=1) == yb))
        self.partial["count"] += len(yb)
        if self.global_step % self.config.log.every == 0:
            layers = report.layer_record(network, updates)
            if network.timings is not None:
                for name, times in network.timings.items():
                    layers[name].update(times)
            record = {"event": "step", "epoch": epoch, "step": self.global_step, "loss": loss,
                      "lr": lr, "layers": layers}
            self.log(record)
            self.say(report.layer_table(self.global_step, epoch, loss, lr, layers))
        return loss

    def _interrupted(self):
        """Ctrl-C: the checkpoint is already written; say how to go on, exit 130."""
        path = os.path.join(self.out_dir, "checkpoint-last.npz")
        self.say(f"interrupted at step {self.global_step}; checkpoint written. "
                 f"Resume with: convtrain train {self.config.file} --resume {path}", always=True)
        raise SystemExit(130)

    def _where_forward_broke(self, xb):
        """'; ...' naming the first layer whose output is not finite, or, when all are, the
        last layer's largest score (the loss itself overflowed). Re-runs the forward pass:
        only called once, on the way out."""
        out = xb
        with np.errstate(over="ignore", invalid="ignore"):
            for layer in self.network.layers:
                out = layer.forward(out)
                if not np.all(np.isfinite(out)):
                    return f"; the first non-finite output is at layer {layer.name}"
        largest = float(np.max(np.abs(out)))
        return f"; the outputs of the last layer, {layer.name}, reach {largest:.3g}"

    def _diverged(self, what):
        culprit = what
        # Backward runs top to bottom: the first non-finite delta on that path is where it began.
        for layer in reversed(self.network.layers):
            delta = self.network.deltas.get(layer.name)
            if delta is not None and not np.all(np.isfinite(delta)):
                culprit += f"; the first non-finite delta is at layer {layer.name}"
                break
        raise RunFailed(f"training diverged at step {self.global_step}: {culprit}. The last "
                        f"good checkpoint in {self.out_dir} is left as it was; lower "
                        f"optimizer.lr and try again")

    def _end_epoch(self, epoch, seconds, trained, val_x, val_y):
        partial = self.partial
        val_loss = val_acc = None
        if val_x is not None:
            with np.errstate(over="ignore", invalid="ignore"):
                val_loss, val_acc = evaluate(self.network, val_x, val_y)
            if not np.isfinite(val_loss):
                raise RunFailed(f"training diverged in epoch {epoch}: the validation loss is "
                                f"{val_loss}. The last good checkpoint in {self.out_dir} is left "
                                f"as it was; lower optimizer.lr and try again")
        record = {"event": "epoch", "epoch": epoch,
                  "train_loss": partial["loss"] / partial["count"],
                  "train_acc": partial["correct"] / partial["count"],
                  "val_loss": val_loss, "val_acc": val_acc, "seconds": seconds,
                  "images_per_s": trained / seconds if seconds > 0 else None}
        self.epochs_done = epoch
        self.step_in_epoch = 0
        self.partial = {"loss": 0.0, "correct": 0, "count": 0}
        score = val_acc if val_acc is not None else -record["train_loss"]
        improved = self.best is None or score > self.best["score"]
        if improved:
            self.best = {"score": score, "epoch": epoch, "val_acc": val_acc,
                         "train_loss": record["train_loss"]}
        self.log(record)
        self.checkpoint("checkpoint-last.npz")
        if improved:
            self.checkpoint("checkpoint-best.npz")
        self.say(report.epoch_line(record, self.config.train.epochs), always=True)


def smoke(config, steps, samples=256):
    """A few steps on a small slice: ok only if every loss is finite and the slice's loss fell.

    Returns (ok, line)."""
    x, y, _, _ = load_datasets(config, need_val=False)
    x, y = x[:samples], y[:samples]
    network = Network(config)
    optimizer = Optimizer(config.optimizer, network)
    warm_up(network, optimizer, x, y)
    started = time.perf_counter()
    before, _ = evaluate(network, x, y)
    batch = min(config.train.batch_size, len(y))
    for step in range(steps):
        start = (step * batch) % len(y)
        index = np.arange(start, start + batch) % len(y)
        loss, _, _ = network.loss_and_gradients(x[index], y[index], input_grad=False)
        if not np.isfinite(loss):
            return False, f"smoke: FAILED — loss became {loss} at step {step + 1}"
        optimizer.step(config.optimizer.lr)
    after, _ = evaluate(network, x, y)
    seconds = time.perf_counter() - started
    if not np.isfinite(after):
        return False, f"smoke: FAILED — loss on the slice became {after} after {steps} steps"
    if not after < before:
        return False, (f"smoke: FAILED — loss did not go down in {steps} steps on {len(y)} "
                       f"samples: {before:.4f} -> {after:.4f}")
    return True, (f"smoke: ok — {steps} steps on {len(y)} samples, loss {before:.4f} -> "
                  f"{after:.4f}, all finite ({seconds:.1f} s)")
