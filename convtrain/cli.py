"""The `convtrain` command: train, trace, eval, gradcheck, summary, time.

Heavy modules (numba, the kernels) are imported inside the commands, after the
config is validated, so `--help` and config errors are fast. User errors become
one line on stderr and exit code 2; a failed run exits 1.
"""

import errno
import functools
import json
import os
import sys

import click

from convtrain.version import __version__
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


def _config(path, overrides=(), epochs=None):
    from convtrain.spec.config import load_config

    overrides = list(overrides)
    if epochs is not None:
        overrides.append(f"train.epochs={epochs}")
    return load_config(path, overrides)


def _numba(threads=None, team=None):
    """Load Numba with `threads` threads (default: the cores this process has to itself),
    warning, once, of more threads than cores."""
    from convtrain.runtime import available_cores, prepare_numba

    cores, shared = available_cores(), ""
    share = team.cores_per_process() if team is not None else None
    say = team is None or team.is_root
    if share is not None and share < 1 and say:
        click.echo(f"warning: {team.size} processes on {cores} core{'s' if cores > 1 else ''}: "
                   f"each has {share:.2g} of a core, and they take turns (slower, same "
                   f"results); start at most {cores} per machine", err=True)
    elif share is not None and share < cores:
        shared = (f" (its share of the {cores} it may run on, with the other processes on "
                  f"this machine)")
        cores = int(share + 1e-9)
        threads = threads or cores
    if threads and threads > cores and say:
        # Every parallel loop ends when its last thread does; threads beyond the cores wait
        # for a time slice, and a digits step was 5x slower with 3 threads on 2 cores.
        click.echo(f"warning: --threads {threads} is more than the {cores} "
                   f"core{'s' if cores > 1 else ''} available to this process{shared}; the "
                   f"extra threads only take turns (slower, same results)", err=True)
    prepare_numba(threads)
    from convtrain.runtime import unwritable_cache_dir

    if unwritable_cache_dir() and say:
        click.echo(f"warning: {unwritable_cache_dir()}: cannot create or write the kernel "
                   f"cache folder; kernels compile again in every run (set XDG_CACHE_HOME or "
                   f"NUMBA_CACHE_DIR to a writable folder)", err=True)


def _refuse_a_batch_of_one(spec, batch, verb):
    """--batch 1 where a batchnorm normalises over the batch axis alone: exit 2."""
    from convtrain.spec.config import lone_sample_batchnorm

    per_sample = lone_sample_batchnorm(spec.layers)
    if batch == 1 and per_sample:
        raise UserError(f"a batch of one cannot {verb} batchnorm '{per_sample}': it normalises "
                        f"each feature over the batch, and the variance of one sample is zero; "
                        f"use --batch 2 or more", path="--batch")


def _epochs(count):
    return f"{count} epoch" if count == 1 else f"{count} epochs"


def _progress(meta):
    """'after 3 epochs', or 'at step 15, in epoch 1' for a checkpoint taken mid-epoch."""
    if meta.get("step_in_epoch"):
        return f"at step {meta.get('global_step')}, in epoch {meta.get('epochs_done', 0) + 1}"
    return f"after {_epochs(meta.get('epochs_done'))}"


def _read_checkpoint(path):
    """(read_checkpoint's result, path), or None without a path."""
    if path is None:
        return None
    from convtrain.run.checkpoint import read_checkpoint

    return read_checkpoint(path), path


def _overwrite_option(what):
    return click.option("--overwrite", is_flag=True,
                        help=f"Replace {what}. Never a file the command reads, nor a "
                             f"training run's own files (config, metrics, checkpoints).")


def _output_file(path, spec, overwrite, **reads):
    """Refuse (exit 2) an --out that cannot or must not be written, before any work: among
    what it must not be are the files and folders the command reads, `reads` ({what: path})
    and the config's data sources, with or without --overwrite."""
    from convtrain.data.sources import source_paths
    from convtrain.outputs import OutputError, check_target

    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise OutputError(f"the folder {folder} does not exist", file=path, path="--out")
    check_target(path, "--out", reads={"CONFIG": spec.file, **reads, **source_paths(spec)},
                 overwrite=overwrite)


def _echo_or_write(text, out, what):
    """text on stdout, or written whole to the file --out (checked by _output_file), and
    a line on stderr saying so."""
    if out is None:
        click.echo(text, nl=False)
        return
    from convtrain.outputs import write_text

    write_text(out, text, "--out")
    click.echo(f"wrote {out}: {what}", err=True)


def _emit(fmt, payload, text):
    click.echo(json.dumps(payload, indent=1) if fmt == "json" else text)


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


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="convtrain")
@click.pass_context
def main(ctx):
    """Train convolutional networks written as YAML, with every backprop number in view."""
    from convtrain.runtime import prepare_environment

    prepare_environment()
    from convtrain.run.launch import launched_rank

    if launched_rank() and ctx.invoked_subcommand not in SHARED_COMMANDS:
        # Under mpiexec, a command that does not share its work runs in rank 0 alone, so
        # that its output is printed once; the other processes end at once.
        sys.exit(0)


# The commands that K processes started by an MPI launcher run together (the rest: rank 0).
SHARED_COMMANDS = ("train", "time")


@main.command()
@click.argument("config", type=click.Path())
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config key, e.g. optimizer.lr=0.01 or layers.0.filters=8.")
@click.option("--epochs", type=click.IntRange(min=1), help="Override train.epochs.")
@click.option("--max-steps", type=click.IntRange(min=1), help="Stop after this many steps in all.")
@click.option("--out", type=click.Path(file_okay=False), help="Run folder (default runs/NAME-TIME).")
@click.option("--resume", type=click.Path(), help="Continue from a checkpoint.")
@click.option("--init-from", type=click.Path(),
              help="Start from another run's weights (fine-tuning): weights only, a fresh "
                   "optimizer, the architecture checked.")
@click.option("--init-from-skip", "init_skip", multiple=True, metavar="LAYER",
              help="With --init-from: leave this layer at its initialisation (a new head). "
                   "Repeatable.")
@click.option("--smoke", is_flag=True, help="CI check: a few steps on a small slice; exit 0 only "
                                            "if every loss is finite and the loss fell.")
@click.option("--threads", type=click.IntRange(min=1), help="Threads for the kernels.")
@click.option("--quiet", is_flag=True, help="Print only epoch lines (and why a run ended early).")
@click.option("--plot", "plot_at_end", is_flag=True,
              help="Write the pictures of `convtrain plot` into the run folder at the end.")
@reports_errors
def train(config, overrides, epochs, max_steps, out, resume, init_from, init_skip, smoke,
          threads, quiet, plot_at_end):
    """Train the network in CONFIG.

    The log (layer summary, per-layer tables, epoch lines) goes to stdout; the progress
    bar and notes go to stderr."""
    spec = _config(config, overrides, epochs)
    if resume and init_from:
        raise click.UsageError("--init-from starts a new run; --resume continues one: give one")
    if init_skip and not init_from:
        raise click.UsageError("--init-from-skip needs --init-from")
    if plot_at_end:
        from convtrain.views.plots import require_pyplot

        require_pyplot()  # no matplotlib: say so now, not after the training
    if spec.log.tensorboard and not smoke:  # a smoke run writes no run folder
        from convtrain.run.tensorboard import require_tensorboardx

        require_tensorboardx(spec)
    if smoke:
        from convtrain.run.launch import launched_rank

        if launched_rank():  # a smoke check is one process's: rank 0 runs it
            sys.exit(0)
        _numba(threads)
        from convtrain.run.smoke import smoke as run_smoke

        ok, line = run_smoke(spec, steps=max_steps or 20)
        click.echo(line)
        sys.exit(0 if ok else 1)
    from convtrain.data.sources import class_names, load_datasets
    from convtrain.run.distributed import join

    team = join()
    _check_shares(spec, team)
    # Everything that can be wrong with the input (config, data, checkpoint) is found
    # before a run folder is made or touched; on every process.
    classes, datasets = team.all_succeed(
        lambda: (class_names(spec), load_datasets(spec)))  # class names before decoding
    loaded = team.all_succeed(lambda: _read_checkpoint(resume or init_from))
    _numba(threads, team)
    from convtrain.run.train import Trainer

    trainer = Trainer(spec, datasets, quiet=quiet, max_steps=max_steps, classes=classes,
                      team=team)
    if init_from:
        trainer.init_from(*loaded, init_skip)
    if resume:
        trainer.resume_from(*loaded)
        if max_steps is not None and trainer.state.global_step >= max_steps:
            raise UserError(f"the checkpoint is at step {trainer.state.global_step} already: "
                            f"nothing to do up to step {max_steps} (--max-steps counts from "
                            f"the run's first step; raise it)", path="--max-steps")
    out, lock = team.root_does(lambda: _open_run_folder(spec, out, resume, quiet,
                                                        trainer.state)) or (None, None)
    trainer.run(out)
    if team.is_root:
        lock.close()
    if plot_at_end and team.is_root:
        from convtrain.views.plots import plot_run

        for path in plot_run(out):
            click.echo(f"wrote {path}", err=True)


def _check_shares(spec, team, flag=None):
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


def _open_run_folder(spec, out, resume, quiet, state):
    """Make (or reopen) the run folder, lock it, give a resumed run's new folder its
    history, write config.yaml, print the summary. Returns (folder, lock)."""
    from convtrain.run.runfolder import (
        copy_history,
        lock_run_folder,
        prepare_run_folder,
        write_resolved_config,
    )

    from convtrain.data.sources import source_paths

    out, history = prepare_run_folder(spec.name, out, resume, state.global_step,
                                      source_paths(spec))
    lock = lock_run_folder(out)
    if history is not None:
        copied = copy_history(history, out, resume, state.global_step, state.epochs_done)
        click.echo(f"resume: a new run folder; copied from {history}: {', '.join(copied)} "
                   f"(up to the checkpoint's step {state.global_step})", err=True)
    if resume is None:
        write_resolved_config(spec, out)  # a resumed run's once it has begun (Trainer.run)
    if not quiet:
        from convtrain.run.report import summary_text

        click.echo(summary_text(spec))
    if not quiet:
        click.echo(f"run folder: {out}", err=True)  # stderr, as the trainer's notes
    return out, lock


@main.command(name="compile")
@click.argument("configs", nargs=-1, required=True, type=click.Path())
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a key (in every config).")
@click.option("--threads", type=click.IntRange(min=1),
              help="Threads for the kernels; also the most processes compiling.")
@reports_errors
def compile_command(configs, overrides, threads):
    """Compile and cache every kernel that training CONFIGS uses (for a Docker build step
    or a CI cache-warming step); prints the cache folder and the seconds."""
    specs = [_config(path, overrides) for path in configs]  # all checked before compiling
    from convtrain.runtime import (
        kernel_cache_dir,
        prepare_environment,
        unwritable_cache_dir,
    )

    prepare_environment()
    if unwritable_cache_dir():
        raise UserError(f"{unwritable_cache_dir()}: cannot create or write the kernel cache "
                        f"folder, so nothing compiled would be kept; set XDG_CACHE_HOME (or "
                        f"NUMBA_CACHE_DIR) to a writable folder")
    _numba(threads)
    from convtrain.run.compiling import compile_configs

    note, counts = compile_configs(specs)
    for path, (used, new) in zip(configs, counts):
        shared = f" ({used - new} also in the configs before)" if new < used else ""
        click.echo(f"{path}: {used} kernel signatures{shared}")
    click.echo(note)
    click.echo(f"kernel cache: {kernel_cache_dir()}")


@main.command()
@click.argument("run_dir", type=click.Path())
@click.option("--out", type=click.Path(file_okay=False),
              help="Folder for the pictures (default: RUN_DIR).")
@_overwrite_option("pictures of other runs (or files of yours) named like these")
@reports_errors
def plot(run_dir, out, overwrite):
    """Pictures of a run: curves, layers, kernels and features PNGs (needs matplotlib).
    A picture already there is replaced only if it is a picture of this run."""
    from convtrain.views.plots import plot_run, read_metrics

    read_metrics(run_dir)  # an empty or half-written folder is reported before numba loads
    _numba()
    for path in plot_run(run_dir, out, overwrite):
        click.echo(path)


@main.command()
@click.argument("config", type=click.Path())
@click.option("--recipe", type=click.Choice(["exact", "textbook"]), default="exact",
              show_default=True, help="exact gradients, or the worked example's rules.")
@click.option("--decimals", type=click.IntRange(min=0, max=12), default=4, show_default=True,
              help="Rounding of the text view (JSON is never rounded).")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "html"]), default="text",
              show_default=True, help="html: one self-contained page of coloured grids.")
@click.option("--full", is_flag=True, help="Print big arrays in full instead of summaries "
                                           "(html: draw every channel, not the first 8).")
@click.option("--checkpoint", type=click.Path(),
              help="Trace a trained network's weights instead of its initialisation.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a key.")
@click.option("--layer", "layers", multiple=True, metavar="NAME",
              help="Show only this layer's steps (a residual block's include those inside "
                   "it); names as `convtrain summary` prints them. Repeatable.")
@click.option("--step", "step_texts", multiple=True, metavar="N|N-M",
              help="Show only these steps: a number, a range 5-9 or a list 5,7. Repeatable. "
                   "With --layer, the steps that are both.")
@click.option("--out", type=click.Path(),
              help="Write the trace to this file (a new one, unless --overwrite) instead of "
                   "stdout: for --format html, the page to open.")
@_overwrite_option("a file already at --out")
@reports_errors
def trace(config, recipe, decimals, fmt, full, checkpoint, overrides, layers, step_texts,
          out, overwrite):
    """Print backpropagation step by step for one sample of CONFIG.

    Steps keep their numbers when --layer or --step shows part of the trace, in every
    --format."""
    from convtrain.views.trace_select import layer_names, parse_steps, select_steps

    ranges = parse_steps(step_texts)
    spec = _config(config, overrides)
    chosen = layer_names(spec, layers) if layers else None
    loaded = _read_checkpoint(checkpoint)
    if out is not None:
        _output_file(out, spec, overwrite, **{"--checkpoint": checkpoint})
    from convtrain.spec.config import lone_sample_batchnorm

    per_sample = lone_sample_batchnorm(spec.layers)
    if per_sample:
        raise UserError(f"cannot trace batchnorm '{per_sample}': the "
                        f"trace follows one sample in training mode, and it normalises each "
                        f"feature over the batch, where the variance of one sample is zero "
                        f"(a batchnorm after a conv layer, over H and W too, traces)",
                        file=spec.file)
    _numba()
    from convtrain.views.trace import run_trace
    from convtrain.views.trace_text import format_text

    result = run_trace(spec, recipe, loaded)
    if chosen is not None or ranges:
        result = select_steps(result, chosen, ranges, layers)
    if fmt == "json":
        text = json.dumps(result, indent=1) + "\n"
    elif fmt == "html":
        from convtrain.views.trace_html import format_html

        text = format_html(result, decimals, title=f"convtrain trace: {config} "
                                                  f"({recipe} recipe)", full=full)
    else:
        text = format_text(result, decimals, full) + "\n"
    _echo_or_write(text, out, f"{len(result['steps'])} steps")


@main.command(name="eval")
@click.argument("config", type=click.Path())
@click.option("--checkpoint", required=True, type=click.Path())
@click.option("--data", type=click.Path(),
              help="Evaluate on this labelled data instead: an image folder (one subfolder "
                   "per class), a .npz, a .csv, an IDX images file or CIFAR-10's binary "
                   "folder; read with the config's scale, mean and std.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a key.")
@reports_errors
def evaluate(config, checkpoint, data, fmt, overrides):
    """Loss, accuracy, per-class accuracy and the confusion matrix of a checkpoint on the
    validation data (train data if none), or on --data."""
    spec = _config(config, overrides)
    loaded = _read_checkpoint(checkpoint)
    _numba()
    import numpy as np

    from convtrain.run.checkpoint import load_into, matching_classes
    from convtrain.data.sources import class_names, load_datasets
    from convtrain.model.network import Network
    from convtrain.run.report import class_report, confusion_text
    from convtrain.run.train import evaluate as run_eval

    if data is None:
        x, y, val_x, val_y = load_datasets(spec)
    network = Network(spec)
    meta = load_into(*loaded, spec, network)
    if data is not None:
        from convtrain.data.data_option import load_data_option

        x, y, names = load_data_option(spec, data, matching_classes(meta, spec, checkpoint))
        which = data
    else:
        names = matching_classes(meta, spec, checkpoint, class_names(spec))
        which = "val" if val_x is not None else "train"
        if val_x is not None:
            x, y = val_x, val_y
    predicted = np.empty(len(y), dtype=np.int64)
    loss, acc = run_eval(network, x, y, predictions=predicted)
    classes = class_report(y, predicted, spec.num_outputs, names)
    payload = {"checkpoint": checkpoint, "data": which, "samples": int(len(y)), "loss": loss,
               "accuracy": acc, "epochs_done": meta.get("epochs_done"), **classes}
    _emit(fmt, payload, f"{which}: {len(y)} samples  loss {loss:.4f}  accuracy {acc:.4f}  "
                        f"(checkpoint {_progress(meta)})\n"
                        + confusion_text(classes))


@main.command()
@click.argument("config", type=click.Path())
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.option("--checkpoint", required=True, type=click.Path())
@click.option("--top", type=click.IntRange(min=1), default=1, show_default=True,
              help="How many of the best classes to list.")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "csv"]), default="text",
              show_default=True)
@click.option("--split", type=click.Choice(["train", "val"]), default=None,
              help="For INPUT '-': which data source (default: val if the config has one).")
@click.option("--resize", is_flag=True, help="Resize images of another size than input.")
@click.option("--batch", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--out", type=click.Path(),
              help="Write the predictions to this file (a new one, unless --overwrite) "
                   "instead of stdout.")
@_overwrite_option("a file already at --out")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a key.")
@reports_errors
def predict(config, inputs, checkpoint, top, fmt, split, resize, batch, out, overwrite,
            overrides):
    """The top classes of each input: image files, folders of images, .npy arrays (one
    sample or a stack), or '-' for a data source of the config."""
    spec = _config(config, overrides)
    loaded = _read_checkpoint(checkpoint)
    if out is not None:
        _output_file(out, spec, overwrite, **{"--checkpoint": checkpoint},
                     **{f"INPUT {name}": name for name in inputs})
    from convtrain.use.predict import check_top, read_inputs

    check_top(top, spec.num_outputs)
    from_data = "-" in inputs
    if from_data and inputs != ("-",):
        raise UserError("'-' (a data source of the config) is an INPUT of its own: give it "
                        "alone, or files and folders", path="INPUT")
    if split and not from_data:
        raise UserError("--split chooses the data source of INPUT '-'; the inputs here are "
                        "files", path="--split")
    # The checkpoint first: a wrong one fails before thousands of images are decoded.
    _numba()
    from convtrain.run.checkpoint import load_into, matching_classes
    from convtrain.data.sources import class_names
    from convtrain.model.network import Network
    from convtrain.use.predict import data_source, prediction_records, predictions_text, top_classes
    from convtrain.use.predict import predict as run_predict

    network = Network(spec)
    meta = load_into(*loaded, spec, network)
    classes = matching_classes(meta, spec, checkpoint, class_names(spec) if from_data else None)
    labels = None
    if from_data:
        x, labels, names = data_source(spec, split)
    else:
        x, names = read_inputs(inputs, spec, resize)
    scores = run_predict(network, x, batch)
    rows = top_classes(scores, top, classes,
                       probabilities=spec.loss == "softmax_cross_entropy")
    records = prediction_records(names, rows, scores, labels, classes)
    _echo_or_write(predictions_text(records, fmt, top), out,
                   f"{len(records)} prediction{'s' if len(records) != 1 else ''}")


@main.command()
@click.argument("config", type=click.Path())
@click.option("--checkpoint", required=True, type=click.Path())
@click.option("--out", required=True, type=click.Path(),
              help="The .onnx file to write (a new file, unless --overwrite).")
@_overwrite_option("a file already at --out")
@click.option("--opset", type=click.IntRange(13, 21), default=17, show_default=True)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a key.")
@reports_errors
def export(config, checkpoint, out, overwrite, opset, overrides):
    """Write the checkpoint's network as an ONNX model: input 'input' float32 [N, C, H, W],
    output 'scores' [N, K]."""
    spec = _config(config, overrides)
    loaded = _read_checkpoint(checkpoint)
    from convtrain.use.onnx_export import export_onnx, require_onnx, write_model

    require_onnx()
    if os.path.isdir(out):
        raise UserError(f"is a folder: give the file to write, e.g. "
                        f"{os.path.join(out, spec.name + '.onnx')}", file=out, path="--out")
    _output_file(out, spec, overwrite, **{"--checkpoint": checkpoint})
    _numba()
    from convtrain.run.checkpoint import load_into, matching_classes
    from convtrain.model.network import Network

    network = Network(spec)
    meta = load_into(*loaded, spec, network)
    model = export_onnx(network, spec, opset, matching_classes(meta, spec, checkpoint))
    write_model(model, out)
    click.echo(f"wrote {out}: ONNX opset {opset}, input 'input' [N, {', '.join(map(str, spec.input))}], "
               f"output 'scores' [N, {spec.num_outputs}]")


@main.command()
@click.argument("config", type=click.Path())
@click.option("--batch", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
@click.option("--max-entries", type=click.IntRange(min=1), default=60, show_default=True,
              help="Tensors larger than this are sampled (seeded), smaller ones checked whole.")
@click.option("--checkpoint", type=click.Path(),
              help="Check at a trained network's weights instead of its initialisation.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a key.")
@reports_errors
def gradcheck(config, batch, fmt, max_entries, checkpoint, overrides):
    """Check every analytic gradient against central finite differences (float64)."""
    spec = _config(config, overrides)
    _refuse_a_batch_of_one(spec, batch, "check")
    loaded = _read_checkpoint(checkpoint)
    _numba()
    from convtrain.run.checkpoint import load_into
    from convtrain.model.gradcheck import TOLERANCE, check_gradients
    from convtrain.model.network import Network
    from convtrain.views.trace import sample_batch

    x, labels, origin = sample_batch(spec, batch)
    network = Network(spec, dtype="float64")
    if loaded:
        load_into(*loaded, spec, network)
        nudged = []  # trained biases are what they are
    else:
        nudged = _nudge_zero_biases(network, spec.seed)
    rows = check_gradients(network, x, labels, max_entries=max_entries)
    failed = [r for r in rows if not r.passed]
    payload = {"tolerance": TOLERANCE, "inputs": origin, "passed": not failed,
               "biases_nudged": nudged, "checkpoint": checkpoint,
               "rows": [{"layer": r.layer, "argument": r.argument, "shape": list(r.shape),
                         "checked": r.checked, "total": r.total, "kinks": r.kinks,
                         "max_rel_err": r.max_rel_err, "passed": r.passed} for r in rows]}
    weights = f"weights of {checkpoint}" if checkpoint else "initial weights"
    lines = [f"gradcheck: {origin}, {weights}, float64, five-point central differences, "
             f"tolerance {TOLERANCE:g}"]
    if nudged:
        lines.append(f"biases of {', '.join(nudged)} start at zero; set to small seeded random "
                     f"values so that ReLU and max-pool inputs do not sit exactly on a kink")
    width = max([12] + [len(r.layer) + 2 for r in rows])
    lines += [f"{'layer':<{width}}{'argument':<9}{'checked':>12}{'kinks':>7}{'max rel err':>13}"
              f"  result"]
    for r in rows:
        checked = f"{r.checked}/{r.total}"
        verdict = "ok" if r.passed else "FAIL"
        if r.passed and r.kinks == r.checked:
            verdict = "not checked: every entry sits on a kink"
        lines.append(f"{r.layer:<{width}}{r.argument:<9}{checked:>12}{r.kinks:>7}"
                     f"{r.max_rel_err:>13.2e}  {verdict}")
    lines += [f"FAIL {r.describe()}" for r in failed]
    lines.append("all gradients match" if not failed else f"{len(failed)} tensors exceed "
                                                           f"{TOLERANCE:g}")
    _emit(fmt, payload, "\n".join(lines))
    sys.exit(1 if failed else 0)


def _nudge_zero_biases(network, seed):
    """Zero-initialised biases put many ReLU inputs exactly at 0 (on the kink) wherever a
    window sees only zero pixels; a finite difference there checks nothing. Give such
    biases small seeded values. Returns the names of the layers changed."""
    import numpy as np

    rng = np.random.default_rng([seed, 3])
    nudged = []
    for layer in network.all_layers():
        bias = layer.params.get("bias")  # batchnorm's β, given in its spec as `beta`
        given = getattr(layer.spec, "biases", getattr(layer.spec, "beta", None))
        if bias is not None and given is None and not np.any(bias):
            bias[...] = rng.uniform(-0.1, 0.1, size=bias.shape)
            nudged.append(layer.name)
    return nudged


@main.command()
@click.argument("config", type=click.Path())
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a key.")
@reports_errors
def summary(config, overrides):
    """One row per layer: output shape, parameters, forward FLOPs per sample."""
    from convtrain.run.report import summary_text

    click.echo(summary_text(_config(config, overrides)))


@main.command(name="time")
@click.argument("config", type=click.Path())
@click.option("--batch", type=click.IntRange(min=1), help="Batch size (default train.batch_size).")
@click.option("--iters", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), help="Threads for the kernels.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a key.")
@reports_errors
def time_command(config, batch, iters, threads, fmt, overrides):
    """Per-layer forward/backward ms per batch (median of --iters) and images/s, like caffe time."""
    spec = _config(config, overrides)
    _refuse_a_batch_of_one(spec, batch, "time")
    if batch:
        spec = _config(config, overrides + (f"train.batch_size={batch}",))
    from convtrain.run.distributed import join

    team = join()
    _check_shares(spec, team, "--batch" if batch else None)
    _numba(threads, team)
    from convtrain.run.report import WINOGRAD_LEGEND, type_and_algorithm
    from convtrain.views.timing import time_network

    result = time_network(spec, spec.train.batch_size, iters, team)
    if not team.is_root:
        return
    processes = (f" per process, {team.size} processes of {result['batch'] // team.size} "
                 f"samples each (times are rank 0's)" if team.size > 1 else "")
    threads_word = "thread" if result["threads"] == 1 else "threads"
    lines = [f"{spec.name}: batch {result['batch']}, {spec.dtype}, {result['threads']} "
             f"{threads_word} ({result['threading_layer']}){processes}, median of {iters} "
             f"iterations; {result['kernels']}, not counted"]
    labels = ["  " * row["depth"] + row["name"] for row in result["layers"]]
    types = [type_and_algorithm(row["type"], row.get("algorithms", {}).get("forward"),
                                row.get("algorithms", {}).get("kernel_gradient"))
             for row in result["layers"]]
    name_w = max([12] + [len(label) + 2 for label in labels])
    type_w = max([12] + [len(kind) + 2 for kind in types])
    lines.append(f"{'layer':<{name_w}}{'type':<{type_w}}{'forward ms':>12}{'backward ms':>13}")
    for label, kind, row in zip(labels, types, result["layers"]):
        lines.append(f"{label:<{name_w}}{kind:<{type_w}}{row['forward_ms']:>12.3f}"
                     f"{row['backward_ms']:>13.3f}")
    lines.append(f"{'total':<{name_w + type_w}}{result['forward_ms']:>12.3f}"
                 f"{result['backward_ms']:>13.3f}")
    if any(kind != row["type"] for kind, row in zip(types, result["layers"])):
        lines.append(WINOGRAD_LEGEND)
    lines.append(f"training step (forward, loss, backward, update): {result['step_ms']:.3f} ms "
                 f"= {result['images_per_s']:.0f} images/s")
    if team.size > 1:
        lines.append(f"of which communication (and waiting for the process before in each "
                     f"sum): {result['comm_ms']:.3f} ms ({result['comm_ms'] / result['step_ms']:.0%}), "
                     f"{result['comm_bytes_per_step']:,} bytes received by rank 0; a plain "
                     f"MPI allreduce of the {result['parameters']:,} gradients (whose sum "
                     f"would depend on the number of processes): "
                     f"{result['plain_allreduce_ms']:.3f} ms")
    _emit(fmt, result, "\n".join(lines))
