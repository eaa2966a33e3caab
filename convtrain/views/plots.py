"""`convtrain plot RUN_DIR`: pictures of a run, from its metrics.jsonl and checkpoints.

    curves.png    train/val loss and accuracy per epoch, and the loss of every logged step
    layers.png    per-layer delta norm and update/weight ratio over the steps (log scale),
                  the healthy band around 1e-3 shaded; a deep network's layers coloured
                  by depth on a colorbar, its highest and lowest curves named
    kernels.png   the first conv layer's kernels, one small image each (in colour, one
                  image per filter, when the input has three channels)
    features.png  one sample's feature maps after each conv layer, beside the sample (in
                  colour when it has three channels)

matplotlib is an optional extra (the `plot` extra), imported only here.
"""

import io
import json
import os

from convtrain.views import plot_pictures as pictures
from convtrain.errors import UserError, no_such
from convtrain.extras import pip_install
from convtrain.outputs import (
    OutputError,
    check_target,
    inside,
    make_folder,
    same_file,
    write_whole,
)

FILES = ("curves.png", "layers.png", "kernels.png", "features.png")


def require_pyplot():
    try:
        import matplotlib
    except ImportError:
        raise UserError(f"plotting needs matplotlib, an optional extra: "
                        f"{pip_install('plot')}") from None
    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    return plt


def read_metrics(run_dir):
    """The records of RUN_DIR/metrics.jsonl. A last line cut short (a run killed while
    writing it) is left out; any other unreadable line is an error."""
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.exists(run_dir):
        raise UserError(no_such("folder"), file=run_dir)
    if not os.path.isdir(run_dir):
        folder = os.path.dirname(run_dir) or "."
        hint = (f": give its folder, {folder}"
                if os.path.exists(os.path.join(folder, "metrics.jsonl")) else "")
        raise UserError(f"is a file, not a run folder: plot takes the folder a run wrote "
                        f"(runs/NAME-…, or train's --out){hint}", file=run_dir)
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except FileNotFoundError:
        raise UserError("no metrics.jsonl here: not a convtrain run folder, or a run that "
                        "never started", file=run_dir) from None
    records = []
    for number, line in enumerate(lines, 1):
        try:
            records.append(json.loads(line))
        except ValueError:
            if number == len(lines):
                break
            raise UserError("not a JSON record", file=path, line=number) from None
    if not any(r.get("event") in ("step", "epoch") for r in records):
        failed = [r for r in records if r.get("event") == "failed"]
        if failed:
            raise UserError(f"no step or epoch records: nothing to plot; the run failed "
                            f"before it logged any ({failed[-1].get('reason')})", file=path)
        raise UserError("no step or epoch records: nothing to plot (the run is still "
                        "compiling, or stopped before log.every steps and its first epoch's "
                        "end; lower log.every, or train longer)", file=path)
    return records


def plot_run(run_dir, out_dir=None, overwrite=False):
    """Write the four pictures of RUN_DIR into out_dir (default: RUN_DIR); returns their
    paths. Needs metrics.jsonl with at least one step record, and a checkpoint. A picture
    already there is replaced only if it is one of this run's (or with --overwrite)."""
    from convtrain.run.checkpoint import load_into, read_checkpoint
    from convtrain.spec.config import load_config
    from convtrain.model.network import Network

    records = read_metrics(run_dir)
    checkpoint_path = _checkpoint(run_dir)
    config = load_config(os.path.join(run_dir, "config.yaml"))
    out_dir = out_dir or run_dir
    _check_out_dir(run_dir, out_dir, config)
    source = _source_text(run_dir)
    targets = [os.path.join(out_dir, name) for name in FILES]
    for path in targets:  # all refused before any is drawn
        check_target(path, "--out", own=lambda p: picture_source(p) == source,
                     overwrite=overwrite)
    plt = require_pyplot()
    network = Network(config)
    meta = load_into(read_checkpoint(checkpoint_path), checkpoint_path, config, network)
    sample = pictures.sample(config) if pictures.first_conv(network) is not None else None
    classes = meta.get("classes")
    written = []
    drawings = (lambda: pictures.curves(plt, records, config),
                lambda: pictures.layers(plt, records, network),
                lambda: pictures.kernels(plt, network, checkpoint_path),
                lambda: pictures.features(plt, network, sample, classes))
    made = make_folder(out_dir, "--out")
    try:
        for path, draw in zip(targets, drawings):
            figure = draw()
            picture = io.BytesIO()
            figure.savefig(picture, dpi=110, format="png",
                           metadata={"Software": "convtrain plot", "Source": source})
            plt.close(figure)
            written.append(write_whole(path, picture.getvalue(), "--out"))
    except OutputError:
        if made and not written:
            os.rmdir(out_dir)  # made for this plot, and empty: as it was, absent
        raise
    return written


def _check_out_dir(run_dir, out_dir, config):
    """The pictures of one run go to its own folder, or to one that is no other run's and
    holds none of the data the run trained on (a picture there would be a sample)."""
    from convtrain.data.sources import source_paths

    if os.path.exists(os.path.join(out_dir, "metrics.jsonl")) and not same_file(out_dir, run_dir):
        raise OutputError(f"is the folder of another run: the pictures of {run_dir} go to "
                          f"its own folder (leave out --out) or one of no run's",
                          file=out_dir, path="--out")
    for what, path in source_paths(config).items():
        if same_file(out_dir, path) or inside(out_dir, path):
            raise OutputError(f"is in {path}, the {what} folder the run trained on: give a "
                              f"folder outside it", file=out_dir, path="--out")


def _source_text(run_dir):
    """The run folder as a PNG text chunk holds it (Latin-1: any path's bytes fit)."""
    return os.fsencode(os.path.realpath(run_dir)).decode("latin-1")


def picture_source(path):
    """The run folder named in the 'Source' text of a PNG `convtrain plot` drew, or None
    for any other file."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(1 << 16)  # the text chunks come before the image data
    except OSError:
        return None
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return None
    at = 8
    while at + 8 <= len(data):
        length, kind = int.from_bytes(data[at:at + 4], "big"), data[at + 4:at + 8]
        if kind == b"IDAT":
            break
        key, _, value = data[at + 8:at + 8 + length].partition(b"\0")
        if kind == b"tEXt" and key == b"Source":
            return value.decode("latin-1")
        at += 12 + length
    return None


def _checkpoint(run_dir):
    for name in ("checkpoint-best.npz", "checkpoint-last.npz"):
        path = os.path.join(run_dir, name)
        if os.path.exists(path):
            return path
    raise UserError("no checkpoint yet (checkpoint-best.npz or checkpoint-last.npz): the "
                    "kernel and feature pictures need one", file=run_dir)
