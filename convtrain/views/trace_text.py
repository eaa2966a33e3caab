"""`convtrain trace`'s text view: every step's formula and its array, as grids of
numbers (the first MAX_SLICES channels, the rest counted), or a one-line summary for a big
array (`--full` prints it all)."""

import textwrap

import numpy as np


SUMMARY_LIMIT = 144  # arrays with more entries per 2-D slice are summarised in text
MAX_SLICES = 8  # slices (channels) shown per array without --full; the rest are counted
SLIP, CARRIED = 1, 2
MARKS = {0: " ", SLIP: "!", CARRIED: "^"}


def slices(array):
    """Yield (label, 2-D array) views of an array for printing.

    Planes of 1x1 are not slices of their own (a 1x1 kernel's 512 one-number slices once
    filled 2,000 lines): [F, C, 1, 1] is one F x C grid and [C, 1, 1] one row of C, shown or
    summarised by the same rule as any other array (is_big)."""
    if array.ndim >= 3 and array.shape[-2:] == (1, 1) and array[..., 0, 0].size > 1:
        flat = array[..., 0, 0]
        label = ("[1x1 planes: one row per filter, one column per channel]" if flat.ndim == 2
                 else "[1x1 planes: one column per channel]")
        yield label, flat.reshape(-1, flat.shape[-1])
    elif array.ndim <= 1:
        yield "", array.reshape(1, -1)
    elif array.ndim == 2:
        yield "", array
    elif array.ndim == 3:
        for c in range(array.shape[0]):
            yield (f"[channel {c}]" if array.shape[0] > 1 else ""), array[c]
    else:
        for f in range(array.shape[0]):
            for c in range(array.shape[1]):
                yield (f"[filter {f}, channel {c}]" if array.shape[:2] != (1, 1) else ""), array[f, c]


def is_big(array):
    """Whether an array is summarised rather than printed (text) or drawn as a heat map
    without numbers (HTML): a slice over SUMMARY_LIMIT entries, or four times that in all."""
    return (max(view.size for _, view in slices(array)) > SUMMARY_LIMIT
            or array.size > 4 * SUMMARY_LIMIT)


def shown(value, spec):
    """format(value, spec), without the minus sign of a number that shows as zero.

    Two things print as -0.0000 otherwise: the -0.0 that ReLU gives for a negative input
    (it is leaky ReLU with slope 0, and 0·x is -0.0 for x < 0; max-pool and the deltas
    carry it on), and a small negative value rounded to the decimals shown.
    """
    text = format(value, spec)
    return text[1:] if text.startswith("-") and not text.strip("-0.") else text


def _grid(array, decimals, marks=None):
    rows = [[shown(v, f".{decimals}f") for v in row] for row in array]
    width = max(len(c) for row in rows for c in row)
    lines = []
    for r, row in enumerate(rows):
        cells = []
        for c, cell in enumerate(row):
            flag = MARKS[marks[r, c]] if marks is not None else " "
            cells.append(cell.rjust(width) + flag)
        lines.append(" ".join(cells))
    return lines


def _summary(array):
    return (f"shape {list(array.shape)}: min {shown(array.min(), '.4g')}  "
            f"max {shown(array.max(), '.4g')}  mean {shown(array.mean(), '.4g')}  "
            f"‖·‖ {np.linalg.norm(array):.4g}  (--full prints it)")


def published_marks(step, shape):
    """int8 array of `shape`: SLIP or CARRIED where the example's printed value is one."""
    marks = np.zeros(shape, dtype=np.int8)
    for index in step["published_slips"]:
        marks[tuple(index)] = SLIP
    for index in step["published_carried"]:
        marks[tuple(index)] = CARRIED
    return marks


def published_verdict(step, size):
    slips, carried = len(step["published_slips"]), len(step["published_carried"])
    if not slips and not carried:
        return "printed values: all match this recipe"
    parts = []
    if slips:
        parts.append(f"{slips} of {size} entries (!) are slips in the example's arithmetic")
    if carried:
        parts.append(f"{carried} of {size} entries (^) follow from the example's own earlier "
                     f"printed numbers: a slip carried forward")
    return "printed values: " + "; ".join(parts)


def format_text(result, decimals=4, full=False):
    lines = [f"recipe: {result['recipe']}   (float64; lr {result['lr']:g}; weights "
             f"{result['weights']})",
             # the note defines every operator with its sizes: a paragraph, not one line
             textwrap.fill(f"note: {result['op_note']}", width=100, subsequent_indent="      ",
                           break_on_hyphens=False), ""]
    textbook = result["recipe"] == "textbook"
    layer_w = max([10] + [len(step["layer"]) for step in result["steps"]])
    what_w = max([12] + [len(step["what"]) for step in result["steps"]])
    for step in result["steps"]:
        value = np.asarray(step["value"])
        head = (f"step {step['step']:>2}  {step['layer']:<{layer_w}} {step['what']:<{what_w}} "
                f"{step['formula']}")
        if textbook and step.get("differs"):
            head += "   ✗ differs from the exact gradient"
        lines.append(head)
        if step.get("note"):
            lines.append(f"    ({step['note']})")
        exact = np.asarray(step["exact"]) if textbook and step.get("differs") else None
        printed = np.asarray(step["published"]) if "published" in step else None
        if is_big(value) and not full:
            lines.append("    " + _summary(value))
            if exact is not None:
                lines.append("    exact: " + _summary(exact))
            lines.append("")
            continue
        slip_mask = published_marks(step, value.shape) if printed is not None else None
        columns = [("textbook" if textbook else "", value, slip_mask)]
        if exact is not None:
            columns.append(("exact", exact, None))
        if printed is not None:
            columns.append(("printed in the example", printed, slip_mask))
        views = [list(slices(v)) for _, v, _ in columns]
        mask_views = [list(slices(m)) if m is not None else None for _, _, m in columns]
        if len(columns) > 1:
            lines.append("    " + "".join(f"{title:<28}" for title, _, _ in columns).rstrip())
        shown_slices = len(views[0]) if full else min(len(views[0]), MAX_SLICES)
        for k, (label, _) in enumerate(views[0][:shown_slices]):
            if label:
                lines.append(f"    {label}")
            blocks = [_grid(view[k][1], decimals, mask_views[j][k][1] if mask_views[j] else None)
                      for j, view in enumerate(views)]
            for r in range(len(blocks[0])):
                lines.append("    " + "".join(f"{b[r]:<28}" for b in blocks).rstrip())
        if shown_slices < len(views[0]):
            lines.append(f"    {len(views[0]) - shown_slices} more of its {len(views[0])} "
                         f"slices not shown; all of it: {_summary(value)}")
        if printed is not None:
            lines.append("    " + published_verdict(step, value.size))
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
