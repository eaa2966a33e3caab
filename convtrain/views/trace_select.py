"""`convtrain trace --layer NAME --step N`: part of a deep network's trace.

--layer (repeatable) keeps the steps of the named layers, a residual block's with those of
every layer inside it; --step (repeatable, N, N-M or N,M) keeps those step numbers. Given
both, a step is shown when it passes both, so `--layer res2 --step 40-60` is res2's steps
among 40 to 60. Steps keep their numbers, in every format.
"""

from convtrain.errors import UserError
from convtrain.layers import walk
from convtrain.spec.yamlsource import did_you_mean


def parse_steps(texts):
    """['5', '7-9', '1,3'] -> [(5, 5), (7, 9), (1, 1), (3, 3)]; a UserError on bad syntax."""
    ranges = []
    for text in texts:
        for part in str(text).split(","):
            low, sep, high = part.strip().partition("-")
            if not (low.isdigit() and (high.isdigit() if sep else True)):
                raise UserError(f"'{text}' is not a step number N, a range N-M or a list "
                                f"N,M (steps count from 0)", path="--step")
            first, last = int(low), int(high) if sep else int(low)
            if first > last:
                raise UserError(f"'{part.strip()}' is an empty range: write the lower step "
                                f"first", path="--step")
            ranges.append((first, last))
    return ranges


def layer_names(config, names):
    """The names `--layer` selects: each given one and, for a block, those inside it.
    An unknown name is a UserError naming the closest and listing all."""
    specs = {spec.name: spec for spec in walk(config.layers)}
    chosen = set()
    for name in names:
        if name not in specs:
            raise UserError(f"no layer '{name}'{did_you_mean(name, specs)}; the layers, as "
                            f"`convtrain summary` names them: {', '.join(specs)}",
                            path="--layer")
        chosen.update(spec.name for spec in walk([specs[name]]))
    return chosen


def select_steps(result, layers=None, ranges=(), asked=()):
    """The trace `result` with only the chosen steps (layers: a set of names or None;
    asked: the --layer names as given, for the message when no step is left)."""
    steps = result["steps"]
    last = len(steps) - 1
    for first, final in ranges:
        if final > last:
            bad = first if first > last else final
            raise UserError(f"step {bad} is out of range: this trace has steps 0-{last}",
                            path="--step")
    kept = [step for step in steps
            if (layers is None or step["layer"] in layers)
            and (not ranges or any(a <= step["step"] <= b for a, b in ranges))]
    if not kept:
        theirs = sorted({step["step"] for step in steps if step["layer"] in layers})
        raise UserError(f"no step of --layer {' '.join(asked)} is among the steps asked for; "
                        f"its steps are {_spans(theirs)}", path="--step")
    return dict(result, steps=kept)


def _spans(numbers):
    """[3, 4, 5, 9] -> '3-5, 9'."""
    spans, start = [], None
    for i, n in enumerate(numbers):
        if start is None:
            start = n
        if i + 1 == len(numbers) or numbers[i + 1] != n + 1:
            spans.append(str(start) if start == n else f"{start}-{n}")
            start = None
    return ", ".join(spans)
