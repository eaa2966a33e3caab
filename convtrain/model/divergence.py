"""Where a diverged training step went wrong: the first layer whose output, delta or
gradient is not finite, or the weight that became so. Each runs once, on the way out."""

import numpy as np


def first_bad_output(network, xb):
    """'; ...' naming the first layer whose output is not finite, or, when all are, the
    last layer's largest score (the loss itself overflowed). Re-runs the forward pass:
    only called once, on the way out. Every layer runs, even after a bad one, so that
    processes sharing the batch run the same batchnorm sums (mode.team); theirs are
    combined."""
    network.mode.training = True  # as in the step that failed
    team = network.mode.team
    with np.errstate(over="ignore", invalid="ignore"):
        bad, out = _first_bad_output(network.layers, team.own_rows(xb))
        largest = max(team.allgather(float(np.max(np.abs(out), initial=0.0))))
    names = [layer.name for layer in network.all_layers()]
    found = min(team.allgather(names.index(bad) if bad else len(names)))
    if found < len(names):
        return f"; the first non-finite output is at layer {names[found]}"
    return f"; the outputs of the last layer, {network.layers[-1].name}, reach {largest:.3g}"


def _first_bad_output(layers, out):
    """(name of the first layer of `layers` whose output is not finite, looking inside a
    block's paths, or None; the last output)."""
    first = None
    for layer in layers:
        inside = None
        for path in layer.paths:
            inside = inside or _first_bad_output(path, out)[0]
        out = layer.forward(out)
        if first is None and not np.all(np.isfinite(out)):
            first = inside or layer.name
    return first, out


def first_bad_delta(network, xb=None, yb=None):
    """Backward runs top to bottom: the first non-finite delta on that path is where it
    began ('' when every delta is finite). A step that did not keep its deltas is run
    again on xb, yb to keep them: that needs the weights it ran with."""
    if not network.mode.keep_deltas:
        network.mode.keep_deltas = True
        with np.errstate(over="ignore", invalid="ignore"):
            network.loss_and_gradients(xb, yb, input_grad=False)
    for layer in _backward_order(network.layers):
        delta = network.deltas.get(layer.name)
        if delta is not None and not np.all(np.isfinite(delta)):
            return f"; the first non-finite delta is at layer {layer.name}"
    return ""


def first_bad_gradient(network):
    """'; ...' naming the first layer on backward's path whose gradient is not finite, or
    ''. For a step whose weights are updated already: its deltas cannot be had again."""
    for layer in _backward_order(network.layers):
        if not all(np.all(np.isfinite(grad)) for grad in layer.grads.values()):
            return f"; the first non-finite gradient is at layer {layer.name}"
    return ""


def _backward_order(layers):
    """Layers as backward reaches them: a block, then its paths' layers, path after path."""
    for layer in reversed(layers):
        yield layer
        for path in layer.paths:
            yield from _backward_order(path)


def first_bad_parameter(network, updates):
    """What became non-finite in the step just taken, or None. One pass over the weights:
    a non-finite update leaves a non-finite weight too."""
    for layer, key in network.parameters():
        if not np.all(np.isfinite(layer.params[key])):
            name = f"{layer.name}.{key}"
            if not np.all(np.isfinite(updates[name])):
                return f"the update of {name} is not finite"
            return f"the weight {name} became non-finite"
    return None
