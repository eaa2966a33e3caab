"""The four pictures of `convtrain plot`, each drawn as a matplotlib figure (plots.py
writes them): curves, layers, kernels, features. matplotlib's pyplot is passed in as plt,
imported only where a picture is wanted."""

import os

import numpy as np

HEALTHY_RATIO = (1e-4, 1e-2)  # ‖ΔW‖/‖W‖ per step: around 1e-3 is the usual rule of thumb
MAX_MAPS = 16  # feature maps drawn per conv layer
# layers.png names every layer in a legend up to this many; a deeper network gets a
# colorbar of depth naming KEY_TICKS layers, and its NAMED_EXTREMES highest and lowest
# curves named at their ends (ResNet-20's 60-name legend covered the curves)
LEGEND_LAYERS = 12
KEY_TICKS = 7
NAMED_EXTREMES = 3


def curves(plt, records, config):
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


def layers(plt, records, network):
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


def first_conv(network):
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


def kernels(plt, network, checkpoint_path):
    conv = first_conv(network)
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


def sample(config):
    """(one sample (1, C, H, W), its label, the sample as stored (C, H, W): bytes for a
    picture): the first validation sample, else the first training one. Loaded before
    any picture is written, so a missing data file (paths are relative to the working
    directory) fails the command before it writes anything."""
    from convtrain.data.sources import load_datasets

    x, y, val_x, val_y = load_datasets(config, need_val=True)
    x, y = (val_x, val_y) if val_x is not None else (x, y)
    return x[:1], y[0], x.stored[0]


def features(plt, network, sample, classes=None):
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
