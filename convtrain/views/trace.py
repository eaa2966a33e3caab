"""`convtrain trace`: backpropagation for one sample, step by step, in float64.

Symbols: x is the sample; A_i the output of layer i (1-based position), K_i/W_i
and b_i its kernel and bias, δ_i = ∂L/∂A_i the error at its output. ⋆ is
cross-correlation, ∗ true convolution, full(·) zero-pads by kernel−1 per side; a padded
or strided conv's formulas add pad_p, crop_p and spread_s (trace_formulas.op_note
defines them, with their sizes).

Two recipes:
  exact     the gradient of the forward pass, from the same layers training runs,
            and one step of the configured optimizer for `kernel_new`;
  textbook  the worked example's rules (docs/worked-example.md) for conv
            layers with stride 1: dK = A_in ∗ δ (valid), K ← K − lr·rot180(dK),
            δ_in = full(δ ∗ K) (A_in padded and δ_in cropped as the layer pads).
            Other layers pass its (possibly wrong) δ down with their exact rules.
            Every step shows the exact value beside it and is marked where the two
            differ.
A config may list the numbers a published text printed (`trace.published`);
the textbook trace compares them at the printed precision and flags slips.
"""

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from convtrain.run.checkpoint import load_into
from convtrain.data.sources import load_datasets
from convtrain.model.network import Network
from convtrain.model.optim import Optimizer, learning_rate, step_learning_rate
from convtrain.views.trace_formulas import (
    Symbols,
    op_note,
    update_formula,
)


def sample_batch(config, batch):
    """(x (N, *input) float64, labels, description): trace.input, else data, else random."""
    if config.trace.input is not None and batch == 1:
        target = config.trace.target if config.trace.target is not None else 0
        return config.trace.input[None], np.array([target]), "trace.input"
    if config.data.train is not None:
        x, y, _, _ = load_datasets(config, need_val=False)
        count = min(batch, len(y))
        return (x[:batch].astype(np.float64), y[:batch],
                "first training sample" if count == 1 else f"first {count} training samples")
    rng = np.random.default_rng(config.seed)
    x = rng.standard_normal((batch,) + tuple(config.input))
    return (x, rng.integers(0, config.num_outputs, size=batch),
            "1 random sample (seeded)" if batch == 1 else f"{batch} random samples (seeded)")


def _correlate_valid(a, k):
    """a (H, W) ⋆ k (KH, KW), valid, stride 1 -> (H-KH+1, W-KW+1)."""
    return np.einsum("ijkl,kl->ij", sliding_window_view(a, k.shape), k)


def _convolve_valid(a, k):
    """a (H, W) ∗ k (KH, KW): true convolution, valid, stride 1."""
    return _correlate_valid(a, k[::-1, ::-1])


def _full(a, kh, kw):
    return np.pad(a, ((kh - 1, kh - 1), (kw - 1, kw - 1)))


def textbook_kernel_delta(xp, delta):
    """The example's kernel delta dK[f, c] = xp[c] ∗ δ[f]. xp (C, HP, WP), δ (F, OH, OW)."""
    return np.array([[_convolve_valid(xp[c], delta[f]) for c in range(xp.shape[0])]
                     for f in range(delta.shape[0])])


def textbook_input_delta(delta, kernel):
    """The example's δ_in[c] = Σ_f full(δ[f] ∗ K[f, c]). δ (F, OH, OW), K (F, C, KH, KW)."""
    filters, channels, kh, kw = kernel.shape
    return np.array([sum(_convolve_valid(_full(delta[f], kh, kw), kernel[f, c])
                         for f in range(filters)) for c in range(channels)])


def _trace_inputs(config):
    trace = config.trace
    if trace.input is not None:
        x, label, origin = trace.input, trace.target, "trace.input"
    else:
        if config.data.train is None:
            raise config.error("trace", "nothing to trace: give `trace.input` (one sample) "
                                        "or a data.train source")
        xs, ys, _, _ = load_datasets(config, need_val=False)
        x, label, origin = xs[0].astype(np.float64), int(ys[0]), "the first training sample"
        if trace.target is not None:
            label = trace.target
    return x, label, origin


def run_trace(config, recipe="exact", checkpoint=None):
    """Returns the trace as a JSON-ready dict (see CONTRACT.md, `trace --format json`).

    checkpoint: (read_checkpoint's result, path) to trace a trained network's weights
    instead of the config's initialisation."""
    tracer = Tracer(config, recipe == "textbook", checkpoint)
    x, label, origin = _trace_inputs(config)
    tracer.add(config.layers[0].name, "input", f"x ({origin})", x)
    scores = tracer.forward(tracer.network.layers, x[None])
    delta = tracer.top_delta(scores, label)
    # The exact chain first (grads and deltas from the layers' own backward), then the
    # steps shown, which for the textbook recipe may carry its δ instead.
    tracer.exact_backward(tracer.network.layers, delta)
    tracer.exact_new = _optimizer_step(config, tracer.network, tracer.exact_grads, tracer.lr)
    tracer.backward(tracer.network.layers, delta, None)
    _compare_published(config, tracer.steps, tracer.textbook, tracer.replays)
    return {"recipe": recipe, "dtype": "float64", "lr": tracer.lr,
            "op_note": op_note(config, tracer.textbook),
            "weights": checkpoint[1] if checkpoint else "initial, from the config",
            "steps": [_jsonable(step) for step in tracer.steps]}


class Tracer:
    """One trace: the float64 network at training's first step, the steps so far, and the
    exact chain the steps shown are compared with."""

    def __init__(self, config, textbook, checkpoint):
        self.config, self.textbook = config, textbook
        self.network = Network(config, dtype="float64")
        if checkpoint is not None:
            load_into(*checkpoint, config, self.network)
        self.network.mode.training, self.network.mode.step = True, 1  # as the first step
        self.s = Symbols(config)
        # The lr of training's very first step (warmup included).
        self.lr = step_learning_rate(learning_rate(config.optimizer, config.schedule, 1,
                                                   config.train.epochs), config.schedule, 1)
        self.steps, self.replays = [], {}
        self.inputs, self.below = {}, {}  # each layer's input batch; the layer before it
        self.exact_grads, self.exact_in, self.exact_branches = {}, {}, {}
        self.exact_new = None

    def add(self, layer_name, what, formula, value, exact=None, note=None):
        step = {"step": len(self.steps), "layer": layer_name, "what": what,
                "formula": formula, "value": np.asarray(value, dtype=np.float64)}
        if self.textbook:
            step["exact"] = np.asarray(exact if exact is not None else value, dtype=np.float64)
            step["differs"] = not np.allclose(step["value"], step["exact"], rtol=1e-9,
                                              atol=1e-12)
        if note:
            step["note"] = note
        self.steps.append(step)

    def forward(self, layers, a):
        previous = None
        for layer in layers:
            self.inputs[layer.name], self.below[layer.name] = a, previous
            previous = layer.name
            if layer.paths:  # a block: its paths, one after the other, as it runs them
                a = layer.combine([self.forward(path, a) for path in layer.paths])
            else:
                a = layer.forward(a)
            self.add(layer.name, "output", layer.spec.forward_formula(self.s), a[0])
        return a

    def top_delta(self, scores, label):
        """δ at the last layer's output: trace.delta, or the loss's gradient."""
        config, s, top = self.config, self.s, self.config.layers[-1]
        if config.trace.delta is not None:
            delta = config.trace.delta[None]
            formula = f"{s.delta(top)} given (trace.delta); L = Σ {s.delta(top)} ⊙ {s.out(top)}"
        else:
            target = 0 if label is None else label
            _, dscores, _ = self.network.loss_fn(scores.reshape(1, -1), np.array([target]))
            delta = dscores.reshape(scores.shape)
            unset = " — trace.target not set" if label is None else ""
            smoothing = (f", targets (1 − {config.label_smoothing:g})·onehot + "
                         f"{config.label_smoothing:g}/K" if config.label_smoothing else "")
            formula = (f"{s.delta(top)} = ∂L/∂{s.out(top)}, L = {config.loss}"
                       f"(target {target}{unset}){smoothing}")
        self.add(top.name, "delta", formula, delta[0])
        return delta

    def exact_backward(self, layers, d):
        for layer in reversed(layers):
            d = d.reshape((1,) + layer.spec.out_shape)
            if layer.paths:
                shares = layer.shares(d)
                handed = [self.exact_backward(path, share)
                          for path, share in zip(layer.paths, shares)]
                self.exact_branches[layer.name] = shares, handed
                d_in = sum(handed[1:], handed[0])
            else:
                d_in = layer.backward(d)
                self.exact_grads[layer.name] = {k: v.copy() for k, v in layer.grads.items()}
            self.exact_in[layer.name], d = d_in, d_in
        return d

    def backward(self, layers, d, above):
        for layer in reversed(layers):
            d = d.reshape((1,) + layer.spec.out_shape)
            if layer.paths:
                d = self.block_steps(layer, d)
            else:
                d = self.layer_steps(layer, d, above)
            above = layer.name
        return d

    def block_steps(self, layer, d):
        """A block's steps: how the paths share δ, then for each path in turn the share it
        takes (unless it takes all of δ), its layers' steps and what it hands down; last
        their sum."""
        s, spec, name = self.s, layer.spec, layer.name
        self.add(name, "delta", spec.entry_formula(s), d[0])
        exact_shares, exact_handed = self.exact_branches[name]
        handed = []
        for i, (path, share) in enumerate(zip(layer.paths, layer.shares(d))):
            label = spec.path_labels[i]
            if spec.merge != "add":
                self.add(name, f"{label}_output_delta", spec.share_formula(s, i), share[0],
                         exact_shares[i][0])
            if path:
                handed.append(self.backward(path, share, None))
                formula = f"{s.delta_in(spec)}.{label}, what {spec.path_title(i)} hands down"
            else:
                handed.append(share)
                formula = (f"{s.delta_in(spec)}.{label} = {s.delta(spec)} (identity)"
                           if spec.merge == "add" else
                           f"{s.delta_in(spec)}.{label}, its share (an empty path: the "
                           f"identity)")
            self.add(name, f"{label}_delta", formula, handed[-1][0], exact_handed[i][0])
        d_in = sum(handed[1:], handed[0])
        self.add(name, "input_delta", spec.backward_formulas(s, self.textbook)[1], d_in[0],
                 self.exact_in[name][0])
        return d_in

    def layer_steps(self, layer, d, above):
        """A layer's steps, from the δ at its output: its kernel and bias gradients and
        updates (where it has them), and the δ it hands down."""
        spec = layer.spec
        grad_formula, in_formula = spec.backward_formulas(self.s, self.textbook)
        plain = spec.type == "conv2d" and tuple(spec.stride) == (1, 1) and spec.groups == 1 \
            and tuple(spec.dilation) == (1, 1)
        uses_textbook = self.textbook and plain
        note = None
        if self.textbook and spec.type == "conv2d" and not uses_textbook:
            note = ("the textbook recipe has no rule for stride > 1, groups or dilation; exact "
                    "rules used here")
            grad_formula, in_formula = spec.backward_formulas(self.s, False)
        if uses_textbook:
            d_in, update = self._textbook_conv(layer, d, above, grad_formula)
        else:
            d_in, update = self._exact_rules(layer, d, grad_formula, note)
        if grad_formula:
            self._updates(layer, *update, plain=uses_textbook)
        self.add(layer.name, "input_delta", in_formula, d_in[0], self.exact_in[layer.name][0])
        return d_in

    def _textbook_conv(self, layer, d, above, grad_formula):
        """The worked example's rules for a stride-1 conv layer. Returns (δ_in, (bias
        gradient, new kernel, new bias, the kernel update's formula))."""
        spec, s, lr = layer.spec, self.s, self.lr
        kernel = layer.params["weight"]
        kernel_delta = textbook_kernel_delta(layer.pad(self.inputs[layer.name])[0], d[0])
        self.add(layer.name, "kernel_grad", grad_formula, kernel_delta,
                 self.exact_grads[layer.name]["weight"],
                 note="the example's kernel delta, before rot180")
        bias_grad = d[0].sum(axis=(1, 2)) if spec.bias else None
        new_kernel = kernel - lr * kernel_delta[:, :, ::-1, ::-1]
        new_bias = layer.params["bias"] - lr * bias_grad if spec.bias else None
        d_in = _crop(textbook_input_delta(d[0], kernel), spec.padding)[None]
        self.replays.update(_replay_from_published(
            self.config, layer, above, d[0], self.inputs[layer.name][0],
            self.below[layer.name], lr))
        formula = f"{s.kernel(spec)} ← {s.kernel(spec)} − lr·rot180(d{s.kernel(spec)}), lr {lr:g}"
        return d_in, (bias_grad, new_kernel, new_bias, formula)

    def _exact_rules(self, layer, d, grad_formula, note):
        """The layer's own backward and the configured optimizer. Returns (δ_in, (bias
        gradient, new kernel, new bias, the kernel update's formula)), Nones where the
        layer has no kernel."""
        if self.textbook:
            # The δ arriving here may be the textbook's, not the exact one: recompute.
            d_in = layer.backward(d)
            grads = layer.grads
            new = (_optimizer_step(self.config, self.network, {layer.name: grads}, self.lr,
                                   only=layer.name) if grad_formula else {})
        else:
            d_in, grads = self.exact_in[layer.name], self.exact_grads[layer.name]
            new = self.exact_new
        if not grad_formula:
            return d_in, (None, None, None, None)
        self.add(layer.name, "kernel_grad", grad_formula, grads["weight"],
                 self.exact_grads[layer.name]["weight"], note=note)
        formula = update_formula(self.config, self.s.kernel(layer.spec), self.lr)
        return d_in, (grads.get("bias"), new[layer.name]["weight"], new[layer.name].get("bias"),
                      formula)

    def _updates(self, layer, bias_grad, new_kernel, new_bias, formula, plain):
        spec, s, exact_new = layer.spec, self.s, self.exact_new[layer.name]
        if bias_grad is not None:
            self.add(layer.name, "bias_grad", f"∂L/∂{s.bias(spec)} = Σ {s.delta(spec)}",
                     bias_grad, self.exact_grads[layer.name]["bias"])
        self.add(layer.name, "kernel_new", formula, new_kernel, exact_new["weight"])
        if new_bias is not None:
            self.add(layer.name, "bias_new",
                     update_formula(self.config, s.bias(spec), self.lr, plain=plain),
                     new_bias, exact_new["bias"])


def _optimizer_step(config, network, grads, lr, only=None):
    """New parameters after one optimizer step from fresh state, leaving network unchanged."""
    layers = network.all_layers()
    saved = {k: v.copy() for k, v in network.state().items()}
    saved_grads = {layer.name: dict(layer.grads) for layer in layers}
    for layer in layers:
        if layer.name in grads:
            layer.grads = {k: v.copy() for k, v in grads[layer.name].items()}
        else:
            layer.grads = {k: np.zeros_like(v) for k, v in layer.params.items()}
    Optimizer(config.optimizer, network).step(lr)
    new = {layer.name: {k: v.copy() for k, v in layer.params.items()} for layer in layers
           if only is None or layer.name == only}
    network.load_state(saved)
    for layer in layers:
        layer.grads = saved_grads[layer.name]
    return new


def _crop(padded, padding):
    """padded (C, HP, WP) -> (C, H, W), removing (top, bottom, left, right) padding."""
    top, bottom, left, right = padding
    return padded[:, top:padded.shape[1] - bottom, left:padded.shape[2] - right]


def _replay_from_published(config, layer, above, delta, layer_input, below, lr):
    """Recompute this conv layer's textbook steps from the numbers the text itself printed
    for their inputs (its δ from above, its input, its kernel delta). A printed value that
    differs from our recomputation but matches this replay is an earlier slip carried
    forward, not a new one. Returns {(layer, what): replayed value}."""
    published = config.trace.published
    spec = layer.spec
    printed_delta = published.get((above, "input_delta")) if above else None
    delta = printed_delta.reshape(delta.shape) if printed_delta is not None else delta
    printed_input = published.get((below, "output")) if below else None
    if printed_input is not None:
        layer_input = printed_input.reshape(layer_input.shape)
    kernel = layer.params["weight"]
    kernel_delta = textbook_kernel_delta(layer.pad(layer_input[None])[0], delta)
    printed_kernel_delta = published.get((layer.name, "kernel_grad"))
    if printed_kernel_delta is not None:
        kernel_delta = printed_kernel_delta.reshape(kernel.shape)
    return {(layer.name, "kernel_grad"): textbook_kernel_delta(layer.pad(layer_input[None])[0],
                                                                 delta),
            (layer.name, "kernel_new"): kernel - lr * kernel_delta[:, :, ::-1, ::-1],
            (layer.name, "input_delta"): _crop(textbook_input_delta(delta, kernel), spec.padding)}


def _compare_published(config, steps, textbook, replays):
    """Mark where the numbers a text printed differ from what its own recipe gives:
    `published_slips` are new errors, `published_carried` follow from earlier printed ones."""
    published = config.trace.published
    if not published or not textbook:
        return
    decimals = config.trace.published_decimals
    half_unit = 0.5 * 10.0 ** -decimals + 1e-9
    for step in steps:
        printed = published.get((step["layer"], step["what"]))
        if printed is None:
            continue
        value = step["value"]
        if printed.size != value.size:
            raise config.error(f"trace.published.{step['layer']}.{step['what']}",
                               f"has {printed.size} numbers but the trace step has "
                               f"{value.size}")
        printed = printed.reshape(value.shape)
        differs = np.abs(printed - value) > half_unit
        replay = replays.get((step["layer"], step["what"]))
        carried = np.zeros_like(differs)
        if replay is not None:
            carried = differs & (np.abs(printed - replay.reshape(value.shape)) <= half_unit)
        step["published"] = printed
        step["published_slips"] = [[int(i) for i in index] for index in np.argwhere(differs & ~carried)]
        step["published_carried"] = [[int(i) for i in index] for index in np.argwhere(carried)]


def _jsonable(step):
    out = {}
    for key, value in step.items():
        out[key] = value.tolist() if isinstance(value, np.ndarray) else value
    return out
