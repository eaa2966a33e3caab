"""The worked example (docs/worked-example.md) is the golden case of `convtrain trace`."""

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from convtrain.cli import main

SEED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs",
                    "seed-example.yaml")

# seed-example.md, "textbook, recomputed" column (3 decimals as printed there).
TEXTBOOK = {
    ("L1", "output"): [[.32, .27, -.59], [.99, -.52, -.55], [-.45, .64, .13]],
    ("L2", "output"): [[.728, .289], [.37, -.634]],
    ("L2", "kernel_grad"): [[.167, .019], [-.046, .126]],
    ("L2", "kernel_new"): [[-.513, .105], [.298, .883]],
    ("L2", "input_delta"): [[.035, -.082, .015], [.024, -.037, .137], [-.027, -.075, .018]],
    ("L1", "kernel_grad"): [[.113, .013], [-.011, .123]],
    ("L1", "kernel_new"): [[.088, -.299], [-.501, .689]],
}
# seed-example.md, "exact" table.
EXACT = {
    ("L2", "kernel_grad"): ([[-.1011, -.0940], [-.0716, -.0814]], 4),
    ("L2", "kernel_new"): ([[-.4899, .1094], [.3072, .9081]], 4),
    ("L2", "input_delta"): ([[-.063, .114, .045], [-.088, .041, -.069], [-.009, .047, -.010]], 3),
    ("L1", "kernel_grad"): ([[-.0115, -.0500], [-.0810, -.1542]], 4),
    ("L1", "kernel_new"): ([[.1012, -.2950], [-.4919, .7154]], 4),
}


def _trace(recipe):
    result = CliRunner().invoke(main, ["trace", SEED, "--recipe", recipe, "--format", "json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    return doc, {(s["layer"], s["what"]): s for s in doc["steps"]}


def _flat2d(value):
    return np.asarray(value, dtype=float).reshape(np.asarray(value).shape[-2:])


@pytest.mark.parametrize("key", TEXTBOOK)
def test_textbook_recipe_reproduces_recomputed_column(key):
    _, steps = _trace("textbook")
    np.testing.assert_allclose(_flat2d(steps[key]["value"]), TEXTBOOK[key], atol=0.5e-3 + 1e-12)


@pytest.mark.parametrize("key", EXACT)
def test_exact_recipe_gives_exact_column(key):
    _, steps = _trace("exact")
    expected, decimals = EXACT[key]
    np.testing.assert_allclose(_flat2d(steps[key]["value"]), expected,
                               atol=0.5 * 10.0 ** -decimals + 1e-12)


def test_exact_steps_are_in_contract_order():
    doc, _ = _trace("exact")
    order = [(s["layer"], s["what"]) for s in doc["steps"]]
    assert order == [("L1", "input"), ("L1", "output"), ("L2", "output"), ("L2", "delta"),
                     ("L2", "kernel_grad"), ("L2", "kernel_new"), ("L2", "input_delta"),
                     ("L1", "kernel_grad"), ("L1", "kernel_new"), ("L1", "input_delta")]
    assert [s["step"] for s in doc["steps"]] == list(range(10))
    assert doc["steps"][1]["formula"] == "A1 = x ∗ K1"


def test_textbook_marks_where_it_differs_from_exact():
    _, steps = _trace("textbook")
    assert not steps[("L2", "output")]["differs"]
    for key in [("L2", "kernel_grad"), ("L2", "kernel_new"), ("L2", "input_delta"),
                ("L1", "kernel_grad"), ("L1", "kernel_new")]:
        assert steps[key]["differs"], key
        assert "exact" in steps[key]
    np.testing.assert_allclose(_flat2d(steps[("L2", "kernel_new")]["exact"]),
                               EXACT[("L2", "kernel_new")][0], atol=0.5e-4)


def test_textbook_flags_the_examples_slips_and_carried_errors():
    _, steps = _trace("textbook")
    # .883 printed as .9: a slip.
    assert steps[("L2", "kernel_new")]["published_slips"] == [[0, 0, 1, 1]]
    # δ1 centre (-.037 printed -.13) and corner (.018 printed .01): slips.
    assert steps[("L2", "input_delta")]["published_slips"] == [[0, 1, 1], [0, 2, 2]]
    # dK1 and K1 follow from the example's own wrong δ1: carried, not new slips.
    assert steps[("L1", "kernel_grad")]["published_slips"] == []
    assert len(steps[("L1", "kernel_grad")]["published_carried"]) == 4
    assert steps[("L1", "kernel_new")]["published_slips"] == []
    assert steps[("L2", "kernel_grad")]["published_slips"] == []
    assert steps[("L2", "kernel_grad")]["published_carried"] == []


def test_text_view_shows_both_columns_and_marks():
    result = CliRunner().invoke(main, ["trace", SEED, "--recipe", "textbook", "--decimals", "3"])
    assert result.exit_code == 0
    text = result.stdout
    assert "differs from the exact gradient" in text
    assert "-0.037!" in text and "-0.130!" in text
    assert "0.883!" in text and "0.900!" in text
    assert "exact" in text and "printed in the example" in text


def test_exact_text_rounds_only_the_view():
    result = CliRunner().invoke(main, ["trace", SEED, "--decimals", "2"])
    assert "-0.49   0.11" in result.stdout
