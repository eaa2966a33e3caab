"""One training step: forward and backward (keeping only what the log needs), gradient
clipping, the optimizer's update, and the checks that the step did not diverge."""

from dataclasses import dataclass

import numpy as np

from convtrain.model.divergence import (
    first_bad_delta,
    first_bad_gradient,
    first_bad_output,
    first_bad_parameter,
)
from convtrain.model.optim import clip_gradients


class Diverged(Exception):
    """A step whose loss, update or weights are not finite; the message says where."""


@dataclass
class StepResult:
    loss: float
    correct: int              # samples of the batch classified right
    updates: dict             # {"layer.key": the update applied}
    delta_norms: dict = None  # {layer name: δ norm}, when asked for
    total_norm: float = None  # the gradients' norm before clipping, when clipping


def train_step(network, optimizer, xb, yb, lr, step, clip=None, delta_norms=False):
    """Train network on the batch (xb, yb) at learning rate lr as global step `step` (1 for
    the first: dropout's masks are a function of it). Raises Diverged."""
    network.mode.step = step
    # The log needs only the deltas' norms: taken as backward goes, the deltas freed.
    network.mode.keep_deltas = False
    norms = {} if delta_norms else None
    team = network.mode.team
    network.mode.delta_hook = (None if norms is None else lambda name, delta: norms.update(
        {name: whole_batch_norm(delta, team)}))
    # Overflow is caught below as a non-finite loss or update; NumPy's warnings would only
    # interleave with the progress bar.
    with np.errstate(over="ignore", invalid="ignore"):
        loss, scores, _ = network.loss_and_gradients(xb, yb, input_grad=False)
    if not np.isfinite(loss):
        raise Diverged(f"the loss is {loss}{first_bad_output(network, xb)}"
                       f"{first_bad_delta(network, xb, yb)}")
    total_norm = clip_gradients(network, clip) if clip else None
    updates = optimizer.step(lr)
    broken = first_bad_parameter(network, updates)
    if broken:
        raise Diverged(broken + first_bad_gradient(network))
    correct = int(np.sum(np.argmax(scores, axis=1) == yb))
    return StepResult(loss, correct, updates, norms, total_norm)


def whole_batch_norm(delta, team):
    """The norm of the whole batch's delta, of which this process holds its own samples'
    rows (mode.team): each sample's sum of squares in float64, then their sum over the
    batch, the same on every process whatever their number."""
    per_sample = np.square(delta.reshape(delta.shape[0], -1), dtype=np.float64).sum(axis=1)
    return float(np.sqrt(np.sum(team.gather_rows(per_sample))))
