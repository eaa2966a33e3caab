"""`convtrain trace --format html`: a self-contained page, checked as written and as
headless Chromium renders it (Debian's chromium package; .ci/run installs it)."""

import html
import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from click.testing import CliRunner

from convtrain.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
needs_browser = pytest.mark.skipif(
    BROWSER is None, reason="no chromium on this machine (apt-get install chromium); "
                            "the rendered-page checks need a browser")


def _html(args):
    result = CliRunner().invoke(main, ["trace", *args, "--format", "html"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture(scope="module")
def textbook_page(tmp_path_factory):
    page = _html([os.path.join(ROOT, "configs", "seed-example.yaml"),
                  "--recipe", "textbook", "--decimals", "3"])
    path = tmp_path_factory.mktemp("html") / "trace.html"
    path.write_text(page, encoding="utf-8")
    return path


def test_the_page_is_self_contained_and_has_every_step(textbook_page):
    page = textbook_page.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "<script" not in page and "http://" not in page and "https://" not in page
    assert "@import" not in page and "url(" not in page
    assert re.findall(r'id="step-(\d+)"', page) == [str(n) for n in range(10)]
    # the worked example: dK2, K2, δ1, dK1, K1, δx differ from the exact gradient
    assert page.count("✗ differs from the exact gradient") == 6
    assert 'class="exact">exact -0.490' in page  # K2[0,0]: textbook -.513, exact -.490
    assert page.count('class="slip"') == 3 and page.count('class="carried"') >= 8


def test_big_arrays_become_heat_maps_without_numbers(repo_root):
    page = _html([os.path.join(repo_root, "configs", "digits.yaml")])
    assert '<table class="heat">' in page and '<table class="grid">' in page
    assert "✗" not in page  # the exact recipe marks nothing


def _chromium(*args):
    return subprocess.run([BROWSER, "--headless", "--no-sandbox", "--disable-gpu",
                           "--enable-logging=stderr", "--v=0", *args],
                          capture_output=True, text=True, timeout=120)


def _console_errors(stderr):
    return [line for line in stderr.splitlines()
            if ":CONSOLE" in line or "Uncaught" in line]


@needs_browser
def test_chromium_renders_every_step_and_mark_without_console_errors(textbook_page, tmp_path):
    proc = _chromium("--dump-dom", textbook_page.as_uri())
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    for step in range(10):
        assert f'id="step-{step}"' in dom
    assert dom.count('class="step differs"') == 6
    assert dom.count('<td class="wrong"') >= 20 and dom.count('class="exact"') >= 20
    assert _console_errors(proc.stderr) == []

    screenshot = tmp_path / "trace.png"
    proc = _chromium("--hide-scrollbars", "--window-size=1200,3600",
                     f"--screenshot={screenshot}", textbook_page.as_uri())
    assert proc.returncode == 0 and screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert screenshot.stat().st_size > 50_000  # a page of coloured grids, not a blank one


@needs_browser
def test_the_console_check_would_see_an_error(tmp_path):
    """The harness is not blind: a page whose script throws shows up."""
    page = tmp_path / "bad.html"
    page.write_text("<html><body><script>undefined_function()</script></body></html>")
    assert _console_errors(_chromium("--dump-dom", page.as_uri()).stderr)


WIDE = """name: wide
dtype: float64
input: [1, 4, 4]
layers:
  - {type: flatten}
  - {type: dense, units: 120}
  - {type: relu}
  - {type: dense, units: 10}
trace:
  input: [[[.7, -.3, -.7, .5], [.9, -.5, -.2, .9], [-.1, .8, -.3, -.5], [0, .2, -.1, .6]]]
  target: 3
"""
# Added to a copy of the page (the page itself has no script): after layout, the cards
# whose content sticks out of them, whether the page scrolls sideways, and the slices
# that scroll inside their card, as JSON in <pre id="measured">.
MEASURE = """<script>
const scrolls = el => ["auto", "scroll"].includes(getComputedStyle(el).overflowX);
const result = {
  page_overflows: document.documentElement.scrollWidth > document.documentElement.clientWidth,
  cards_overflowing: [...document.querySelectorAll("section.step")]
    .filter(card => card.scrollWidth > card.clientWidth).map(card => card.id),
  slices_scrolling: [...document.querySelectorAll(".slice")]
    .filter(s => s.scrollWidth > s.clientWidth && scrolls(s)).length,
};
const pre = document.createElement("pre");
pre.id = "measured";
pre.textContent = JSON.stringify(result);
document.body.appendChild(pre);
</script>"""


def _measured(page, tmp_path, width):
    path = tmp_path / "measured.html"
    path.write_text(page.replace("</body>", MEASURE + "</body>"), encoding="utf-8")
    proc = _chromium(f"--window-size={width},900", "--dump-dom", path.as_uri())
    assert proc.returncode == 0 and _console_errors(proc.stderr) == [], proc.stderr[-2000:]
    found = re.search(r'<pre id="measured">(.*?)</pre>', proc.stdout)
    assert found, proc.stdout[-2000:]
    return json.loads(html.unescape(found.group(1)))


@needs_browser
@pytest.mark.parametrize("width", [1200, 480])
def test_wide_rows_scroll_inside_their_card(write_config, tmp_path, width):
    """A dense layer of 120 units gives rows of 120 numbers: each scrolls inside its card,
    and neither the cards nor the page grow sideways."""
    page = _html([write_config(WIDE, "wide.yaml")])
    measured = _measured(page, tmp_path, width)
    assert measured["cards_overflowing"] == []
    assert not measured["page_overflows"]
    assert measured["slices_scrolling"] >= 4  # A2, A3, δ2, δ3 (and more on a narrow window)


@needs_browser
def test_the_worked_example_fits_a_narrow_window(textbook_page, tmp_path):
    measured = _measured(textbook_page.read_text(encoding="utf-8"), tmp_path, 480)
    assert measured["cards_overflowing"] == [] and not measured["page_overflows"]


@needs_browser
def test_chromium_renders_a_residual_trace(write_config, tmp_path):
    from test_modern_layers import RESNET

    config = write_config(RESNET.replace("  - {type: dropout, rate: 0.2}\n", ""))
    page = _html([config])
    steps = re.findall(r'id="step-(\d+)"', page)
    path = tmp_path / "residual.html"
    path.write_text(page, encoding="utf-8")
    proc = _chromium("--dump-dom", path.as_uri())
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    assert all(f'id="step-{step}"' in dom for step in steps) and len(steps) > 60
    for text in ("res2.projbn", "shortcut_delta", "body_delta", "δ10 = δ10.body + δ10.shortcut"):
        assert text in dom
    assert _console_errors(proc.stderr) == []


@pytest.fixture(scope="module")
def resnet_page(tmp_path_factory):
    page = _html([os.path.join(ROOT, "configs", "resnet-digits.yaml")])
    path = tmp_path_factory.mktemp("resnet") / "resnet.html"
    path.write_text(page, encoding="utf-8")
    return path


def test_resnet_digits_page_is_small_with_contents_and_colour_scales(resnet_page):
    page = resnet_page.read_text(encoding="utf-8")
    assert len(page.encode("utf-8")) < 1_000_000  # 4.3 MB when every channel was drawn
    assert '<meta name="generator" content="convtrain trace">' in page.split("</head>")[0]
    steps = re.findall(r'<section class="step[^"]*" id="step-(\d+)"', page)
    assert steps == [str(n) for n in range(92)]
    contents = page.split('<nav class="contents" id="contents">')[1].split("</nav>")[0]
    assert re.findall(r'href="#step-(\d+)"', contents) == steps
    assert page.count('class="scale"') == len(steps)
    assert "8 more of its 16 slices not drawn (--full draws them)" in page


def test_full_draws_every_slice(write_config):
    page = _html([write_config(WIDE.replace("units: 120", "units: 12"), "small.yaml")])
    assert "not drawn" not in page  # nothing to leave out of a small trace
    from convtrain.views.trace_html import MAX_SLICES, format_html

    result = {"recipe": "exact", "dtype": "float64", "lr": 0.1, "op_note": "",
              "steps": [{"step": 0, "layer": "c", "what": "output", "formula": "A1",
                         "value": np.ones((MAX_SLICES + 3, 2, 2)).tolist()}]}
    assert "3 more of its 11 slices not drawn" in format_html(result)
    assert "not drawn" not in format_html(result, full=True)
    assert format_html(result, full=True).count('<div class="slice">') == MAX_SLICES + 3


# After layout: how many links the contents has, which of them lead nowhere, and the
# top offsets of a card's slices (several channel grids to a row share one).
CONTENTS = """<script>
const links = [...document.querySelectorAll("nav.contents a")];
const tops = [...document.querySelectorAll("#step-1 .slice")].map(s => s.offsetTop);
const result = {
  links: links.length,
  dangling: links.filter(a => !document.getElementById(a.hash.slice(1))).map(a => a.hash),
  rows_of_step_1: new Set(tops).size, slices_of_step_1: tops.length,
  scales: document.querySelectorAll(".scale .bar").length,
};
const pre = document.createElement("pre");
pre.id = "measured";
pre.textContent = JSON.stringify(result);
document.body.appendChild(pre);
</script>"""


@needs_browser
def test_chromium_renders_resnet_digits_with_its_contents(resnet_page, tmp_path):
    proc = _chromium("--dump-dom", resnet_page.as_uri())
    assert proc.returncode == 0 and _console_errors(proc.stderr) == [], proc.stderr[-2000:]
    assert proc.stdout.count('<section class="step') == 92
    path = tmp_path / "measured.html"
    path.write_text(resnet_page.read_text(encoding="utf-8").replace("</body>",
                                                                    CONTENTS + "</body>"))
    proc = _chromium("--window-size=1200,900", "--dump-dom", path.as_uri())
    found = re.search(r'<pre id="measured">(.*?)</pre>', proc.stdout)
    assert found, proc.stdout[-2000:]
    measured = json.loads(html.unescape(found.group(1)))
    assert measured["links"] == 92 and measured["dangling"] == []
    assert measured["slices_of_step_1"] == 8 and measured["rows_of_step_1"] <= 2
    assert measured["scales"] == 92
