"""The formulas `convtrain trace` prints: the symbols A_i, δ_i, K_i, b_i, each layer's
forward and backward rule, the optimizer's update and the note on the two conv recipes."""

from convtrain.layer_specs import walk


class Symbols:
    """A_i, δ_i, K_i (W_i, γ_i), b_i (β_i): i is the layer's position, 1-based, depth first
    (a residual block, then its body, then its shortcut). Inside a block both branches take
    the block's input; the deltas they hand down are δ.body and δ.shortcut of its input's."""

    def __init__(self, config):
        self.index = {spec.name: i + 1 for i, spec in enumerate(walk(config.layers))}
        self.inputs, self.input_deltas = {}, {}
        self._chain(config.layers, "x", "δx")

    def _chain(self, specs, inp, dinp):
        for spec in specs:
            self.inputs[spec.name], self.input_deltas[spec.name] = inp, dinp
            if spec.type == "residual":
                self._chain(spec.body, inp, f"{dinp}.body")
                self._chain(spec.shortcut, inp, f"{dinp}.shortcut")
            inp, dinp = self.out(spec), self.delta(spec)

    def out(self, spec):
        return f"A{self.index[spec.name]}"

    def inp(self, spec):
        return self.inputs[spec.name]

    def delta(self, spec):
        return f"δ{self.index[spec.name]}"

    def delta_in(self, spec):
        return self.input_deltas[spec.name]

    def kernel(self, spec):
        symbol = {"conv2d": "K", "batchnorm": "γ"}.get(spec.type, "W")
        return symbol + str(self.index[spec.name])

    def bias(self, spec):
        return ("β" if spec.type == "batchnorm" else "b") + str(self.index[spec.name])


def _window_note(spec):
    notes = []
    if tuple(spec.stride) != (1, 1):
        notes.append(f"stride {tuple(spec.stride)}")
    if any(spec.padding):
        notes.append(f"padding {spec.padding}")
    return f" ({', '.join(notes)})" if notes else ""


def forward_formula(spec, s):
    a, i = s.out(spec), s.inp(spec)
    if spec.type == "conv2d":
        op = "∗" if spec.op == "convolution" else "⋆"
        bias = f" + {s.bias(spec)}" if spec.bias else ""
        return f"{a} = {i} {op} {s.kernel(spec)}{bias}{_window_note(spec)}"
    if spec.type == "dense":
        bias = f" + {s.bias(spec)}" if spec.bias else ""
        return f"{a} = {s.kernel(spec)} · {i}{bias}"
    if spec.type in ("maxpool", "avgpool"):
        return f"{a} = {spec.type}{spec.size[0]}x{spec.size[1]}/{spec.stride[0]}({i})"
    if spec.type == "batchnorm":
        where = "over N, H, W" if len(spec.in_shape) == 3 else "over N"
        scale = f"{s.kernel(spec)}·" if spec.affine else ""
        shift = f" + {s.bias(spec)}" if spec.affine else ""
        return (f"{a} = {scale}x̂{shift}, x̂ = ({i} − μ)/√(σ² + {spec.eps:g}), μ and σ² of "
                f"the batch {where} (training)")
    if spec.type == "residual":
        skip = f"shortcut({i})" if spec.shortcut else i
        return f"{a} = body({i}) + {skip}"
    if spec.type == "dropout":
        return f"{a} = {i} ⊙ m/(1 − {spec.rate:g}), m a 0/1 mask drawn for this step"
    slope = getattr(spec, "slope", 0.0)
    return {"relu": f"{a} = max({i}, 0)", "leaky_relu": f"{a} = max({i}, {slope:g}·{i})",
            "sigmoid": f"{a} = σ({i})", "tanh": f"{a} = tanh({i})",
            "flatten": f"{a} = flatten({i})",
            "globalavgpool": f"{a} = mean of {i} over H, W"}[spec.type]


def backward_formulas(spec, s, textbook):
    """Formulas of (kernel_grad, input_delta) for this layer and recipe."""
    d, i, k = s.delta(spec), s.inp(spec), s.kernel(spec)
    di = s.delta_in(spec)
    if spec.type == "conv2d":
        if textbook:
            return f"d{k} = {i} ∗ {d} (valid convolution)", f"{di} = full({d} ∗ {k})"
        if spec.op == "convolution":
            return f"∂L/∂{k} = rot180({i} ⋆ {d})", f"{di} = full({d} ⋆ {k})"
        return f"∂L/∂{k} = {i} ⋆ {d}", f"{di} = full({d} ∗ {k})"
    if spec.type == "dense":
        return f"∂L/∂{k} = {d} ⊗ {i}", f"{di} = {k}ᵀ · {d}"
    if spec.type == "batchnorm":
        scale = k if spec.affine else "1"
        through = (f"{di} = {scale}/(M·√(σ² + ε))·(M·{d} − Σ {d} − x̂·Σ({d} ⊙ x̂)), "
                   f"M values a channel: through μ and σ² too")
        return (f"∂L/∂{k} = Σ {d} ⊙ x̂" if spec.affine else None), through
    slope = getattr(spec, "slope", 0.0)
    rules = {"relu": f"{di} = {d} ⊙ 1[{i} > 0]",
             "leaky_relu": f"{di} = {d} ⊙ ({i} > 0 ? 1 : {slope:g})",
             "sigmoid": f"{di} = {d} ⊙ A(1 − A), A = {s.out(spec)}",
             "tanh": f"{di} = {d} ⊙ (1 − A²), A = {s.out(spec)}",
             "maxpool": f"{di} = {d} routed to each window's maximum",
             "avgpool": f"{di} = {d} spread evenly over each window",
             "flatten": f"{di} = reshape({d})",
             "globalavgpool": f"{di} = {d}/(H·W) over each plane",
             "dropout": f"{di} = {d} ⊙ m/(1 − {getattr(spec, 'rate', 0):g}), the same mask"}
    return None, rules[spec.type]


def update_formula(config, name, lr, plain=False):
    """The update as a formula: plain SGD reads K ← K − lr·∂L/∂K; anything else names
    the optimizer's first step from fresh state."""
    opt = config.optimizer
    # From fresh state a momentum buffer equals the gradient, so Nesterov's first step
    # is (1 + μ) times the plain one.
    boost = f"(1 + {opt.momentum:g})·" if not plain and opt.type == "sgd" and opt.nesterov else ""
    if plain or (opt.type == "sgd" and not opt.weight_decay):
        return f"{name} ← {name} − lr·{boost}∂L/∂{name}, lr {lr:g}"
    if opt.type == "sgd":
        return (f"{name} ← {name} − lr·{boost}(∂L/∂{name} + {opt.weight_decay:g}·{name}), "
                f"lr {lr:g}")
    if opt.type == "adamw":
        return (f"{name} ← (1 − lr·{opt.weight_decay:g})·{name} − lr·m̂/(√v̂ + ε), adamw's "
                f"first step from ∂L/∂{name}, lr {lr:g}")
    return (f"{name} ← {name} − lr·m̂/(√v̂ + ε), adam's first step from ∂L/∂{name}, "
            f"lr {lr:g}")


def op_note(config, textbook):
    convs = [s for s in walk(config.layers) if s.type == "conv2d"]
    if not convs:
        return "no conv2d layers: both recipes are the exact gradient"
    ops = sorted({s.op for s in convs})
    rules = {"correlation": "y = x ⋆ K (what frameworks call conv): δx = full(δy ∗ K), "
                            "∂L/∂K = x ⋆ δy",
             "convolution": "y = x ∗ K (true convolution, the worked example's forward): "
                            "δx = full(δy ⋆ K), ∂L/∂K = rot180(x ⋆ δy)"}
    note = "exact rules: " + "; ".join(rules[op] for op in ops) + "."
    if textbook:
        note += (" The textbook recipe uses dK = x ∗ δ, K ← K − lr·rot180(dK) and δx = full(δ ∗ K)"
                 " for every conv layer. Its δ rule is right for ⋆ and wrong for ∗; its kernel"
                 " rule is the gradient of neither, so steps marked 'differs' are not the"
                 " gradient of this forward pass.")
    return note
