"""The `convtrain` command: train, trace, eval, gradcheck, summary, time.

Heavy modules (numba, the kernels) are imported inside the commands, after the
config is validated, so `--help` and config errors are fast. User errors become
one line on stderr and exit code 2; a failed run exits 1.
"""

import json
import sys

import click

from convtrain.cli_errors import OneLineErrors, reports_errors
from convtrain.errors import UserError
from convtrain.version import __version__


def _config(path, overrides=(), epochs=None):
    from convtrain.api import load_config

    return load_config(path, overrides, epochs)


def _numba(threads=None):
    from convtrain.api import ready_kernels

    ready_kernels(threads, warn=_warn)


def _warn(text):
    click.echo(text, err=True)


def _epochs(count):
    return f"{count} epoch" if count == 1 else f"{count} epochs"


def _progress(meta):
    """'after 3 epochs', or 'at step 15, in epoch 1' for a checkpoint taken mid-epoch."""
    if meta.get("step_in_epoch"):
        return f"at step {meta.get('global_step')}, in epoch {meta.get('epochs_done', 0) + 1}"
    return f"after {_epochs(meta.get('epochs_done'))}"


def _overwrite_option(what):
    return click.option("--overwrite", is_flag=True,
                        help=f"Replace {what}. Never a file the command reads, nor a "
                             f"training run's own files (config, metrics, checkpoints).")


def _echo_or_write(text, out, what):
    """text on stdout, or written whole to the file --out (checked by api.check_output_file), and
    a line on stderr saying so."""
    if out is None:
        click.echo(text, nl=False)
        return
    from convtrain.outputs import write_text

    write_text(out, text, "--out")
    click.echo(f"wrote {out}: {what}", err=True)


def _emit(fmt, payload, text):
    click.echo(json.dumps(payload, indent=1) if fmt == "json" else text)


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
    if plot_at_end:
        from convtrain.views.plots import require_pyplot

        require_pyplot()  # no matplotlib: say so now, not after the training
    if smoke:
        from convtrain.run.launch import launched_rank

        if launched_rank():  # a smoke check is one process's: rank 0 runs it
            sys.exit(0)
        from convtrain.api import smoke as run_smoke

        ok, line = run_smoke(spec, max_steps or 20, threads, warn=_warn)
        click.echo(line)
        sys.exit(0 if ok else 1)
    from convtrain.api import train as run_training

    run = run_training(spec, out, resume, init_from, init_skip, max_steps, threads,
                       log="quiet" if quiet else "full", warn=_warn)
    if plot_at_end and run["folder"] is not None:
        from convtrain.views.plots import plot_run

        for path in plot_run(run["folder"]):
            click.echo(f"wrote {path}", err=True)


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
    from convtrain.api import check_output_file
    from convtrain.api import trace as run_trace

    spec = _config(config, overrides)
    if out is not None:
        check_output_file(out, spec, overwrite, **{"--checkpoint": checkpoint})
    result = run_trace(spec, recipe, checkpoint, layers, step_texts, warn=_warn)
    if fmt == "json":
        text = json.dumps(result, indent=1) + "\n"
    elif fmt == "html":
        from convtrain.views.trace_html import format_html

        text = format_html(result, decimals, title=f"convtrain trace: {config} "
                                                  f"({recipe} recipe)", full=full)
    else:
        from convtrain.views.trace_text import format_text

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
    from convtrain.api import evaluate as run_eval
    from convtrain.run.report import confusion_text

    results = run_eval(_config(config, overrides), checkpoint, data, warn=_warn)
    _emit(fmt, results, f"{results['data']}: {results['samples']} samples  loss "
                        f"{results['loss']:.4f}  accuracy {results['accuracy']:.4f}  "
                        f"(checkpoint {_progress(results.meta)})\n" + confusion_text(results))


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
    from convtrain.api import check_output_file
    from convtrain.api import predict as run_predict
    from convtrain.use.predict import predictions_text

    spec = _config(config, overrides)
    if out is not None:
        check_output_file(out, spec, overwrite, **{"--checkpoint": checkpoint},
                          **{f"INPUT {name}": name for name in inputs})
    records = run_predict(spec, checkpoint, inputs, top, split, resize, batch, warn=_warn)
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
    from convtrain.api import export as run_export

    spec = _config(config, overrides)
    run_export(spec, checkpoint, out, opset, overwrite, warn=_warn)
    click.echo(f"wrote {out}: ONNX opset {opset}, input 'input' [N, "
               f"{', '.join(map(str, spec.input))}], output 'scores' [N, {spec.num_outputs}]")


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
    from convtrain.api import gradcheck as run_gradcheck
    from convtrain.views.gradcheck_report import gradcheck_text

    checked = run_gradcheck(_config(config, overrides), batch, max_entries, checkpoint,
                            warn=_warn)
    _emit(fmt, checked, gradcheck_text(checked))
    sys.exit(0 if checked["passed"] else 1)


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
    from convtrain.api import time_network
    from convtrain.views.timing import timing_text

    spec = _config(config, overrides + ((f"train.batch_size={batch}",) if batch else ()))
    timed = time_network(spec, iters, threads, batch_given=batch is not None, warn=_warn)
    if timed.team.is_root:
        _emit(fmt, timed, timing_text(timed, iters))
