"""`convtrain gradcheck`: every analytic gradient of a config's network against central
finite differences in float64 (model/gradcheck.py), as a table a person reads or JSON."""

import numpy as np

from convtrain.model.gradcheck import TOLERANCE, check_gradients
from convtrain.model.network import Network
from convtrain.run.checkpoint import load_into
from convtrain.views.trace import sample_batch


class Checked(dict):
    """The check's results (what `gradcheck --format json` prints), and `.rows`, its
    CheckRow objects."""

    def __init__(self, results, rows):
        super().__init__(results)
        self.rows = rows


def check_config(spec, batch, max_entries, loaded, checkpoint):
    """Check the network of spec (with a checkpoint's weights: loaded, as read_checkpoint
    gives them, from the path checkpoint) on `batch` samples."""
    x, labels, origin = sample_batch(spec, batch)
    network = Network(spec, dtype="float64")
    if loaded:
        load_into(*loaded, spec, network)
        nudged = []  # trained biases are what they are
    else:
        nudged = _nudge_zero_biases(network, spec.seed)
    rows = check_gradients(network, x, labels, max_entries=max_entries)
    return Checked({"tolerance": TOLERANCE, "inputs": origin,
                    "passed": all(r.passed for r in rows), "biases_nudged": nudged,
                    "checkpoint": checkpoint,
                    "rows": [{"layer": r.layer, "argument": r.argument, "shape": list(r.shape),
                              "checked": r.checked, "total": r.total, "kinks": r.kinks,
                              "max_rel_err": r.max_rel_err, "passed": r.passed}
                             for r in rows]}, rows)


def gradcheck_text(checked):
    """The table of a check_config result, a row per tensor, and its verdict."""
    rows, nudged, checkpoint = checked.rows, checked["biases_nudged"], checked["checkpoint"]
    failed = [r for r in rows if not r.passed]
    weights = f"weights of {checkpoint}" if checkpoint else "initial weights"
    lines = [f"gradcheck: {checked['inputs']}, {weights}, float64, five-point central "
             f"differences, tolerance {TOLERANCE:g}"]
    if nudged:
        lines.append(f"biases of {', '.join(nudged)} start at zero; set to small seeded random "
                     f"values so that ReLU and max-pool inputs do not sit exactly on a kink")
    width = max([12] + [len(r.layer) + 2 for r in rows])
    lines += [f"{'layer':<{width}}{'argument':<9}{'checked':>12}{'kinks':>7}{'max rel err':>13}"
              f"  result"]
    for r in rows:
        count = f"{r.checked}/{r.total}"
        verdict = "ok" if r.passed else "FAIL"
        if r.passed and r.kinks == r.checked:
            verdict = "not checked: every entry sits on a kink"
        lines.append(f"{r.layer:<{width}}{r.argument:<9}{count:>12}{r.kinks:>7}"
                     f"{r.max_rel_err:>13.2e}  {verdict}")
    lines += [f"FAIL {r.describe()}" for r in failed]
    lines.append("all gradients match" if not failed else f"{len(failed)} tensors exceed "
                                                           f"{TOLERANCE:g}")
    return "\n".join(lines)


def _nudge_zero_biases(network, seed):
    """Zero-initialised biases put many ReLU inputs exactly at 0 (on the kink) wherever a
    window sees only zero pixels; a finite difference there checks nothing. Give such
    biases small seeded values. Returns the names of the layers changed."""
    rng = np.random.default_rng([seed, 3])
    nudged = []
    for layer in network.all_layers():
        bias = layer.params.get("bias")  # batchnorm's β, given in its spec as `beta`
        given = getattr(layer.spec, "biases", getattr(layer.spec, "beta", None))
        if bias is not None and given is None and not np.any(bias):
            bias[...] = rng.uniform(-0.1, 0.1, size=bias.shape)
            nudged.append(layer.name)
    return nudged
