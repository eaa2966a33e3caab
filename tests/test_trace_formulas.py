"""Every backward formula `convtrain trace` prints for a conv layer, applied as printed.

The operators of the trace's legend are written here as tiny NumPy functions (⋆, ∗, full,
pad, crop, spread, rot180), each formula string is parsed into them, and what it gives from
the trace's own printed values must be the value the step shows. Strided, padded,
asymmetrically padded (padding: same with stride 2) and non-square layers are all here;
formulas that leave out the spreading or the cropping give arrays of another shape.
"""

import json
import re

import numpy as np
import pytest
from click.testing import CliRunner

from convtrain.cli import main

# (name, filters, kernel, stride, padding) on a [2, 8, 8] input; the shapes in comments.
CONVS = [("c1", 3, 3, 2, 1),             # -> [3, 4, 4]: 10x10 padded, one row/column unused
         ("c2", 2, 3, 1, [1, 2]),        # -> [2, 4, 6]: stride 1, padding (1, 1, 2, 2)
         ("c3", 2, 3, 2, "same"),        # -> [2, 2, 3]: padding (0, 1, 0, 1)
         ("c4", 2, [2, 1], [1, 2], 0)]   # -> [2, 1, 2]: stride (1, 2)


def _config(op, rng):
    lines = ["name: formulas", "dtype: float64", "input: [2, 8, 8]", "layers:"]
    channels = 2
    for name, filters, kernel, stride, padding in CONVS:
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        weights = rng.standard_normal((filters, channels, kh, kw)).round(3).tolist()
        lines.append(f"  - {{type: conv2d, name: {name}, op: {op}, filters: {filters}, "
                     f"kernel: {json.dumps(kernel)}, stride: {json.dumps(stride)}, "
                     f"padding: {json.dumps(padding)}, weights: {json.dumps(weights)}}}")
        channels = filters
    sample = rng.standard_normal((2, 8, 8)).round(2).tolist()
    lines += ["  - {type: flatten}", "  - {type: dense, units: 3}",
              "optimizer: {type: sgd, lr: 0.1}",
              f"trace: {{target: 2, input: {json.dumps(sample)}}}"]
    return "\n".join(lines) + "\n"


# The operators, as the legend defines them, on 2-D planes.
def correlate(a, k):
    """a ⋆ k, valid: (H-KH+1, W-KW+1)."""
    windows = np.lib.stride_tricks.sliding_window_view(a, k.shape)
    return np.einsum("ijkl,kl->ij", windows, k)


def convolve(a, k):
    return correlate(a, k[::-1, ::-1])


def pad(a, p):
    top, bottom, left, right = p
    return np.pad(a, [(0, 0)] * (a.ndim - 2) + [(top, bottom), (left, right)])


def crop(a, p):
    top, bottom, left, right = p
    return a[..., top:a.shape[-2] - bottom, left:a.shape[-1] - right]


def spread(d, s, grid):
    """d's entries s apart on a zero grid of `grid` (the stride-1 output's size)."""
    out = np.zeros(d.shape[:-2] + tuple(grid))
    out[..., ::s[0], ::s[1]][..., :d.shape[-2], :d.shape[-1]] = d
    return out


def _parameter(text, count):
    """'_2' or '_(2,1)' as `count` numbers (4 for padding, 2 for stride)."""
    values = [int(v) for v in text.strip("_()").split(",")]
    if len(values) == 1:
        return values * count
    return values if count == 4 else values[:2]


TOKEN = re.compile(r"\s*(rot180|full|(?:pad|crop|spread)_(?:\d+|\([\d,]+\))|"
                   r"A\d+|δ\d+|δx|K\d+|x|[()⋆∗])")


class Formula:
    """A parsed right-hand side evaluated on (kind, array): kind 'a' for an activation
    (C, H, W), 'd' for a delta (F, OH, OW), 'k' for a kernel (F, C, KH, KW)."""

    def __init__(self, text, values, layer):
        self.tokens = [m.group(1) for m in TOKEN.finditer(text)]
        assert "".join(self.tokens) == re.sub(r"\s+", "", text), text  # nothing unparsed
        self.values, self.layer, self.at = values, layer, 0

    def evaluate(self):
        kind, value = self._expression(full=False)
        assert self.at == len(self.tokens), self.tokens
        return value

    def _take(self, expected=None):
        token = self.tokens[self.at]
        assert expected is None or token == expected, (token, expected, self.tokens)
        self.at += 1
        return token

    def _expression(self, full):
        left = self._term()
        if self.at < len(self.tokens) and self.tokens[self.at] in "⋆∗":
            op = correlate if self._take() == "⋆" else convolve
            return self._product(op, left, self._term(), full)
        return left

    def _term(self):
        token = self._take()
        if token in self.values:
            return self.values[token]
        self._take("(")
        if token == "full":
            kind, value = self._expression(full=True)
        else:
            kind, value = self._expression(full=False)
        self._take(")")
        name = token.split("_")[0]
        if name == "rot180":
            return kind, value[..., ::-1, ::-1]
        if name == "pad":
            return kind, pad(value, _parameter(token[3:], 4))
        if name == "crop":
            return kind, crop(value, _parameter(token[4:], 4))
        if name == "spread":
            return kind, spread(value, _parameter(token[6:], 2), self.layer["grid"])
        return kind, value  # full: applied in _product

    @staticmethod
    def _product(op, left, right, full):
        (lk, a), (rk, b) = left, right
        if (lk, rk) == ("a", "d"):  # kernel gradient: [f, c] pairs a[c] with d[f]
            return "k", np.array([[op(a[c], b[f]) for c in range(len(a))] for f in range(len(b))])
        assert (lk, rk) == ("d", "k"), (lk, rk)
        kh, kw = b.shape[2:]
        if full:
            a = pad(a, (kh - 1, kh - 1, kw - 1, kw - 1))
        return "a", np.array([sum(op(a[f], b[f, c]) for f in range(len(a)))
                              for c in range(b.shape[1])])


def _trace(config_text, recipe, write_config):
    path = write_config(config_text)
    result = CliRunner().invoke(main, ["trace", path, "--recipe", recipe, "--format", "json"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["steps"]


def _symbols(steps):
    """Each printed name (x, A_i, δ_i) -> (kind, value), from the step that defines it."""
    values = {"x": ("a", np.asarray(steps[0]["value"]))}
    for step in steps[1:]:
        name = re.match(r"(A\d+|δ\d+|δx)\b", step["formula"])
        if name and step["what"] in ("output", "delta", "input_delta"):
            kind = "a" if name.group(1).startswith("A") else "d"
            values.setdefault(name.group(1), (kind, np.asarray(step["value"])))
    return values


@pytest.mark.parametrize("op", ["correlation", "convolution"])
@pytest.mark.parametrize("recipe", ["exact", "textbook"])
def test_each_printed_conv_formula_gives_its_steps_value(op, recipe, write_config):
    rng = np.random.default_rng(3)
    text = _config(op, rng)
    steps = _trace(text, recipe, write_config)
    values = _symbols(steps)
    kernels = re.findall(r"weights: (\[.*?\]\]\]\])", text)
    shape = (2, 8, 8)
    checked = []
    for i, ((name, _, kernel, stride, padding), weights) in enumerate(zip(CONVS, kernels)):
        kernel = np.asarray(json.loads(weights))
        values[f"K{i + 1}"] = ("k", kernel)
        outputs = [s for s in steps if s["layer"] == name and s["what"] == "output"]
        padded = pad(np.zeros(shape), _layer_padding(steps, name))
        grid = (padded.shape[1] - kernel.shape[2] + 1, padded.shape[2] - kernel.shape[3] + 1)
        for step in steps:
            if step["layer"] != name or step["what"] not in ("kernel_grad", "input_delta"):
                continue
            formula = step["formula"].removesuffix(" (valid convolution)")
            rhs = formula.split(" = ", 1)[1]
            got = Formula(rhs, values, {"grid": grid}).evaluate()
            want = np.asarray(step["value"])
            assert got.shape == want.shape, (step["formula"], got.shape, want.shape)
            np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12, err_msg=step["formula"])
            checked.append(step["formula"])
        shape = np.asarray(outputs[0]["value"]).shape
    assert len(checked) == 2 * len(CONVS), checked
    # the cases the layers make: spread and cropped, asymmetric, stride (1, 2)
    assert "δx = crop_1(full(spread_2(δ1) " in " ".join(checked)
    assert any("pad_(0,1,0,1)(A2)" in f for f in checked)
    assert any("spread_(1,2)(δ4)" in f for f in checked)


def _layer_padding(steps, name):
    """The padding the forward formula names: '(…, padding (t, b, l, r))'."""
    forward = next(s["formula"] for s in steps if s["layer"] == name and s["what"] == "output")
    found = re.search(r"padding \((\d+), (\d+), (\d+), (\d+)\)", forward)
    return tuple(int(v) for v in found.groups()) if found else (0, 0, 0, 0)


def test_stride_1_without_padding_keeps_the_short_forms(repo_root):
    seed = f"{repo_root}/configs/seed-example.yaml"
    for recipe, expected in [("exact", ["∂L/∂K2 = rot180(A1 ⋆ δ2)", "δ1 = full(δ2 ⋆ K2)"]),
                             ("textbook", ["dK2 = A1 ∗ δ2 (valid convolution)",
                                           "δ1 = full(δ2 ∗ K2)"])]:
        result = CliRunner().invoke(main, ["trace", seed, "--recipe", recipe])
        assert result.exit_code == 0, result.output
        for formula in expected:
            assert formula in result.stdout, (recipe, formula)
        assert "spread_" not in result.stdout and "crop_" not in result.stdout
