"""Where a run stands: its position in training, its best epoch, early stopping's count,
and the settings it was trained with — everything a checkpoint's meta holds besides the
arrays, so that `--resume` continues exactly where the run stopped.
"""

import dataclasses
import os

from convtrain.spec.architecture import describe_architecture
from convtrain.spec.data_spec import SourceSpec
from convtrain.run.checkpoint import load_into, load_weights, preparation
from convtrain.errors import UserError
from convtrain.layers import walk


def training_settings(config):
    """What a resumed run may change without changing the architecture, flat and named
    as the config's key paths: the optimizer, schedule, training, data and seed (which
    draws the validation split and the shuffles)."""
    settings = {"seed": config.seed, "loss.label_smoothing": config.label_smoothing}
    for section in ("optimizer", "schedule", "train", "data"):
        _flatten(dataclasses.asdict(getattr(config, section)), section, settings)
    # A data path as the file it names: the run folder's config.yaml holds it absolute, and
    # resuming from that config is not a change of data.
    return {key: os.path.abspath(value)
            if key.startswith("data.") and key.rsplit(".", 1)[1] in SourceSpec.PATH_FIELDS
            and value is not None else value
            for key, value in settings.items()}


def _flatten(values, prefix, into):
    for key, value in values.items():
        if isinstance(value, dict):
            _flatten(value, f"{prefix}.{key}", into)
        elif key != "key_path":  # where the source sits in the YAML, not a setting
            # a tuple as a list: as the checkpoint's JSON gives it back
            into[f"{prefix}.{key}"] = list(value) if isinstance(value, tuple) else value


def changed_settings(before, now):
    """{key: (old, new)} of the settings that differ ({} when none, or no record)."""
    return {key: (before[key], value) for key, value in now.items()
            if key in before and before[key] != value}


class EarlyStopping:
    """Counts the epochs in a row in which the watched metric did not improve by more
    than min_delta (Keras's EarlyStopping semantics)."""

    def __init__(self, spec, state=None):
        self.spec = spec
        state = state or {}
        self.best = state.get("best")
        self.best_epoch = state.get("best_epoch")
        self.bad_epochs = state.get("bad_epochs", 0)

    def state(self):
        return {"best": self.best, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs}

    def update(self, record):
        """Take an epoch record; returns the reason to stop, or None."""
        value = record[self.spec.metric]
        if self.spec.metric == "val_loss":
            improved = self.best is None or value < self.best - self.spec.min_delta
        else:
            improved = self.best is None or value > self.best + self.spec.min_delta
        if improved:
            self.best, self.best_epoch, self.bad_epochs = value, record["epoch"], 0
            return None
        self.bad_epochs += 1
        return self.reason() if self.exhausted() else None

    def exhausted(self):
        return self.bad_epochs >= self.spec.patience

    def reason(self):
        spec = self.spec
        return (f"{spec.metric} has not improved by more than {spec.min_delta:g} for "
                f"{self.bad_epochs} epochs (train.early_stopping.patience {spec.patience}); "
                f"the best, {self.best:.4f}, was at epoch {self.best_epoch}")


class RunState:
    """The counters of a run. `partial` sums the current epoch's loss and accuracy over
    the batches done so far, so an epoch cut by a checkpoint reports the same numbers."""

    def __init__(self, config, classes=None):
        self.config = config
        self.classes = classes  # the names of the classes 0, 1, ..., or None
        self.epochs_done = 0
        self.step_in_epoch = 0
        self.global_step = 0
        self.best = None
        self.partial = {"loss": 0.0, "correct": 0, "count": 0}
        early = config.train.early_stopping
        self.early_stopping = EarlyStopping(early) if early else None

    @property
    def resumed(self):
        return self.global_step > 0 or self.epochs_done > 0

    def meta(self, optimizer_steps):
        config = self.config
        return {"epochs_done": self.epochs_done, "step_in_epoch": self.step_in_epoch,
                "global_step": self.global_step, "optimizer_steps": optimizer_steps,
                "best": self.best, "partial": self.partial, "seed": config.seed,
                "shuffle_rng": {"kind": "numpy default_rng", "key": [config.seed, 2]},
                "optimizer": config.optimizer.type, "name": config.name,
                "settings": training_settings(config),
                "fingerprint": config.architecture_fingerprint(),
                "architecture": describe_architecture(config),
                "layer_names": [spec.name for spec in walk(config.layers)],
                "classes": self.classes,
                "preparation": preparation(config),
                "early_stopping": self.early_stopping and self.early_stopping.state()}

    def restore(self, meta, path):
        """Take a checkpoint's meta; refuses what cannot continue. Returns the settings
        the config changes, {key: (old, new)}."""
        self.epochs_done = meta["epochs_done"]
        self.step_in_epoch = meta["step_in_epoch"]
        self.global_step = meta["global_step"]
        self.best = meta["best"]
        self.partial = meta["partial"]
        if self.epochs_done >= self.config.train.epochs:
            raise UserError(f"checkpoint has finished {self.epochs_done} epochs, and the config "
                            f"asks for {self.config.train.epochs}: nothing to do (raise "
                            f"--epochs to train further)", file=path)
        if self.early_stopping is not None:
            self.early_stopping = EarlyStopping(self.config.train.early_stopping,
                                                meta.get("early_stopping"))
            if self.early_stopping.exhausted():
                raise UserError(f"the run stopped early after epoch {self.epochs_done}: "
                                f"{self.early_stopping.reason()}; nothing to do (raise the "
                                f"patience to train further)", file=path)
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
        return changed_settings(before, now)

    def add_batch(self, loss, correct, count):
        self.step_in_epoch += 1
        self.partial["loss"] += loss * count
        self.partial["correct"] += correct
        self.partial["count"] += count

    def end_epoch(self, epoch, val_loss, val_acc):
        """Close the epoch: its record, whether it is the best so far, and the reason to
        stop early (or None)."""
        partial = self.partial
        record = {"event": "epoch", "epoch": epoch,
                  "train_loss": partial["loss"] / partial["count"],
                  "train_acc": partial["correct"] / partial["count"],
                  "val_loss": val_loss, "val_acc": val_acc}
        self.epochs_done = epoch
        self.step_in_epoch = 0
        self.partial = {"loss": 0.0, "correct": 0, "count": 0}
        # The best checkpoint follows early stopping's metric when there is one, so the
        # checkpoint it leaves is the one it judged best.
        if self.early_stopping is not None and self.early_stopping.spec.metric == "val_loss":
            score = -val_loss
        else:
            score = val_acc if val_acc is not None else -record["train_loss"]
        improved = self.best is None or score > self.best["score"]
        if improved:
            self.best = {"score": score, "epoch": epoch, "val_acc": val_acc,
                         "train_loss": record["train_loss"]}
        stop = self.early_stopping.update(record) if self.early_stopping else None
        return record, improved, stop


def resume_run(checkpoint, path, network, optimizer, state):
    """Load a checkpoint (read by `read_checkpoint` from path) to continue its run.
    Returns (notes for the console as (text, shown with --quiet too), the metrics record)."""
    meta = load_into(checkpoint, path, state.config, network, optimizer)
    changed = state.restore(meta, path)
    notes = [(f"resuming from {path}: epoch {state.epochs_done + 1}, step "
              f"{state.step_in_epoch} of the epoch, global step {state.global_step}", False)]
    said = "; ".join(f"{key} {old} -> {new}" for key, (old, new) in changed.items())
    if changed:  # with --quiet too when the run goes on otherwise than it began, not
        # only for longer (raising train.epochs is what a resume is for)
        notes.append((f"resume: the config changes what the checkpoint was trained with: "
                      f"{said}", set(changed) != {"train.epochs"}))
    return notes, {"event": "resume", "step": state.global_step,
                   "epochs_done": state.epochs_done, "checkpoint": path,
                   "changed": said or None}


def init_run(checkpoint, path, config, network, skip=()):
    """Start a new run from a checkpoint's weights (fine-tuning): the layers in `skip` keep
    their initialisation; the optimizer starts fresh. Returns (notes as resume_run's, the
    metrics record)."""
    loaded = load_weights(checkpoint, path, config, network, skip)
    note = f"initialised from {path}: {', '.join(loaded)}"
    if skip:
        note += f"; left at initialisation: {', '.join(skip)}"
    return [(note, False)], {"event": "init_from", "checkpoint": path, "skipped": list(skip)}
