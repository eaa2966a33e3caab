"""`convtrain trace --format html`: the trace as one self-contained page.

A table of contents links to every step. Each step is a card: its formula, a colour
scale, then the 2-D slices of its array, several to a row, as grids whose cells are
coloured by value (blue negative, red positive, white zero; one scale per step). Small
arrays show their numbers; big ones (trace_text.is_big) are heat maps without numbers, in
SHADES steps of colour. Past MAX_SLICES slices (channels) the rest are counted, not drawn,
unless --full: that keeps a ResNet's page under a megabyte. A slice wider than its card
scrolls sideways inside it. For the textbook recipe, a wrong cell is outlined and shows
the exact value under its own; the example's printed numbers appear as a third grid whose
slips (!) and carried slips (^) are marked as in the text view.

The page is HTML and inline CSS only: no script, font or image from anywhere, so it
opens offline and in any browser.
"""

import html

import numpy as np

from convtrain.views.trace_text import (
    CARRIED,
    MAX_SLICES,
    SLIP,
    is_big,
    published_verdict,
    slices,
    published_marks,
    shown,
)

SHADES = 8  # heat-map colours each side of white: a class per shade, not a style per cell

CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 72em;
       color: #1d2330; background: #fbfbfd; padding: 0 1em; overflow-wrap: break-word; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; }
.note { color: #4b5468; max-width: 60em; }
.legend span { display: inline-block; padding: 0 0.5em; margin-right: 0.6em; }
.step { background: #fff; border: 1px solid #d9dce5; border-radius: 8px; padding: 0.8em 1.1em;
        margin: 1.1em 0; }
.step.differs { border-color: #d24d3d; }
.step h2 { font-size: 1.05em; margin: 0 0 0.3em; }
.step h2 .what { color: #4b5468; font-weight: normal; }
.verdict { color: #b3261e; font-weight: 600; margin-left: 0.6em; }
.formula { font-family: ui-monospace, monospace; background: #f2f3f7; padding: 0.2em 0.5em;
           border-radius: 4px; display: inline-block; }
.columns { display: flex; flex-wrap: wrap; gap: 1.6em; margin-top: 0.6em; }
.column { min-width: 0; max-width: 100%; }
.column h3 { font-size: 0.85em; color: #4b5468; margin: 0 0 0.3em; font-weight: 600; }
.slice { margin-bottom: 0.6em; overflow-x: auto; }
.slice .label { font-size: 0.8em; color: #6b7385; }
nav.contents { font-size: 0.85em; columns: 17em; column-gap: 1.5em; background: #fff;
                border: 1px solid #d9dce5; border-radius: 8px; padding: 0.6em 1.1em; }
nav.contents h2 { font-size: 1.1em; margin: 0 0 0.3em; column-span: all; }
nav.contents ol { list-style: none; margin: 0; padding: 0; }
nav.contents li { break-inside: avoid; white-space: nowrap; overflow: hidden;
                  text-overflow: ellipsis; }
nav.contents .what, .step h2 .top { color: #6b7385; }
.step h2 .top { font-size: 0.8em; font-weight: normal; margin-left: 0.6em; }
.slices { display: flex; flex-wrap: wrap; gap: 0.2em 1.2em; align-items: flex-start; }
.slices .slice { max-width: 100%; min-width: 0; }
.more { font-size: 0.8em; color: #6b7385; margin-bottom: 0.6em; }
.scale { display: flex; align-items: center; gap: 0.4em; font-size: 0.8em; color: #6b7385;
         margin-top: 0.5em; }
.scale .bar { display: inline-block; width: 12em; height: 0.8em; border: 1px solid #d9dce5; }
table.grid { border-collapse: collapse; }
table.grid td { border: 1px solid #e3e5ec; padding: 0.25em 0.45em; text-align: right;
                font-family: ui-monospace, monospace; font-size: 0.85em; min-width: 3.8em; }
table.grid td.wrong { outline: 2px solid #d24d3d; outline-offset: -2px; }
table.grid td .exact { display: block; font-size: 0.8em; color: #1b6e3a; }
table.grid td.slip::after { content: " !"; color: #b3261e; font-weight: 700; }
table.grid td.carried::after { content: " ^"; color: #9a5b00; font-weight: 700; }
table.heat { border-collapse: collapse; }
table.heat td { width: 8px; height: 8px; padding: 0; }
.stats { font-size: 0.8em; color: #6b7385; }
.published { font-size: 0.85em; color: #4b5468; margin-top: 0.3em; }
"""


def _colour(value, scale):
    """Blue for negative, red for positive, white at zero; scale is the step's max |v|."""
    t = 0.0 if scale == 0 else max(-1.0, min(1.0, value / scale))
    if t >= 0:
        return f"rgb(255,{round(255 - 140 * t)},{round(255 - 160 * t)})"
    return f"rgb({round(255 + 160 * t)},{round(255 + 110 * t)},255)"


def _numbers(array, scale, decimals, exact=None, wrong=None, marks=None):
    rows = []
    for r in range(array.shape[0]):
        cells = []
        for c in range(array.shape[1]):
            value = float(array[r, c])
            classes = []
            extra = ""
            if wrong is not None and wrong[r, c]:
                classes.append("wrong")
                extra = f'<span class="exact">exact {shown(exact[r, c], f".{decimals}f")}</span>'
            if marks is not None and marks[r, c] == SLIP:
                classes.append("slip")
            elif marks is not None and marks[r, c] == CARRIED:
                classes.append("carried")
            cls = f' class="{" ".join(classes)}"' if classes else ""
            cells.append(f'<td{cls} style="background:{_colour(value, scale)}">'
                         f'{shown(value, f".{decimals}f")}{extra}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return '<table class="grid">' + "".join(rows) + "</table>"


def _shade_css():
    """Classes n8..n1, z, p1..p8: the heat map's colours, SHADES steps each side of zero."""
    rules = [f"table.heat td.z {{ background: {_colour(0.0, 1.0)}; }}"]
    for level in range(1, SHADES + 1):
        for sign, name in ((-1, "n"), (1, "p")):
            rules.append(f"table.heat td.{name}{level} "
                         f"{{ background: {_colour(sign * level / SHADES, 1.0)}; }}")
    return "\n".join(rules) + "\n"


def _shade(value, scale):
    level = 0 if scale == 0 else round(max(-1.0, min(1.0, value / scale)) * SHADES)
    return "z" if level == 0 else f"{'n' if level < 0 else 'p'}{abs(level)}"


def _heat(array, scale):
    rows = ["<tr>" + "".join(f'<td class="{_shade(float(v), scale)}"></td>' for v in row)
            + "</tr>" for row in array]
    return '<table class="heat">' + "".join(rows) + "</table>"


def _scale(scale, big):
    """The step's colour scale: blue at −scale, white at 0, red at +scale."""
    bar = (f"linear-gradient(to right, {_colour(-1.0, 1.0)}, {_colour(0.0, 1.0)}, "
           f"{_colour(1.0, 1.0)})")
    steps = f", in {2 * SHADES + 1} shades" if big else ""
    return (f'<div class="scale"><span>{shown(-scale, ".3g")}</span>'
            f'<span class="bar" style="background:{bar}"></span><span>{shown(scale, ".3g")}'
            f'</span><span>colour scale of this step (white is 0{steps})</span></div>')


def _column(title, array, scale, decimals, big, full, exact=None, marks=None):
    wrong = None
    if exact is not None:
        wrong = ~np.isclose(array, exact, rtol=1e-9, atol=1e-12)
    parts = [f'<div class="column"><h3>{html.escape(title)}</h3>']
    views = list(slices(array))
    exact_views = list(slices(exact)) if exact is not None else None
    wrong_views = list(slices(wrong)) if wrong is not None else None
    mark_views = list(slices(marks)) if marks is not None else None
    drawn = len(views) if full else min(len(views), MAX_SLICES)
    parts.append('<div class="slices">')
    for k, (label, view) in enumerate(views[:drawn]):
        parts.append('<div class="slice">')
        if label:
            parts.append(f'<div class="label">{html.escape(label)}</div>')
        if big:
            parts.append(_heat(view, scale))
        else:
            parts.append(_numbers(view, scale, decimals,
                                  exact_views[k][1] if exact_views else None,
                                  wrong_views[k][1] if wrong_views else None,
                                  mark_views[k][1] if mark_views else None))
        parts.append("</div>")
    parts.append("</div>")
    if drawn < len(views):
        parts.append(f'<div class="more">{len(views) - drawn} more of its {len(views)} '
                     f'slices not drawn (--full draws them)</div>')
    if big:
        parts.append(f'<div class="stats">shape {list(array.shape)}, '
                     f'min {shown(array.min(), ".4g")}, max {shown(array.max(), ".4g")}</div>')
    parts.append("</div>")
    return "".join(parts)


def _contents(steps):
    items = "".join(f'<li><a href="#step-{step["step"]}">step {step["step"]} · '
                    f'{html.escape(step["layer"])} <span class="what">'
                    f'{html.escape(step["what"])}</span></a></li>' for step in steps)
    return f'<nav class="contents" id="contents"><h2>Steps</h2><ol>{items}</ol></nav>'


def _card(step, textbook, decimals, full):
    value = np.asarray(step["value"], dtype=float)
    differs = textbook and step.get("differs")
    exact = np.asarray(step["exact"], dtype=float) if differs else None
    printed = np.asarray(step["published"], dtype=float) if "published" in step else None
    marks = published_marks(step, value.shape) if printed is not None else None
    arrays = [a for a in (value, exact, printed) if a is not None]
    scale = max(float(np.max(np.abs(a))) if a.size else 0.0 for a in arrays)
    big = is_big(value)
    verdict = ('<span class="verdict">✗ differs from the exact gradient</span>'
               if differs else "")
    card = [f'<section class="step{" differs" if differs else ""}" id="step-{step["step"]}">',
            f'<h2>step {step["step"]} · {html.escape(step["layer"])} '
            f'<span class="what">{html.escape(step["what"])}</span>{verdict}'
            f'<a class="top" href="#contents">contents</a></h2>',
            f'<div class="formula">{html.escape(step["formula"])}</div>']
    if step.get("note"):
        card.append(f'<p class="note">{html.escape(step["note"])}</p>')
    card.append(_scale(scale, big))
    card.append('<div class="columns">')
    card.append(_column("textbook" if textbook else "value", value, scale, decimals, big, full,
                        exact=exact))
    if exact is not None:
        card.append(_column("exact", exact, scale, decimals, big, full))
    if printed is not None:
        card.append(_column("printed in the example", printed, scale, decimals, big, full,
                            marks=marks))
    card.append("</div>")
    if printed is not None:
        card.append(f'<p class="published">{html.escape(published_verdict(step, value.size))}'
                    f"</p>")
    card.append("</section>")
    return "".join(card)


def format_html(result, decimals=4, title="convtrain trace", full=False):
    """The trace from `run_trace` as a complete HTML document (a string); full draws
    every slice of every array."""
    textbook = result["recipe"] == "textbook"
    body = [f"<h1>{html.escape(title)}</h1>",
            f'<p class="note">recipe <b>{html.escape(result["recipe"])}</b> · '
            f'{html.escape(result["dtype"])} · lr {result["lr"]:g}</p>',
            f'<p class="note">{html.escape(result["op_note"])}</p>']
    if textbook:
        body.append('<p class="legend"><span style="outline:2px solid #d24d3d">wrong cell: '
                    'the exact value under it</span><span>! a slip in the example\'s '
                    'arithmetic</span><span>^ follows from an earlier printed slip</span></p>')
    body.append(_contents(result["steps"]))
    body.extend(_card(step, textbook, decimals, full) for step in result["steps"])
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            '<meta name="generator" content="convtrain trace">'
            f"<title>{html.escape(title)}</title><style>{CSS}{_shade_css()}</style></head>\n"
            "<body>\n" + "\n".join(body) + "\n</body></html>\n")
