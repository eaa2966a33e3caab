"""channel_shuffle, channel_pad and channel_slice: their channel maps against NumPy's
reshape, pad and slice, float64 gradient checks on images and vectors, ONNX Runtime at batch
1 and 7, ResNet's option-A shortcut in a residual block, and the bad values."""

import numpy as np
import pytest
from nets import assert_onnx_runtime_agrees

from convtrain.errors import ConfigError
from convtrain.model.gradcheck import check_gradients
from convtrain.model.network import Network
from convtrain.spec.config import load_config

LAYERS = {"shuffle": "{type: channel_shuffle, groups: 3}",
          "pad": "{type: channel_pad, before: 2, after: 1}",
          "slice": "{type: channel_slice, start: 2, stop: 5}"}


def _config(layer, dtype="float64", vector=False):
    before = "\n  - {type: flatten}\n  - {type: dense, units: 6}" if vector else ""
    return load_config("ch.yaml", text=f"""
dtype: {dtype}
input: [6, 3, 2]
layers:{before}
  - {layer}
  - {{type: flatten}}
  - {{type: dense, units: 3}}
""")


def test_each_map_is_numpys():
    x = np.random.default_rng(0).normal(size=(2, 6, 3, 2))
    layers = {key: Network(_config(text)).layers[0] for key, text in LAYERS.items()}
    shuffled = x.reshape(2, 3, 2, 3, 2).transpose(0, 2, 1, 3, 4).reshape(2, 6, 3, 2)
    np.testing.assert_array_equal(layers["shuffle"].forward(x), shuffled)
    np.testing.assert_array_equal(layers["pad"].forward(x),
                                  np.pad(x, ((0, 0), (2, 1), (0, 0), (0, 0))))
    np.testing.assert_array_equal(layers["slice"].forward(x), x[:, 2:5])
    dout = np.random.default_rng(1).normal(size=(2, 3, 3, 2))
    expected = np.zeros_like(x)
    expected[:, 2:5] = dout
    np.testing.assert_array_equal(layers["slice"].backward(dout), expected)


@pytest.mark.parametrize("key", sorted(LAYERS))
@pytest.mark.parametrize("vector", [False, True])
def test_gradients_are_exact(key, vector):
    x = np.random.default_rng(2).normal(size=(3, 6, 3, 2))
    rows = check_gradients(Network(_config(LAYERS[key], vector=vector)), x, np.array([0, 2, 1]))
    assert all(row.passed for row in rows), [row.describe() for row in rows]


@pytest.mark.parametrize("key", sorted(LAYERS))
@pytest.mark.parametrize("vector", [False, True])
@pytest.mark.parametrize("batch", [1, 7])
def test_onnx_runtime_gives_the_same_scores(key, vector, batch):
    config = _config(LAYERS[key], dtype="float32", vector=vector)
    network = Network(config)
    x = np.random.default_rng(3).normal(size=(batch, 6, 3, 2)).astype(np.float32)
    assert_onnx_runtime_agrees(config, network, x)


def test_option_a_shortcut_subsamples_and_pads_with_zero_channels():
    """He et al.'s option A: the identity, every other pixel, zero channels added."""
    config = load_config("a.yaml", text="""
dtype: float64
input: [2, 4, 4]
layers:
  - type: residual
    body: [{type: conv2d, filters: 4, kernel: 3, stride: 2, padding: 1}]
    shortcut: [{type: maxpool, size: 1, stride: 2}, {type: channel_pad, before: 1, after: 1}]
  - {type: flatten}
  - {type: dense, units: 2}
""")
    network = Network(config)
    x = np.random.default_rng(4).normal(size=(3, 2, 4, 4))
    shortcut = network.layers[0].paths[1]
    out = shortcut[1].forward(shortcut[0].forward(x))
    np.testing.assert_array_equal(out, np.pad(x[:, :, ::2, ::2], ((0, 0), (1, 1), (0, 0), (0, 0))))
    rows = check_gradients(network, x, np.array([0, 1, 1]))
    assert all(row.passed for row in rows), [row.describe() for row in rows]


@pytest.mark.parametrize("layer, key, words", [
    ("{type: channel_shuffle, groups: 4}", "groups", "4 does not divide the 6 channels"),
    ("{type: channel_slice, start: 4, stop: 7}", "stop", "channels [4, 7) are not a non-empty "
                                                        "part of the input's 6"),
    ("{type: channel_slice, start: 3, stop: 3}", "stop", "are not a non-empty part"),
    ("{type: channel_pad, before: -1}", "before", "must be at least 0"),
])
def test_bad_values_are_one_line_naming_the_key(layer, key, words):
    with pytest.raises(ConfigError) as raised:
        load_config("ch.yaml", text=f"input: [6, 3, 2]\nlayers:\n  - {layer}\n"
                                    "  - {type: flatten}\n  - {type: dense, units: 2}\n")
    line = raised.value.one_line()
    assert line.startswith(f"error: ch.yaml:3: layers[0].{key}: ") and words in line, line
