"""Central finite differences against the analytic gradient, through Network's own path.

For every parameter entry (and input entry) θ_i checked, in float64:
    numeric_i = [8 (L(θ + h e_i) - L(θ - h e_i)) - (L(θ + 2h e_i) - L(θ - 2h e_i))] / 12h
    rel_err_i = |analytic_i - numeric_i| / max(|analytic_i|, |numeric_i|, FLOOR * max(1, |L|))
The five-point central difference has truncation error O(h^4), so h can be
1e-4 and rounding noise (about 2e-16 |L| / h) stays near 1e-12. FLOOR keeps
entries whose true gradient is ~0 from dividing that noise by ~0: an analytic
value wrong by more than ~1e-11 in absolute terms is still caught.

A perturbation that changes a discrete choice of the forward pass (a ReLU
input crossing 0, a different max-pool winner, a hinge margin switching on) makes
the finite difference straddle a kink; such entries are counted as kinks and
left out of the error, never reported as failures.

Small tensors are checked exhaustively; a tensor with more than `max_entries`
entries is sampled (seeded), which the report says.
"""

from dataclasses import dataclass

import numpy as np

STEP = 1e-4
FLOOR = 1e-5
TOLERANCE = 1e-6


@dataclass
class CheckRow:
    layer: str
    argument: str
    shape: tuple
    checked: int
    total: int
    kinks: int
    max_rel_err: float
    worst_index: tuple
    analytic: float
    numeric: float

    @property
    def passed(self):
        return self.max_rel_err <= TOLERANCE

    def describe(self):
        return (f"{self.layer}.{self.argument}{list(self.worst_index)}: analytic "
                f"{self.analytic:.10g}, numeric {self.numeric:.10g}, "
                f"rel err {self.max_rel_err:.2e}")


def _loss_and_kinks(network, x, labels, loss_fn):
    scores = network.forward(x, training=True)  # as loss_and_gradients: batch statistics
    loss, _, loss_kinks = loss_fn(scores, labels)
    states = [layer.kink_state() for layer in network.all_layers()] + [loss_kinks]
    return loss, [None if s is None else s.copy() for s in states]


def _same(states_a, states_b):
    return all(a is None or np.array_equal(a, b) for a, b in zip(states_a, states_b))


def check_gradients(network, x, labels, max_entries=None, seed=0, step=STEP):
    """Compare analytic and numeric gradients. network must be float64. Returns [CheckRow]."""
    if network.dtype != np.float64:
        raise ValueError("gradient checks run in float64")
    loss_fn = network.loss_fn
    x = np.array(x, dtype=np.float64)
    rng = np.random.default_rng(seed)
    # Every training-mode forward moves batchnorm's running statistics; put them back after.
    saved = {key: value.copy() for key, value in network.state().items()}

    _, _, dx = network.loss_and_gradients(x, labels)
    analytic = {(layer.name, key): layer.grads[key].copy() for layer, key in network.parameters()}
    base_loss, base_states = _loss_and_kinks(network, x, labels, loss_fn)
    floor = FLOOR * max(1.0, abs(base_loss))

    targets = [(layer.name, key, layer.params[key]) for layer, key in network.parameters()]
    targets.append(("input", "x", x))
    analytic[("input", "x")] = dx.copy()

    rows = []
    for layer_name, key, array in targets:
        grad = analytic[(layer_name, key)]
        total = array.size
        if max_entries is not None and total > max_entries:
            indices = rng.choice(total, size=max_entries, replace=False)
        else:
            indices = np.arange(total)
        flat = array.reshape(-1)
        worst = (0.0, (), 0.0, 0.0)
        kinks = 0
        for i in indices:
            original = flat[i]
            losses, crossed = {}, False
            for k in (-2, -1, 1, 2):
                flat[i] = original + k * step
                losses[k], states = _loss_and_kinks(network, x, labels, loss_fn)
                crossed = crossed or not _same(base_states, states)
            flat[i] = original
            if crossed:
                kinks += 1
                continue
            numeric = (8 * (losses[1] - losses[-1]) - (losses[2] - losses[-2])) / (12 * step)
            value = grad.reshape(-1)[i]
            err = abs(value - numeric) / max(abs(value), abs(numeric), floor)
            if err >= worst[0]:
                worst = (err, tuple(int(v) for v in np.unravel_index(i, array.shape)), value, numeric)
        rows.append(CheckRow(layer_name, key, array.shape, len(indices), total, kinks,
                             float(worst[0]), worst[1], float(worst[2]), float(worst[3])))
    # Leave the network as the analytic pass left it.
    network.load_state(saved)
    network.forward(x, training=True)
    network.load_state(saved)
    return rows
