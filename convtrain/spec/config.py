"""YAML network spec -> validated, frozen `Config`. The one config boundary.

Everything after `load_config` trusts what it gets: shapes fit, numbers are in
range, files are named. Errors are `ConfigError`s naming file, key path and line.
"""

import hashlib
import json
import os
from dataclasses import dataclass, field, replace

import numpy as np

from convtrain.errors import ConfigError
from convtrain.spec.fields import Section
from convtrain.spec.layer_list import read_layers
from convtrain.spec.data_spec import DataSpec, read_data
from convtrain.layers import walk
from convtrain.layers.shapes import as_array
from convtrain.spec.yamlsource import apply_override, did_you_mean, load_yaml

LOSSES = ("softmax_cross_entropy", "mse", "hinge")
OPTIMIZERS = ("sgd", "adam", "adamw")
ADAM_KEYS = ("type", "lr", "weight_decay", "beta1", "beta2", "eps")
OPTIMIZER_KEYS = {"sgd": ("type", "lr", "weight_decay", "momentum", "nesterov"),
                  "adam": ADAM_KEYS, "adamw": ADAM_KEYS}
STOP_METRICS = ("val_loss", "val_acc")
SCHEDULES = ("none", "step", "cosine")
TOP_KEYS = ("name", "seed", "dtype", "input", "layers", "loss", "optimizer", "schedule",
            "train", "data", "log", "checkpoint", "trace")


@dataclass(frozen=True)
class OptimizerSpec:
    type: str
    lr: float
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8


@dataclass(frozen=True)
class ScheduleSpec:
    type: str = "none"
    every: int = 1
    milestones: tuple = ()  # step: decay after these epochs instead of every `every`
    gamma: float = 0.1
    min_lr: float = 0.0
    warmup_steps: int = 0


@dataclass(frozen=True)
class EarlyStoppingSpec:
    """End the run when `metric` has not improved by more than min_delta for `patience`
    epochs in a row (Keras's EarlyStopping)."""
    metric: str = "val_loss"
    patience: int = 5
    min_delta: float = 0.0


@dataclass(frozen=True)
class TrainSpec:
    epochs: int = 1
    batch_size: int = 32
    shuffle: bool = True
    early_stopping: EarlyStoppingSpec = None
    clip_grad_norm: float = None


@dataclass(frozen=True)
class LogSpec:
    every: int = 50
    timing: bool = False
    tensorboard: bool = False


@dataclass(frozen=True)
class TraceSpec:
    input: np.ndarray = field(default=None, compare=False)
    delta: np.ndarray = field(default=None, compare=False)
    target: int = None
    published: dict = field(default_factory=dict, compare=False)
    published_decimals: int = 2


@dataclass(frozen=True)
class Config:
    file: str
    name: str
    seed: int
    dtype: str
    input: tuple
    layers: tuple
    loss: str
    optimizer: OptimizerSpec
    schedule: ScheduleSpec
    train: TrainSpec
    data: DataSpec
    log: LogSpec
    checkpoint_every: int
    trace: TraceSpec
    resolved: dict = field(compare=False, repr=False)
    # The YAML it came from (lines, --set flags): for errors found after validation.
    source: object = field(default=None, compare=False, repr=False)
    # softmax_cross_entropy's: the targets are (1 - label_smoothing) one-hot + label_smoothing/K
    label_smoothing: float = 0.0

    def error(self, path, message):
        """A ConfigError at key path (a dotted string) naming the file, the line or the
        --set that gave it."""
        keys = tuple(int(k) if k.isdigit() else k for k in path.split("."))
        if self.source is None:
            return ConfigError(message, file=self.file, path=path)
        return self.source.error(keys, message)

    @property
    def output_shape(self):
        return self.layers[-1].out_shape if self.layers else self.input

    @property
    def num_outputs(self):
        return int(np.prod(self.output_shape))

    def architecture_fingerprint(self):
        """Hash of everything that fixes parameter shapes: a checkpoint must match it."""
        arch = {"input": list(self.input), "dtype": self.dtype,
                "layers": [[s.type, s.name, list(s.out_shape), _array_shapes(s)]
                           for s in walk(self.layers)]}
        return hashlib.sha256(json.dumps(arch, sort_keys=True).encode()).hexdigest()[:16]


# Why a batchnorm of a vector (or a 1x1 image) cannot take one sample at a time.
ONE_SAMPLE = "it normalises each feature over the batch, and the variance of one sample is zero"


def batch_of_one_problem(layers, verb, remedy):
    """The message for a batch of one that would `verb` (train, check, time) these layers
    and cannot, ending in `remedy`; None where it can."""
    name = lone_sample_batchnorm(layers)
    if name is None:
        return None
    return f"a batch of one cannot {verb} batchnorm '{name}': {ONE_SAMPLE}; {remedy}"


def lone_sample_batchnorm(layers):
    """The name of the first batchnorm whose statistics come from the batch axis alone (on
    a vector, or an image of 1x1), which a batch of one sample cannot train; or None."""
    for spec in walk(layers):
        if spec.type == "batchnorm" and spec.statistics_from_batch_axis_alone():
            return spec.name
    return None


def _array_shapes(spec):
    """{key: shape} of the arrays a checkpoint holds for the layer: parameters, buffers."""
    return {k: list(v) for k, v in {**spec.param_shapes(), **spec.buffer_shapes()}.items()}


def load_config(path, overrides=(), text=None):
    """Read, override (`--set`), validate. Raises ConfigError on anything wrong."""
    source = load_yaml(path, text)
    if not isinstance(source.tree, dict):
        raise source.error((), "the top level must be a mapping (name:, input:, layers:, ...)")
    for assignment in overrides:
        apply_override(source, assignment)
    # Top-level keys starting with x- are free, a place to keep YAML anchors (`<<: *name`).
    extensions = [k for k in source.tree if isinstance(k, str) and k.startswith("x-")]
    for key in extensions:
        del source.tree[key]
    top = Section(source, (), source.tree, "the top level")
    top.reject_unknown(TOP_KEYS)
    default_name = os.path.splitext(os.path.basename(str(path)))[0] if path else "net"
    name = top.get_str("name", default_name)
    seed = top.get_int("seed", 0, minimum=0)
    dtype = top.get_choice("dtype", ("float32", "float64"), "float32")
    input_shape = _input_shape(top)
    layers = read_layers(top, input_shape)
    loss, label_smoothing = _loss(top)
    optimizer = _optimizer(top.section("optimizer", {"type": "sgd", "lr": 0.01}))
    schedule = _schedule(top.section("schedule", {"type": "none"}))
    train = _train(top.section("train", {}))
    problem = batch_of_one_problem(layers, "train", "use a batch size of at least 2")
    if train.batch_size == 1 and problem:
        raise source.error(("train", "batch_size"), problem)
    data = read_data(top.section("data", {}), input_shape)
    if train.early_stopping and data.val is None and not data.val_split:
        raise source.error(("train", "early_stopping", "metric"),
                           f"early stopping watches {train.early_stopping.metric}, and the "
                           f"config has no validation data (add data.val: a source, or "
                           f"{{split: 0.1}})")
    log_section = top.section("log", {})
    log = LogSpec(log_section.get_int("every", 50, minimum=1),
                  log_section.get_bool("timing", False),
                  log_section.get_bool("tensorboard", False))
    log_section.finish()
    checkpoint_section = top.section("checkpoint", {})
    checkpoint_every = checkpoint_section.get_int("every", 0, minimum=0)
    checkpoint_section.finish()
    last_shape = layers[-1].out_shape
    trace = _trace(top.section("trace", {}), input_shape, last_shape, layers)
    top.finish()
    return Config(str(path), name, seed, dtype, input_shape, layers, loss, optimizer, schedule,
                  train, data, log, checkpoint_every, trace, top.resolved, source,
                  label_smoothing)


def _loss(top):
    """(type, label smoothing): `loss: TYPE`, or `loss: {type: TYPE, label_smoothing: 0.1}`."""
    if not isinstance(top.raw.get("loss"), dict):
        return top.get_choice("loss", LOSSES, "softmax_cross_entropy"), 0.0
    section = top.section("loss")
    kind = section.get_choice("type", LOSSES, "softmax_cross_entropy")
    smoothing = section.get_float("label_smoothing", 0.0, minimum=0.0, below=1.0)
    if smoothing and kind != "softmax_cross_entropy":
        raise section.error("label_smoothing", f"smooths softmax_cross_entropy's targets; "
                                               f"this loss is {kind}")
    section.finish()
    return kind, smoothing


def _input_shape(top):
    value = top.get_raw("input")
    if (not isinstance(value, list) or len(value) != 3
            or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in value)):
        raise top.error("input", f"must be [C, H, W], three positive integers, got {value!r}")
    return tuple(value)


def _train(section):
    spec = TrainSpec(section.get_int("epochs", 1, minimum=1),
                     section.get_int("batch_size", 32, minimum=1),
                     section.get_bool("shuffle", True))
    if section.has("early_stopping"):
        stop = section.section("early_stopping")
        early = EarlyStoppingSpec(stop.get_choice("metric", STOP_METRICS, "val_loss"),
                                  stop.get_int("patience", 5, minimum=1),
                                  stop.get_float("min_delta", 0.0, minimum=0.0))
        stop.finish()
        spec = replace(spec, early_stopping=early)
    section.seen.add("early_stopping")
    if section.has("clip_grad_norm"):
        spec = replace(spec, clip_grad_norm=section.get_float("clip_grad_norm", positive=True))
    section.seen.add("clip_grad_norm")
    section.finish()
    return spec


def _optimizer(section):
    kind = section.get_choice("type", OPTIMIZERS, "sgd")
    for key in section.raw:
        owners = [name for name, keys in OPTIMIZER_KEYS.items() if key in keys]
        if owners and kind not in owners:
            raise section.error(key, f"'{key}' is a key of {' and '.join(owners)}, not of "
                                     f"{kind}; {kind} takes: "
                                     f"{', '.join(OPTIMIZER_KEYS[kind][1:])}")
    lr = section.get_float("lr", 0.01 if kind == "sgd" else 0.001, positive=True)
    # AdamW's decay is decoupled from the gradient, and PyTorch's default is 0.01.
    weight_decay = section.get_float("weight_decay", 0.01 if kind == "adamw" else 0.0,
                                     minimum=0.0)
    if kind == "sgd":
        momentum = section.get_float("momentum", 0.0, minimum=0.0, below=1.0)
        nesterov = section.get_bool("nesterov", False)
        if nesterov and momentum == 0:
            raise section.error("nesterov", "Nesterov momentum needs a momentum above 0 "
                                            "(optimizer.momentum: 0.9, say)")
        section.finish()
        return OptimizerSpec(kind, lr, momentum=momentum, nesterov=nesterov,
                             weight_decay=weight_decay)
    beta1 = section.get_float("beta1", 0.9, minimum=0.0, below=1.0)
    beta2 = section.get_float("beta2", 0.999, minimum=0.0, below=1.0)
    eps = section.get_float("eps", 1e-8, positive=True)
    section.finish()
    return OptimizerSpec(kind, lr, weight_decay=weight_decay, beta1=beta1, beta2=beta2, eps=eps)


def _schedule(section):
    kind = section.get_choice("type", SCHEDULES, "none")
    if kind == "step":
        milestones = _milestones(section)
        if milestones and section.has("every"):
            raise section.error("milestones", "give either `every` or `milestones`, not both")
        spec = ScheduleSpec(kind, milestones=milestones,
                            every=1 if milestones else section.get_int("every", 1, minimum=1),
                            gamma=section.get_float("gamma", 0.1, positive=True, maximum=1.0))
    elif kind == "cosine":
        spec = ScheduleSpec(kind, min_lr=section.get_float("min_lr", 0.0, minimum=0.0))
    else:
        spec = ScheduleSpec(kind)
    spec = replace(spec, warmup_steps=section.get_int("warmup_steps", 0, minimum=0))
    section.finish()
    return spec


def _milestones(section):
    """`milestones`: the epochs after which a step schedule decays, increasing, or ()."""
    if not section.has("milestones"):
        section.get_raw("milestones", None)
        return ()
    value = section.get_raw("milestones")
    if (not isinstance(value, list) or not value
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)
            or any(a >= b for a, b in zip(value, value[1:]))):
        raise section.error("milestones", f"must be a list of increasing epoch numbers "
                                          f"(1 or more), e.g. [82, 123], got {value!r}")
    return tuple(value)


def _trace(section, input_shape, last_shape, layers):
    sample = as_array(section, "input", input_shape)
    delta = as_array(section, "delta", last_shape)
    target = None
    if section.has("target"):
        if delta is not None:
            raise section.error("target", "give either `delta` or `target`, not both")
        target = section.get_int("target", minimum=0)
        if target >= int(np.prod(last_shape)):
            raise section.error("target", f"class {target} does not exist: the last layer "
                                          f"gives {int(np.prod(last_shape))} outputs")
    section.seen.add("target")
    published, decimals = {}, 2
    if section.has("published"):
        pub = section.section("published")
        decimals = pub.get_int("decimals", 2, minimum=0)
        names = {s.name for s in layers}
        for key in pub.raw:
            if key == "decimals":
                continue
            layer, _, what = str(key).partition(".")
            if layer not in names:
                raise pub.error(key, f"no layer named '{layer}'{did_you_mean(layer, names)}")
            value = pub.get_raw(key)
            try:
                published[(layer, what)] = np.asarray(value, dtype=np.float64)
            except (ValueError, TypeError):
                raise pub.error(key, "must be a nested list of numbers") from None
    section.seen.add("published")
    section.finish()
    return TraceSpec(sample, delta, target, published, decimals)
