"""The formulas `convtrain trace` prints: the symbols A_i, δ_i, K_i, b_i, each layer's
forward and backward rule, the optimizer's update and the note on the two conv recipes."""

from convtrain.layers import walk


class Symbols:
    """A_i, δ_i, K_i (W_i, γ_i), b_i (β_i): i is the layer's position, 1-based, depth first
    (a block, then its paths' layers, path after path). Inside a block every path takes the
    block's input; the deltas they hand down are δ.body and δ.shortcut (a residual's), or
    δ.path1, δ.path2, ... (a branches block's) of its input's."""

    def __init__(self, config):
        self.index = {spec.name: i + 1 for i, spec in enumerate(walk(config.layers))}
        self.inputs, self.input_deltas = {}, {}
        self._chain(config.layers, "x", "δx")

    def _chain(self, specs, inp, dinp):
        for spec in specs:
            self.inputs[spec.name], self.input_deltas[spec.name] = inp, dinp
            for label, path in zip(spec.path_labels if spec.paths else (), spec.paths):
                self._chain(path, inp, f"{dinp}.{label}")
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
        return spec.weight_symbol + str(self.index[spec.name])

    def bias(self, spec):
        return spec.bias_symbol + str(self.index[spec.name])


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
