"""`convtrain trace --format html`: the trace as one self-contained page.

Each step is a card: its formula, then every 2-D slice of its array as a grid whose
cells are coloured by value (blue negative, red positive, white zero; one scale per
step). Small slices show their numbers; slices over `trace.SUMMARY_LIMIT` entries are a
heat map without numbers. A slice wider than its card scrolls sideways inside it. For the
textbook recipe, a wrong cell is outlined and shows the exact value under its own; the
example's printed numbers appear as a third grid whose slips (!) and carried slips (^)
are marked as in the text view.

The page is HTML and inline CSS only: no script, font or image from anywhere, so it
opens offline and in any browser.
"""

import html

import numpy as np

from convtrain.trace_text import (
    CARRIED,
    SLIP,
    is_big,
    published_verdict,
    slices,
    published_marks,
    shown,
)

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
table.grid { border-collapse: collapse; }
table.grid td { border: 1px solid #e3e5ec; padding: 0.25em 0.45em; text-align: right;
                font-family: ui-monospace, monospace; font-size: 0.85em; min-width: 3.8em; }
table.grid td.wrong { outline: 2px solid #d24d3d; outline-offset: -2px; }
table.grid td .exact { display: block; font-size: 0.8em; color: #1b6e3a; }
table.grid td.slip::after { content: " !"; color: #b3261e; font-weight: 700; }
table.grid td.carried::after { content: " ^"; color: #9a5b00; font-weight: 700; }
table.heat { border-collapse: collapse; }
table.heat td { width: 7px; height: 7px; padding: 0; }
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


def _heat(array, scale):
    rows = ["<tr>" + "".join(f'<td style="background:{_colour(float(v), scale)}"></td>'
                             for v in row) + "</tr>" for row in array]
    return '<table class="heat">' + "".join(rows) + "</table>"


def _column(title, array, scale, decimals, big, exact=None, marks=None):
    wrong = None
    if exact is not None:
        wrong = ~np.isclose(array, exact, rtol=1e-9, atol=1e-12)
    parts = [f'<div class="column"><h3>{html.escape(title)}</h3>']
    views = list(slices(array))
    exact_views = list(slices(exact)) if exact is not None else None
    wrong_views = list(slices(wrong)) if wrong is not None else None
    mark_views = list(slices(marks)) if marks is not None else None
    for k, (label, view) in enumerate(views):
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
    if big:
        parts.append(f'<div class="stats">shape {list(array.shape)}, '
                     f'min {shown(array.min(), ".4g")}, max {shown(array.max(), ".4g")}</div>')
    parts.append("</div>")
    return "".join(parts)


def format_html(result, decimals=4, title="convtrain trace"):
    """The trace from `run_trace` as a complete HTML document (a string)."""
    textbook = result["recipe"] == "textbook"
    body = [f"<h1>{html.escape(title)}</h1>",
            f'<p class="note">recipe <b>{html.escape(result["recipe"])}</b> · '
            f'{html.escape(result["dtype"])} · lr {result["lr"]:g}</p>',
            f'<p class="note">{html.escape(result["op_note"])}</p>']
    if textbook:
        body.append('<p class="legend"><span style="outline:2px solid #d24d3d">wrong cell: '
                    'the exact value under it</span><span>! a slip in the example\'s '
                    'arithmetic</span><span>^ follows from an earlier printed slip</span></p>')
    for step in result["steps"]:
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
                f'<span class="what">{html.escape(step["what"])}</span>{verdict}</h2>',
                f'<div class="formula">{html.escape(step["formula"])}</div>']
        if step.get("note"):
            card.append(f'<p class="note">{html.escape(step["note"])}</p>')
        card.append('<div class="columns">')
        card.append(_column("textbook" if textbook else "value", value, scale, decimals, big,
                            exact=exact))
        if exact is not None:
            card.append(_column("exact", exact, scale, decimals, big))
        if printed is not None:
            card.append(_column("printed in the example", printed, scale, decimals, big,
                                marks=marks))
        card.append("</div>")
        if printed is not None:
            card.append(f'<p class="published">{html.escape(published_verdict(step, value.size))}'
                        f"</p>")
        card.append("</section>")
        body.append("".join(card))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")
