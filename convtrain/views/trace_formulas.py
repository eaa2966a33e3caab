"""The formulas `convtrain trace` prints: the symbols A_i, δ_i, K_i, b_i, each layer's
forward and backward rule, the optimizer's update and the note on the two conv recipes."""

from convtrain.spec.layer_specs import walk


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


def _subscript(values):
    """An operator's parameter: _2 when every entry is 2, else _(2,1) (rows, then columns;
    padding top,bottom,left,right)."""
    values = tuple(int(v) for v in values)
    if len(set(values)) == 1:
        return f"_{values[0]}"
    return "_(" + ",".join(map(str, values)) + ")"


def conv_backward_formulas(spec, s, textbook):
    """(kernel_grad, input_delta) of a conv layer, written for its stride and padding so
    that each can be applied as printed: a padded layer's kernel sees pad_p(A) and its
    δ_in is cropped back; a strided layer's δ is first spread out to the stride-1 grid."""
    d, i, k, di = s.delta(spec), s.inp(spec), s.kernel(spec), s.delta_in(spec)
    padded = any(spec.padding)
    strided = tuple(spec.stride) != (1, 1)
    a = f"pad{_subscript(spec.padding)}({i})" if padded else i
    spread = f"spread{_subscript(spec.stride)}({d})" if strided else d

    def crop(text):
        return f"crop{_subscript(spec.padding)}({text})" if padded else text

    if textbook:
        return f"d{k} = {a} ∗ {d} (valid convolution)", f"{di} = {crop(f'full({d} ∗ {k})')}"
    if spec.op == "convolution":
        return f"∂L/∂{k} = rot180({a} ⋆ {spread})", f"{di} = {crop(f'full({spread} ⋆ {k})')}"
    return f"∂L/∂{k} = {a} ⋆ {spread}", f"{di} = {crop(f'full({spread} ∗ {k})')}"


def backward_formulas(spec, s, textbook):
    """Formulas of (kernel_grad, input_delta) for this layer and recipe."""
    d, i, k = s.delta(spec), s.inp(spec), s.kernel(spec)
    di = s.delta_in(spec)
    if spec.type == "conv2d":
        return conv_backward_formulas(spec, s, textbook)
    if spec.type == "dense":
        return f"∂L/∂{k} = {d} ⊗ {i}", f"{di} = {k}ᵀ · {d}"
    if spec.type == "batchnorm":
        scale = k if spec.affine else "1"
        through = (f"{di} = {scale}/(M·√(σ² + ε))·(M·{d} − Σ {d} − x̂·Σ({d} ⊙ x̂)), "
                   f"M values a channel: through μ and σ² too")
        return (f"∂L/∂{k} = Σ {d} ⊙ x̂" if spec.affine else None), through
    slope = getattr(spec, "slope", 0.0)
    size = getattr(spec, "size", (1, 1))
    rules = {"relu": f"{di} = {d} ⊙ 1[{i} > 0]",
             "leaky_relu": f"{di} = {d} ⊙ ({i} > 0 ? 1 : {slope:g})",
             "sigmoid": f"{di} = {d} ⊙ A(1 − A), A = {s.out(spec)}",
             "tanh": f"{di} = {d} ⊙ (1 − A²), A = {s.out(spec)}",
             # "added": where windows overlap (stride < size) an entry collects several
             "maxpool": f"{di}: each entry of {d} added at its window's maximum",
             "avgpool": f"{di}: each entry of {d}/({size[0]}·{size[1]}) added to every entry "
                        f"of its window",
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
    padded = any(any(s.padding) for s in convs)
    strided = any(tuple(s.stride) != (1, 1) for s in convs)
    x = "pad_p(x)" if padded else "x"
    dy = "spread_s(δy)" if strided else "δy"

    def cropped(text):
        return f"crop_p({text})" if padded else text

    rules = {"correlation": f"y = x ⋆ K (what frameworks call conv): "
                            f"δx = {cropped(f'full({dy} ∗ K)')}, ∂L/∂K = {x} ⋆ {dy}",
             "convolution": f"y = x ∗ K (true convolution, the worked example's forward): "
                            f"δx = {cropped(f'full({dy} ⋆ K)')}, ∂L/∂K = rot180({x} ⋆ {dy})"}
    note = "exact rules: " + "; ".join(rules[op] for op in ops) + ". " + _legend(padded, strided)
    if textbook:
        note += (" The textbook recipe uses dK = x ∗ δ, K ← K − lr·rot180(dK) and δx = full(δ ∗ K)"
                 " for every conv layer of stride 1"
                 + (" (x padded and δx cropped as the layer pads)." if padded else ".") +
                 " Its δ rule is right for ⋆ and wrong for ∗; its kernel"
                 " rule is the gradient of neither, so steps marked 'differs' are not the"
                 " gradient of this forward pass.")
    return note


def _legend(padded, strided):
    """The operators of the conv formulas, each defined once with its sizes; only those
    this network's formulas use."""
    parts = ["⋆ is cross-correlation and ∗ true convolution (⋆ with K turned 180°), both "
             "'valid' (only where the smaller array fits: H×W with KH×KW gives "
             "(H−KH+1)×(W−KW+1)), per channel pair: ∂L/∂K[f,c] pairs x[c] with δy[f], "
             "δx[c] sums over the filters f",
             "full(·) of δ ∗ K (or δ ⋆ K) first pads δ with KH−1 zero rows and KW−1 zero "
             "columns on each side"]
    if padded:
        parts.append("pad_p(x) adds the layer's padding p of zeros around x (p: one number for "
                     "every side, or top,bottom,left,right), making it HP×WP; crop_p removes "
                     "it again")
    if strided:
        parts.append("spread_s(δ) places δ's entries s apart (s−1 zeros between neighbours; s: "
                     "one number, or rows,columns) on a zero grid of the stride-1 output's size "
                     "(HP−KH+1)×(WP−KW+1), so rows and columns the stride skipped at the end "
                     "stay zero")
    return "; ".join(parts) + "."
