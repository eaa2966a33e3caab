"""Console text: per-layer tables, epoch lines, metrics records, human-readable numbers."""

import json
import math

import numpy as np

from convtrain.layers import walk_with_depth
from convtrain.layers.conv2d import WINOGRAD_GRADIENT_MIN_SIDE


def norm(array):
    return float(np.sqrt(np.sum(np.square(array, dtype=np.float64))))



def layer_record(network, updates, delta_norms=None):
    """Per-layer norms after a step: δ (error at the layer's output) for every layer,
    and for layers with a weight: ∇W, ΔW (the applied update) and W. delta_norms: {name:
    δ norm} taken during backward, else they are taken from the network's kept deltas."""
    if delta_norms is None:
        delta_norms = {name: norm(delta) for name, delta in network.deltas.items()}
    record = {}
    for layer in network.all_layers():
        entry = {"delta_norm": delta_norms[layer.name]}
        if "weight" in layer.params:
            entry["grad_norm"] = norm(layer.grads["weight"])
            entry["update_norm"] = norm(updates[f"{layer.name}.weight"])
            entry["weight_norm"] = norm(layer.params["weight"])
        record[layer.name] = entry
    return record


def layer_table(step, epoch, loss, lr, record):
    width = max([12] + [len(name) + 2 for name in record])
    lines = [f"step {step}  epoch {epoch}  loss {loss:.4f}  lr {lr:.4g}",
             f"  {'layer':<{width}}{'δ norm':>11}{'∇W norm':>11}{'ΔW norm':>11}{'‖ΔW‖/‖W‖':>11}"]
    for name, entry in record.items():
        cells = [_sci(entry["delta_norm"])]
        if "grad_norm" in entry:
            ratio = entry["update_norm"] / entry["weight_norm"] if entry["weight_norm"] else math.inf
            cells += [_sci(entry["grad_norm"]), _sci(entry["update_norm"]), _sci(ratio)]
        else:
            cells += ["", "", ""]
        lines.append((f"  {name:<{width}}" + "".join(f"{c:>11}" for c in cells)).rstrip())
    return "\n".join(lines)


def epoch_line(record, epochs):
    val = ""
    if record["val_loss"] is not None:
        val = f"  val_loss {record['val_loss']:.4f}  val_acc {record['val_acc']:.4f}"
    return (f"epoch {record['epoch']}/{epochs}  train_loss {record['train_loss']:.4f}  "
            f"train_acc {record['train_acc']:.4f}{val}  {record['seconds']:.1f}s  "
            f"{record['images_per_s']:.0f} img/s")


def _sci(value):
    return f"{value:.3e}"


def class_report(labels, predicted, classes, names=None):
    """{"confusion_matrix": [[count]] (row: true class, column: predicted), "per_class":
    [{"class", "samples", "correct", "accuracy"}, and "name" when names are given]};
    accuracy is None for a class with no samples."""
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    per_class = []
    for k in range(classes):
        samples, correct = int(matrix[k].sum()), int(matrix[k, k])
        per_class.append({"class": k, **({"name": names[k]} if names else {}),
                          "samples": samples, "correct": correct,
                          "accuracy": correct / samples if samples else None})
    return {"confusion_matrix": matrix.tolist(), "per_class": per_class}


MATRIX_LIMIT = 20  # more classes than this: the matrix is in --format json only


def confusion_text(report):
    """Per-class accuracy, then the confusion matrix (when it fits a terminal)."""
    rows = report["per_class"]
    named = max((len(row.get("name", "")) for row in rows), default=0)
    header = f"  {'name':<{named}}" if named else ""
    lines = [f"{'class':>6}{header}{'samples':>9}{'correct':>9}{'accuracy':>10}"]
    for row in rows:
        accuracy = "-" if row["accuracy"] is None else f"{row['accuracy']:.4f}"
        name = f"  {row['name']:<{named}}" if named else ""
        lines.append(f"{row['class']:>6}{name}{row['samples']:>9}{row['correct']:>9}"
                     f"{accuracy:>10}")
    if len(rows) > MATRIX_LIMIT:
        lines.append(f"confusion matrix: {len(rows)} classes, see --format json")
        return "\n".join(lines)
    matrix = report["confusion_matrix"]
    width = max(4, len(str(max(max(r) for r in matrix))) + 1)
    lines.append("confusion matrix (rows: true class, columns: predicted class)")
    lines.append(" " * 6 + "".join(f"{k:>{width}}" for k in range(len(rows))))
    for k, counts in enumerate(matrix):
        lines.append(f"{k:>6}" + "".join(f"{c:>{width}}" for c in counts))
    return "\n".join(lines)


def dumps(record):
    return json.dumps(record, allow_nan=True)


def human(count):
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if count >= size:
            return f"{count / size:.2f}{unit}"
    return str(int(count))


WINOGRAD_LEGEND = ("winograd: the forward pass and the delta by Winograd's F(2x2, 3x3) "
                   "(conv2d's key `algorithm`); +dw: the kernel gradient by Winograd too, which "
                   f"`algorithm: auto` chooses only for outputs of at least "
                   f"{WINOGRAD_GRADIENT_MIN_SIDE}x{WINOGRAD_GRADIENT_MIN_SIDE}")


def type_and_algorithm(kind, forward=None, kernel_gradient=None):
    """A layer's type for a table: 'conv2d', or 'conv2d winograd' / 'conv2d winograd+dw'
    where Winograd computes it (WINOGRAD_LEGEND says what they mean)."""
    if forward != "winograd":
        return kind
    return kind + (" winograd+dw" if kernel_gradient == "winograd" else " winograd")


def summary_text(config):
    """The `convtrain summary` table: one row per layer, a residual block's layers indented
    under it with their full names, then totals (a block's row counts its layers)."""
    rows = [("  " * depth + spec.name, spec) for spec, depth in walk_with_depth(config.layers)]
    types = [type_and_algorithm(spec.type, *(spec.algorithms(config.dtype)
                                              if spec.type == "conv2d" else ()))
             for _, spec in rows]
    name_w = max(12, max(len(label) for label, _ in rows) + 2)
    type_w = max(12, max(len(kind) for kind in types) + 2)
    smoothing = (f" (label smoothing {config.label_smoothing:g})" if config.label_smoothing
                 else "")
    lines = [f"{config.name}: {config.dtype}, input {tuple(config.input)}, loss {config.loss}"
             f"{smoothing}",
             f"{'layer':<{name_w}}{'type':<{type_w}}{'output (C,H,W)':<18}{'params':>10}"
             f"{'FLOPs/sample':>15}"]
    for (label, spec), kind in zip(rows, types):
        lines.append(f"{label:<{name_w}}{kind:<{type_w}}{str(tuple(spec.out_shape)):<18}"
                     f"{spec.param_count:>10,}{human(spec.flops()):>15}")
    params = sum(spec.param_count for spec in config.layers)
    flops = sum(spec.flops() for spec in config.layers)
    size = params * (4 if config.dtype == "float32" else 8)
    lines.append(f"{'total':<{name_w + type_w + 18}}{params:>10,}{human(flops):>15}")
    lines.append(f"parameters: {params:,} ({human(size)}B); forward FLOPs per sample: "
                 f"{human(flops)} (a multiply-add counts 2)")
    if any(kind != spec.type for (_, spec), kind in zip(rows, types)):
        lines.append(WINOGRAD_LEGEND)
    return "\n".join(lines)
