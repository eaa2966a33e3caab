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

import numpy as np

from convtrain.errors import UserError
from convtrain.extras import pip_install
from convtrain.outputs import OutputError, check_target, inside, make_folder, same_file, write_whole

FILES = ("curves.png", "layers.png", "kernels.png", "features.png")
HEALTHY_RATIO = (1e-4, 1e-2)  # ‖ΔW‖/‖W‖ per step: around 1e-3 is the usual rule of thumb
MAX_MAPS = 16  # feature maps drawn per conv layer
# layers.png names every layer in a legend up to this many; a deeper network gets a
# colorbar of depth naming KEY_TICKS layers, and its NAMED_EXTREMES highest and lowest
# curves named at their ends (ResNet-20's 60-name legend covered the curves)
LEGEND_LAYERS = 12
KEY_TICKS = 7
NAMED_EXTREMES = 3


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
        raise UserError("no such folder", file=run_dir)
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
        raise UserError("no step or epoch records: nothing to plot (is the run still "
                        "compiling, or did it stop before log.every steps?)", file=path)
    return records


def plot_run(run_dir, out_dir=None, overwrite=False):
    """Write the four pictures of RUN_DIR into out_dir (default: RUN_DIR); returns their
    paths. Needs metrics.jsonl with at least one step record, and a checkpoint. A picture
    already there is replaced only if it is one of this run's (or with --overwrite)."""
    from convtrain.checkpoint import load_into, read_checkpoint
    from convtrain.config import load_config
    from convtrain.network import Network

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
    sample = _sample(config) if _first_conv(network) is not None else None
    classes = meta.get("classes")
    written = []
    drawings = (lambda: _curves(plt, records, config), lambda: _layers(plt, records, network),
                lambda: _kernels(plt, network, checkpoint_path),
                lambda: _features(plt, network, sample, classes))
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
    from convtrain.data import source_paths

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


def _curves(plt, records, config):
    steps = [r for r in records if r.get("event") == "step"]
    epochs = [r for r in records if r.get("event") == "epoch"]
    # Each epoch's results are drawn at the last logged step of that epoch.
    last_step = {}
    for r in steps:
        last_step[r["epoch"]] = max(last_step.get(r["epoch"], 0), r["step"])
    figure, (loss_axis, acc_axis) = plt.subplots(1, 2, figsize=(11, 4))
    # dots as well where there are few: one logged step is no line, and would not show
    loss_axis.plot([r["step"] for r in steps], [r["loss"] for r in steps], lw=0.8,
                   marker="." if len(steps) < 30 else None, color="#9aa5b8",
                   label="step loss (logged steps)")
    if epochs:
        # A run of fewer steps than log.every logged no step: its epochs mark the axis.
        at = [last_step.get(e["epoch"], 0) if steps else e["epoch"] for e in epochs]
        loss_axis.plot(at, [e["train_loss"] for e in epochs], "o-", color="#2855a6",
                       label="train loss (epoch mean)")
        if any(e.get("val_loss") is not None for e in epochs):
            loss_axis.plot(at, [e["val_loss"] for e in epochs], "s-", color="#c2452d",
                           label="val loss")
    loss_axis.set_yscale("log")
    loss_axis.set_xlabel("step" if steps else "epoch (no step logged: fewer than log.every)")
    loss_axis.set_title(f"{config.name}: loss ({config.loss})")
    loss_axis.legend(fontsize=8)
    if epochs:
        numbers = [e["epoch"] for e in epochs]
        acc_axis.plot(numbers, [e["train_acc"] for e in epochs], "o-", color="#2855a6",
                      label="train")
        if any(e.get("val_acc") is not None for e in epochs):
            acc_axis.plot(numbers, [e["val_acc"] for e in epochs], "s-", color="#c2452d",
                          label="val")
        acc_axis.legend(fontsize=8)
    else:
        acc_axis.text(0.5, 0.5, "no finished epoch yet", ha="center", va="center",
                      transform=acc_axis.transAxes)
    acc_axis.set_xlabel("epoch")
    acc_axis.set_title("accuracy")
    acc_axis.grid(alpha=0.3)
    loss_axis.grid(alpha=0.3, which="both")
    figure.tight_layout()
    return figure


def _layers(plt, records, network):
    steps = [r for r in records if r.get("event") == "step" and "layers" in r]
    if not steps:
        return _note(plt, "no step was logged (the run took fewer steps than log.every): "
                          "no per-layer norms to draw")
    names = [layer.name for layer in network.all_layers()]
    # constrained layout: tight_layout cannot place a colorbar shared by two axes
    figure, (delta_axis, ratio_axis) = plt.subplots(1, 2, figsize=(12, 4.4),
                                                    constrained_layout=True)
    colours = plt.get_cmap("viridis")(np.linspace(0, 0.9, len(names)))
    deltas, ratios = {}, {}
    for name in names:
        points = [(r["step"], r["layers"][name]) for r in steps if name in r["layers"]]
        deltas[name] = [(s, v["delta_norm"]) for s, v in points if v.get("delta_norm")]
        ratios[name] = [(s, v["update_norm"] / v["weight_norm"]) for s, v in points
                        if v.get("weight_norm") and v.get("update_norm")]
    band = ratio_axis.axhspan(*HEALTHY_RATIO, color="#4caf50", alpha=0.12,
                       label="healthy band (~1e-3)")
    for axis, curves in ((delta_axis, deltas), (ratio_axis, ratios)):
        for colour, name in zip(colours, names):
            if curves[name]:
                axis.plot(*zip(*curves[name]), lw=1, color=colour, label=name)
        axis.set_yscale("log")
        axis.set_xlabel("step")
        axis.grid(alpha=0.3, which="both")
    delta_axis.set_title("δ norm per layer (‖∂L/∂output‖)")
    ratio_axis.set_title("update / weight ratio (‖ΔW‖/‖W‖) per step")
    if sum(1 for name in names if deltas[name]) <= LEGEND_LAYERS:
        for axis in (delta_axis, ratio_axis):
            axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    else:
        _depth_key(figure, (delta_axis, ratio_axis), colours, names)
        for axis, curves in ((delta_axis, deltas), (ratio_axis, ratios)):
            _name_extremes(axis, curves, colours, names)
        ratio_axis.legend(handles=[band], fontsize=7, loc="lower left")
    return figure


def _depth_key(figure, axes, colours, names):
    """A deep network's key: colour is depth (input dark, output light) on a colorbar
    that names a few layers, instead of a legend of every layer over the curves."""
    import matplotlib

    scale = matplotlib.cm.ScalarMappable(norm=matplotlib.colors.Normalize(0, len(names) - 1),
                                         cmap=matplotlib.colors.ListedColormap(colours))
    bar = figure.colorbar(scale, ax=list(axes), fraction=0.03, pad=0.02)
    ticks = np.unique(np.linspace(0, len(names) - 1, KEY_TICKS).round().astype(int))
    bar.set_ticks(ticks)
    bar.set_ticklabels([names[i] for i in ticks], fontsize=7)
    bar.set_label("layer, input (dark) to output (light)", fontsize=8)


def _name_extremes(axis, curves, colours, names):
    """Write the names of the highest and the lowest curves at their last step: the
    layers a reader looks for first, which the colour alone cannot name. Curves ending
    at nearly the same height share one label ("res2.bn2 +2"), so that names do not
    print over each other."""
    last = sorted((points[-1][1], points[-1][0], name, colour)
                  for name, colour in zip(names, colours) for points in [curves[name]] if points)
    if not last:
        return
    ends = last if len(last) <= 2 * NAMED_EXTREMES else \
        last[:NAMED_EXTREMES] + last[-NAMED_EXTREMES:]
    span = np.log10(last[-1][0] / last[0][0]) or 1.0
    groups = []
    for value, step, name, colour in ends:
        if groups and np.log10(value / groups[-1][0]) < 0.04 * span:
            groups[-1][2].append(name)
        else:
            groups.append((value, step, [name], colour))
    for value, step, group, colour in groups:
        label = group[0] + (f" +{len(group) - 1}" if len(group) > 1 else "")
        axis.annotate(label, (step, value), xytext=(3, 0),
                      textcoords="offset points", fontsize=6, color=colour, va="center")
    axis.set_xmargin(0.18)  # room for the names inside the axes


def _first_conv(network):
    for layer in network.all_layers():
        if layer.spec.type == "conv2d":
            return layer
    return None


def _no_conv(plt, what):
    return _note(plt, f"this network has no conv2d layer: no {what}")


def _note(plt, text):
    """A picture that says why there is nothing to draw."""
    figure, axis = plt.subplots(figsize=(7, 2))
    axis.axis("off")
    axis.text(0.5, 0.5, text, ha="center", va="center", wrap=True)
    return figure


def _kernels(plt, network, checkpoint_path):
    conv = _first_conv(network)
    if conv is None:
        return _no_conv(plt, "kernels")
    weight = conv.params["weight"]  # (F, C, KH, KW), as the user wrote it
    filters, channels = weight.shape[:2]
    if channels == 3:
        return _colour_kernels(plt, conv, weight, checkpoint_path)
    limit = float(np.max(np.abs(weight))) or 1.0
    figure, axes = plt.subplots(channels, filters, squeeze=False,
                                figsize=(max(4, 0.9 * filters), max(1.6, 1.0 * channels + 0.8)))
    for c in range(channels):
        for f in range(filters):
            axis = axes[c, f]
            axis.imshow(weight[f, c], cmap="RdBu_r", vmin=-limit, vmax=limit)
            axis.set_xticks([])
            axis.set_yticks([])
            if c == 0:
                axis.set_title(f"{f}", fontsize=8)
        axes[c, 0].set_ylabel(f"ch {c}", fontsize=8)
    figure.suptitle(f"{conv.name} kernels ({os.path.basename(checkpoint_path)}); red +, "
                    f"blue −, scale ±{limit:.3g}", fontsize=9)
    figure.tight_layout()
    return figure


def _colour_kernels(plt, conv, weight, checkpoint_path):
    """A first layer that reads RGB: each filter as one RGB picture, its (3, KH, KW)
    weights scaled to its own min..max (the usual picture of learnt first-layer filters)."""
    filters = weight.shape[0]
    columns = min(filters, 16)
    rows = -(-filters // columns)
    figure, axes = plt.subplots(rows, columns, squeeze=False,
                                figsize=(max(4, 0.9 * columns), 1.0 * rows + 0.8))
    for f, axis in enumerate(axes.flat):
        axis.set_xticks([])
        axis.set_yticks([])
        if f >= filters:
            axis.axis("off")
            continue
        axis.imshow(_as_rgb(weight[f]), interpolation="nearest")
        axis.set_title(f"{f}", fontsize=8)
    figure.suptitle(f"{conv.name} kernels as RGB ({os.path.basename(checkpoint_path)})\n"
                    f"each stretched to its own min..max", fontsize=9)
    figure.tight_layout()
    return figure


def _as_rgb(planes):
    """(3, H, W) of any range -> (H, W, 3) in 0..1: bytes as they are, else its own
    min..max stretched."""
    if planes.dtype == np.uint8:
        return planes.transpose(1, 2, 0)
    low, high = float(planes.min()), float(planes.max())
    return ((planes - low) / ((high - low) or 1.0)).transpose(1, 2, 0)


def _sample(config):
    """(one sample (1, C, H, W), its label, the sample as stored (C, H, W): bytes for a
    picture): the first validation sample, else the first training one. Loaded before
    any picture is written, so a missing data file (paths are relative to the working
    directory) fails the command before it writes anything."""
    from convtrain.data import load_datasets

    x, y, val_x, val_y = load_datasets(config, need_val=True)
    x, y = (val_x, val_y) if val_x is not None else (x, y)
    return x[:1], y[0], x.stored[0]


def _features(plt, network, sample, classes=None):
    convs = [layer for layer in network.all_layers() if layer.spec.type == "conv2d"]
    if not convs:
        return _no_conv(plt, "feature maps")
    sample, label, stored = sample
    maps = {}

    def capturing(conv):  # the conv's own forward, keeping what it returns
        def forward(x):
            out = type(conv).forward(conv, x)
            maps[conv.name] = out[0]
            return out
        return forward

    for conv in convs:  # convs inside residual blocks too: the whole network runs once
        conv.forward = capturing(conv)
    try:
        network.forward(sample)
    finally:
        for conv in convs:
            del conv.forward
    columns = 1 + min(MAX_MAPS, max(m.shape[0] for m in maps.values()))
    figure, axes = plt.subplots(len(convs), columns, squeeze=False,
                                figsize=(1.0 * columns + 1, 1.2 * len(convs) + 0.8))
    for row, conv in enumerate(convs):
        if stored.shape[0] == 3:
            axes[row, 0].imshow(_as_rgb(stored))
        else:
            axes[row, 0].imshow(stored.mean(axis=0), cmap="gray")
        axes[row, 0].set_ylabel(conv.name, fontsize=8)
        for k in range(columns - 1):
            axis = axes[row, k + 1]
            if k < maps[conv.name].shape[0]:
                axis.imshow(maps[conv.name][k], cmap="magma")
                axis.set_xticks([])
                axis.set_yticks([])
            else:
                axis.axis("off")  # this layer has fewer maps than the widest one
        axes[row, 0].set_xticks([])
        axes[row, 0].set_yticks([])
    named = f"{classes[label]}, " if classes else ""
    axes[0, 0].set_title(f"input ({named}label {label})", fontsize=8)
    figure.suptitle("feature maps after each conv layer (before its activation), one "
                    "sample", fontsize=9)
    figure.tight_layout()
    return figure
