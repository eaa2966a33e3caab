"""layers.png of a deep network stays readable: ResNet-20's 60 layers once made a 60-name
legend drawn over the curves (issue 28, item 7)."""

from types import SimpleNamespace

import numpy as np
import pytest

from convtrain.views import plot_pictures as pictures
from convtrain.views.plots import require_pyplot

pytest.importorskip("matplotlib")


def _records(names, steps=4):
    """Step records as metrics.jsonl holds them: every layer a δ norm, every third one a
    weight (the convolutions of a ResNet; the rest are batchnorm and relu)."""
    rng = np.random.default_rng(0)
    records = []
    for step in range(1, steps + 1):
        layers = {}
        for i, name in enumerate(names):
            layers[name] = {"delta_norm": float(rng.uniform(0.01, 1))}
            if i % 3 == 0:
                layers[name].update(grad_norm=1.0, update_norm=float(rng.uniform(1e-4, 1e-2)),
                                    weight_norm=1.0)
        records.append({"event": "step", "step": step * 10, "layers": layers})
    return records


def _figure(count, tmp_path=None):
    plt = require_pyplot()
    names = [f"block{i // 3}.layer{i % 3}" for i in range(count)]
    network = SimpleNamespace(all_layers=lambda: [SimpleNamespace(name=n) for n in names])
    figure = pictures.layers(plt, _records(names), network)
    if tmp_path is not None:
        figure.savefig(tmp_path / "layers.png", dpi=110)  # laid out and drawn: no error on the way
    return plt, figure, names


def _legend_entries(figure):
    return [text.get_text() for axis in figure.axes if axis.get_legend()
            for text in axis.get_legend().get_texts()]


def test_a_deep_network_gets_a_depth_colorbar_not_a_legend_of_every_layer(tmp_path):
    plt, figure, names = _figure(60, tmp_path)
    entries = _legend_entries(figure)
    assert len(entries) <= 12, entries  # a legend one can read
    assert not set(entries) & set(names), entries  # no layer listed one by one
    colorbars = [axis for axis in figure.axes if axis.get_label() == "<colorbar>"]
    assert len(colorbars) == 1, [axis.get_label() for axis in figure.axes]
    ticks = [t.get_text() for t in colorbars[0].get_yticklabels()]
    assert ticks[0] == names[0] and ticks[-1] == names[-1], ticks
    assert len(ticks) <= pictures.KEY_TICKS
    # the highest and lowest curves are named at their ends, by layer names only
    named = [t.get_text().split(" +")[0] for axis in figure.axes[:2] for t in axis.texts]
    assert 2 <= len(named) <= 4 * pictures.NAMED_EXTREMES and set(named) <= set(names), named
    plt.close(figure)


def test_a_small_network_keeps_its_legend_outside_the_curves():
    plt, figure, names = _figure(6)
    delta_axis = figure.axes[0]
    assert [t.get_text() for t in delta_axis.get_legend().get_texts()] == names
    # anchored right of the axes (x >= 1 in axes coordinates), so it covers no curve
    anchor = delta_axis.get_legend().get_bbox_to_anchor().transformed(
        delta_axis.transAxes.inverted())
    assert anchor.x0 >= 1.0
    plt.close(figure)
