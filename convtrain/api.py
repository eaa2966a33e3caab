"""convtrain from Python: what each command does, as functions a notebook can call.

    import convtrain
    cfg = convtrain.load_config("configs/digits.yaml", overrides=["optimizer.lr=0.05"])
    run = convtrain.train(cfg, out="runs/a")
    convtrain.evaluate(cfg, checkpoint="runs/a/checkpoint-best.npz")

They print nothing (train's log only when asked: `log="full"` or `"quiet"`) and raise
`convtrain.UserError` for bad input, whose `one_line()` is the command line's message;
warnings (more threads than cores, an unwritable kernel cache) go through `warnings.warn`
unless a `warn` function is given. The command line (cli.py) parses, calls one of these,
prints and sets the exit code.
"""

import os
import warnings

from convtrain.errors import UserError


def load_config(path, overrides=(), epochs=None):
    """The validated config of a YAML file, with KEY=VALUE overrides (and train.epochs)."""
    from convtrain.spec.config import load_config as load

    overrides = list(overrides)
    if epochs is not None:
        overrides.append(f"train.epochs={epochs}")
    return load(path, overrides)


def _warn(text):
    warnings.warn(text, stacklevel=3)


def ready_kernels(threads=None, team=None, warn=_warn):
    """Load Numba with `threads` threads (default: the cores this process has to itself),
    warning of more threads than cores, once."""
    from convtrain.runtime import available_cores, prepare_environment, prepare_numba

    prepare_environment()
    cores, shared = available_cores(), ""
    share = team.cores_per_process() if team is not None else None
    say = warn if team is None or team.is_root else (lambda text: None)
    if share is not None and share < 1:
        say(f"warning: {team.size} processes on {cores} core{'s' if cores > 1 else ''}: "
            f"each has {share:.2g} of a core, and they take turns (slower, same results); "
            f"start at most {cores} per machine")
    elif share is not None and share < cores:
        shared = (f" (its share of the {cores} it may run on, with the other processes on "
                  f"this machine)")
        cores = int(share + 1e-9)
        threads = threads or cores
    if threads and threads > cores:
        # Every parallel loop ends when its last thread does; threads beyond the cores wait
        # for a time slice, and a digits step was 5x slower with 3 threads on 2 cores.
        say(f"warning: --threads {threads} is more than the {cores} "
            f"core{'s' if cores > 1 else ''} available to this process{shared}; the extra "
            f"threads only take turns (slower, same results)")
    prepare_numba(threads)
    from convtrain.runtime import unwritable_cache_dir

    if unwritable_cache_dir():
        say(f"warning: {unwritable_cache_dir()}: cannot create or write the kernel cache "
            f"folder; kernels compile again in every run (set XDG_CACHE_HOME or "
            f"NUMBA_CACHE_DIR to a writable folder)")


def read_checkpoint(path):
    """(read_checkpoint's result, path), or None without a path."""
    if path is None:
        return None
    from convtrain.run.checkpoint import read_checkpoint as read

    return read(path), path


def refuse_a_batch_of_one(spec, batch, verb):
    """A batch of one where a batchnorm normalises over the batch axis alone: UserError."""
    from convtrain.spec.config import batch_of_one_problem

    problem = batch_of_one_problem(spec.layers, verb, "use --batch 2 or more")
    if batch == 1 and problem:
        raise UserError(problem, path="--batch")


def _network_from(spec, loaded, names=None):
    """(the network of spec with a checkpoint's weights, its meta, the class names it was
    trained on: its own, or `names` where they agree; see matching_classes)."""
    from convtrain.model.network import Network
    from convtrain.run.checkpoint import load_into, matching_classes

    network = Network(spec)
    meta = load_into(*loaded, spec, network)
    return network, meta, matching_classes(meta, spec, loaded[1], names)


def evaluate(spec, checkpoint, data=None, warn=_warn):
    """Loss, accuracy, per-class accuracy and the confusion matrix of a checkpoint on the
    validation data (train data if none), or on `data` (a labelled folder or any source)."""
    loaded = read_checkpoint(checkpoint)
    ready_kernels(warn=warn)
    import numpy as np

    from convtrain.data.sources import class_names, load_datasets
    from convtrain.run.report import class_report
    from convtrain.run.train import evaluate as run_eval

    if data is None:
        x, y, val_x, val_y = load_datasets(spec)
    network, meta, names = _network_from(spec, loaded,
                                         class_names(spec) if data is None else None)
    if data is not None:
        from convtrain.data.data_option import load_data_option

        x, y, names = load_data_option(spec, data, names)
        which = data
    else:
        which = "val" if val_x is not None else "train"
        if val_x is not None:
            x, y = val_x, val_y
    predicted = np.empty(len(y), dtype=np.int64)
    loss, acc = run_eval(network, x, y, predictions=predicted)
    classes = class_report(y, predicted, spec.num_outputs, names)
    # .meta: the checkpoint's, its epoch and step for the text view
    return Result({"checkpoint": checkpoint, "data": which, "samples": int(len(y)),
                   "loss": loss, "accuracy": acc, "epochs_done": meta.get("epochs_done"),
                   **classes}, meta=meta)


def predict(spec, checkpoint, inputs, top=1, split=None, resize=False, batch=256, warn=_warn):
    """The top classes of each input (image files, folders, .npy arrays, or ["-"] for a data
    source of the config: `split` train or val) as records."""
    from convtrain.use.predict import check_top

    loaded = read_checkpoint(checkpoint)
    check_top(top, spec.num_outputs)
    inputs = tuple(inputs)
    from_data = "-" in inputs
    if from_data and inputs != ("-",):
        raise UserError("'-' (a data source of the config) is an INPUT of its own: give it "
                        "alone, or files and folders", path="INPUT")
    if split and not from_data:
        raise UserError("--split chooses the data source of INPUT '-'; the inputs here are "
                        "files", path="--split")
    # The checkpoint first: a wrong one fails before thousands of images are decoded.
    ready_kernels(warn=warn)
    from convtrain.data.sources import class_names
    from convtrain.use.predict import (
        data_source,
        prediction_records,
        read_inputs,
        top_classes,
    )
    from convtrain.use.predict import predict as run_predict

    network, _, classes = _network_from(spec, loaded,
                                        class_names(spec) if from_data else None)
    labels = None
    if from_data:
        x, labels, names = data_source(spec, split)
    else:
        x, names = read_inputs(inputs, spec, resize)
    scores = run_predict(network, x, batch)
    rows = top_classes(scores, top, classes,
                       probabilities=spec.loss == "softmax_cross_entropy")
    return prediction_records(names, rows, scores, labels, classes)


def trace(spec, recipe="exact", checkpoint=None, layers=(), steps=(), warn=_warn):
    """Backpropagation for one sample, step by step: a dict of steps (formula, value), or
    the steps of `layers` (names) and `steps` ("5", "5-9", "5,7") only."""
    from convtrain.spec.config import ONE_SAMPLE, lone_sample_batchnorm
    from convtrain.views.trace_select import layer_names, parse_steps, select_steps

    ranges = parse_steps(steps)
    chosen = layer_names(spec, layers) if layers else None
    loaded = read_checkpoint(checkpoint)
    per_sample = lone_sample_batchnorm(spec.layers)
    if per_sample:
        raise UserError(f"cannot trace batchnorm '{per_sample}': the trace follows one sample "
                        f"in training mode, and {ONE_SAMPLE} (a batchnorm after a conv layer, "
                        f"over H and W too, traces)", file=spec.file)
    ready_kernels(warn=warn)
    from convtrain.views.trace import run_trace

    result = run_trace(spec, recipe, loaded)
    if chosen is not None or ranges:
        result = select_steps(result, chosen, ranges, layers)
    return result


def gradcheck(spec, batch=2, max_entries=60, checkpoint=None, warn=_warn):
    """Every analytic gradient against central finite differences (float64) on `batch`
    samples: a dict with "passed" and a row per tensor (and `.rows`, CheckRow objects)."""
    refuse_a_batch_of_one(spec, batch, "check")
    loaded = read_checkpoint(checkpoint)
    ready_kernels(warn=warn)
    from convtrain.views.gradcheck_report import check_config

    return check_config(spec, batch, max_entries, loaded, checkpoint)


def time_network(spec, iters=20, threads=None, batch_given=False, warn=_warn):
    """Per-layer forward and backward times of a training step of train.batch_size
    (median of iters), and images/s: a dict (and `.team`, the processes that shared it;
    batch_given: the batch size is --batch's, named in an error)."""
    if batch_given:
        refuse_a_batch_of_one(spec, spec.train.batch_size, "time")
    from convtrain.run.distributed import join

    team = join()
    check_shares(spec, team, "--batch" if batch_given else None)
    ready_kernels(threads, team, warn)
    from convtrain.views.timing import time_network as run_timing

    return Result(run_timing(spec, spec.train.batch_size, iters, team), team=team, spec=spec)


class Result(dict):
    """A command's results as a dict (what --format json prints), with what the text view
    also needs as attributes."""

    def __init__(self, results, **attributes):
        super().__init__(results)
        self.__dict__.update(attributes)


def export(spec, checkpoint, out, opset=17, overwrite=False, warn=_warn):
    """Write the checkpoint's network as an ONNX model to `out` (a new file, unless
    overwrite); returns out."""
    from convtrain.outputs import IS_A_FOLDER
    from convtrain.use.onnx_export import export_onnx, require_onnx, write_model

    loaded = read_checkpoint(checkpoint)
    require_onnx()
    if os.path.isdir(out):
        raise UserError(f"{IS_A_FOLDER}, e.g. {os.path.join(out, spec.name + '.onnx')}",
                        file=out, path="--out")
    check_output_file(out, spec, overwrite, **{"--checkpoint": checkpoint})
    ready_kernels(warn=warn)
    network, _, classes = _network_from(spec, loaded)
    write_model(export_onnx(network, spec, opset, classes), out)
    return out


def check_output_file(path, spec, overwrite, **reads):
    """Refuse an output file that cannot or must not be written, before any work: among
    what it must not be are the files and folders the command reads, `reads` ({what:
    path}) and the config's data sources, with or without overwrite."""
    from convtrain.data.sources import source_paths
    from convtrain.outputs import OutputError, check_target, missing_folder

    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise OutputError(missing_folder(folder), file=path, path="--out")
    check_target(path, "--out", reads={"CONFIG": spec.file, **reads, **source_paths(spec)},
                 overwrite=overwrite)


def train(spec, out=None, resume=None, init_from=None, init_skip=(), max_steps=None,
          threads=None, log=None, warn=_warn):
    """Train spec into a run folder (`out`, default runs/NAME-TIME), from scratch, or
    continuing `resume` (a checkpoint), or from `init_from`'s weights. log None prints
    nothing, "quiet" the epoch lines, "full" everything the command prints. Returns
    {"folder": the run folder, "best": the best epoch's summary}; of a run on several
    processes (mpiexec), rank 0's holds the folder."""
    if resume and init_from:
        raise UserError("starts a new run; --resume continues one: give one",
                        path="--init-from")
    if init_skip and not init_from:
        raise UserError("needs --init-from (the run whose layers it keeps)",
                        path="--init-from-skip")
    if spec.log.tensorboard:
        from convtrain.run.tensorboard import require_tensorboardx

        require_tensorboardx(spec)
    from convtrain.data.sources import class_names, load_datasets
    from convtrain.run.distributed import join

    team = join()
    check_shares(spec, team)
    # Everything that can be wrong with the input (config, data, checkpoint) is found
    # before a run folder is made or touched; on every process.
    classes, datasets = team.all_succeed(
        lambda: (class_names(spec), load_datasets(spec)))  # class names before decoding
    loaded = team.all_succeed(lambda: read_checkpoint(resume or init_from))
    ready_kernels(threads, team, warn)
    from convtrain.run.train import Trainer

    trainer = Trainer(spec, datasets, quiet=log != "full", max_steps=max_steps,
                      classes=classes, team=team, console=log is not None)
    if init_from:
        trainer.init_from(*loaded, init_skip)
    if resume:
        trainer.resume_from(*loaded)
        if max_steps is not None and trainer.state.global_step >= max_steps:
            raise UserError(f"the checkpoint is at step {trainer.state.global_step} already: "
                            f"nothing to do up to step {max_steps} (--max-steps counts from "
                            f"the run's first step; raise it)", path="--max-steps")
    import click

    say = click.echo if log is not None else (lambda text, err=False: None)
    resumed = (loaded[0][0], trainer.state.global_step) if resume else None
    out, lock = team.root_does(lambda: _open_run_folder(spec, out, resume, resumed, log,
                                                        trainer.state, say)) or (None, None)
    best = trainer.run(out)
    if team.is_root:
        lock.close()
    return {"folder": out, "best": best}


def check_shares(spec, team, flag=None):
    """Each of K processes computes B/K samples of every batch: K must divide B (the
    config's, or the one `flag` gave)."""
    batch = spec.train.batch_size
    if batch % team.size:
        near = [b for b in (batch - batch % team.size, batch - batch % team.size + team.size) if b]
        message = (f"{batch} samples cannot be shared equally by {team.size} processes, each "
                   f"computing 1/{team.size} of every batch: use a multiple of {team.size} "
                   f"(e.g. {' or '.join(map(str, near))}) or another number of processes")
        if flag:
            raise UserError(message, path=flag)
        raise spec.error("train.batch_size", message)


def _open_run_folder(spec, out, resume, resumed, log, state, say):
    """Make (or reopen) the run folder, lock it, give a resumed run's new folder its
    history, write config.yaml, print the summary. Returns (folder, lock)."""
    from convtrain.data.sources import source_paths
    from convtrain.run.runfolder import (
        copy_history,
        lock_run_folder,
        prepare_run_folder,
        write_resolved_config,
    )

    out, history = prepare_run_folder(spec.name, out, resume, resumed, source_paths(spec))
    lock = lock_run_folder(out)
    if history is not None:
        copied = copy_history(history, out, resume, state.global_step, state.epochs_done)
        say(f"resume: a new run folder; copied from {history}: {', '.join(copied)} "
            f"(up to the checkpoint's step {state.global_step})", err=True)
    if resume is None:
        write_resolved_config(spec, out)  # a resumed run's once it has begun (Trainer.run)
    if log == "full":
        from convtrain.run.report import summary_text

        say(summary_text(spec))
        say(f"run folder: {out}", err=True)  # stderr, as the trainer's notes
    return out, lock


def smoke(spec, steps=20, threads=None, warn=_warn):
    """A few training steps on a small slice of the data: (ok, the line that says how
    the loss went); ok when every loss is finite and the loss fell."""
    ready_kernels(threads, warn=warn)
    from convtrain.run.smoke import smoke as run_smoke

    return run_smoke(spec, steps=steps)
