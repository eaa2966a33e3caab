"""Image layout (issue 10, item 3): the data's (C, H, W) is checked against `input`, not only
its pixel count, and `layout: nhwc` reads channels-last sources.

convtrain is channels first: x (N, C, H, W). An array that carries a shape must carry that
one; a flat row per image carries none and is reshaped as before.
"""

import struct

import numpy as np
import pytest
from click.testing import CliRunner

from convtrain.cli import main
from convtrain.spec.config import load_config
from convtrain.data.sources import load_datasets

RGB = "input: [3, 16, 16]\nlayers:\n  - {type: flatten}\n  - {type: dense, units: 4}\n"


def _images(shape=(6, 3, 16, 16), seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=shape).astype(np.uint8)


def _labels(count=6):
    return np.arange(count) % 4


def _npz(path, images, labels=None):
    np.savez(path, x=images, y=_labels(len(images)) if labels is None else labels)
    return path


def _config(write_config, train, val=None, head=RGB, name="net.yaml"):
    text = head + f"data:\n  train: {train}\n" + (f"  val: {val}\n" if val else "")
    return write_config(text, name)


def _train(config, out, *extra):
    return CliRunner().invoke(main, ["train", config, "--out", str(out), "--quiet",
                                     "--max-steps", "2", *extra])


def _one_line(result, must_contain):
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in result.output
    for text in must_contain:
        assert text in lines[0], lines[0]
    return lines[0]


# ---------------------------------------------------------------- shapes that do not fit

def test_channels_first_data_of_another_shape_exits_2(write_config, tmp_path):
    """(N, 3, 16, 16) against input [3, 8, 32]: the same 768 values, another image."""
    data = _npz(tmp_path / "d.npz", _images())
    config = _config(write_config, f"{{format: npz, path: {data}}}",
                     head=RGB.replace("[3, 16, 16]", "[3, 8, 32]"))
    out = tmp_path / "run"
    line = _one_line(_train(config, out), [f"{data}: data.train: ", "[6, 3, 16, 16]",
                                           "input is [3, 8, 32]"])
    assert "layout" not in line  # no channels-last hint where the data is not that
    assert not out.exists()


def test_channels_last_data_without_layout_suggests_nhwc(write_config, tmp_path):
    data = _npz(tmp_path / "d.npz", _images((6, 16, 16, 3)))
    config = _config(write_config, f"{{format: npz, path: {data}}}")
    out = tmp_path / "run"
    _one_line(_train(config, out), [f"{data}: data.train: ", "[6, 16, 16, 3]", "[3, 16, 16]",
                                    "channels-last", "add layout: nhwc"])
    assert not out.exists()


def test_one_channel_stored_channels_last_suggests_nhwc_too(write_config, tmp_path):
    """(N, H, W, 1), as Keras stores MNIST: a 4-dim array is read as (N, C, H, W)."""
    data = _npz(tmp_path / "d.npz", _images((6, 8, 8, 1)))
    head = RGB.replace("[3, 16, 16]", "[1, 8, 8]")
    config = _config(write_config, f"{{format: npz, path: {data}}}", head=head)
    _one_line(_train(config, tmp_path / "run"), ["[6, 8, 8, 1]", "add layout: nhwc"])


def test_channels_first_data_with_layout_nhwc_suggests_removing_it(write_config, tmp_path):
    data = _npz(tmp_path / "d.npz", _images())
    config = _config(write_config, f"{{format: npz, path: {data}, layout: nhwc}}")
    _one_line(_train(config, tmp_path / "run"), [f"{data}: data.train: ", "[6, 3, 16, 16]",
                                                 "channels first", "remove layout: nhwc"])


def test_val_source_is_checked_and_named_as_data_val(write_config, tmp_path):
    train = _npz(tmp_path / "t.npz", _images())
    val = _npz(tmp_path / "v.npz", _images((6, 16, 16, 3)))
    config = _config(write_config, f"{{format: npz, path: {train}}}",
                     val=f"{{format: npz, path: {val}}}")
    _one_line(_train(config, tmp_path / "run"), [f"{val}: data.val: ", "add layout: nhwc"])


def _idx(path, array):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    path.write_bytes(header + array.astype(">u1").tobytes())
    return path


def test_idx_images_with_four_dimensions_are_checked_too(write_config, tmp_path):
    labels = _idx(tmp_path / "lab.idx", _labels())
    images = _idx(tmp_path / "img.idx", _images((6, 16, 16, 3)))
    config = _config(write_config, f"{{format: idx, images: {images}, labels: {labels}}}")
    _one_line(_train(config, tmp_path / "run"), [f"{images}: data.train: ", "add layout: nhwc"])
    good = _idx(tmp_path / "good.idx", _images())
    config = _config(write_config, f"{{format: idx, images: {good}, labels: {labels}}}",
                     name="good.yaml")
    x = load_datasets(load_config(config))[0]
    assert np.array_equal(x, _images().astype(np.float32))


def test_one_channel_images_must_match_height_and_width(write_config, tmp_path):
    """(N, H, W) is one channel of H x W: the builtin digits (8x8) do not fit [1, 4, 16]."""
    head = RGB.replace("[3, 16, 16]", "[1, 4, 16]").replace("4}", "10}")
    config = _config(write_config, "{format: builtin, name: digits}", head=head)
    _one_line(_train(config, tmp_path / "run"), ["builtin:digits: data.train: ",
                                                 "[1797, 8, 8]", "input is [1, 4, 16]"])


def test_one_channel_images_against_a_three_channel_input(write_config, tmp_path):
    data = _npz(tmp_path / "d.npz", _images((6, 16, 48)))
    config = _config(write_config, f"{{format: npz, path: {data}}}")
    _one_line(_train(config, tmp_path / "run"), ["[6, 16, 48]", "one channel",
                                                 "input is [3, 16, 16]"])


def test_more_than_four_dimensions_exits_2(write_config, tmp_path):
    data = _npz(tmp_path / "d.npz", _images((6, 1, 3, 16, 16)))
    config = _config(write_config, f"{{format: npz, path: {data}}}")
    _one_line(_train(config, tmp_path / "run"), ["[6, 1, 3, 16, 16]", "(N, C, H, W)"])


def test_an_unknown_layout_is_a_config_error_with_its_line(write_config, tmp_path):
    config = _config(write_config, "{format: builtin, name: digits, layout: nwhc}")
    line = _one_line(CliRunner().invoke(main, ["summary", config]),
                     ["data.train.layout", "'nwhc'", "did you mean 'nhwc'", "nchw, nhwc"])
    assert line.startswith(f"error: {config}:6: ")


# ---------------------------------------------------------------- layout: nhwc

def test_layout_nhwc_gives_exactly_the_channels_first_images(write_config, tmp_path):
    first = _images()
    last = np.ascontiguousarray(first.transpose(0, 2, 3, 1))
    _npz(tmp_path / "first.npz", first)
    _npz(tmp_path / "last.npz", last)
    _npz(tmp_path / "val_last.npz", last[:3], _labels(3))
    reference = load_datasets(load_config(_config(
        write_config, f"{{format: npz, path: {tmp_path / 'first.npz'}, scale: 255}}",
        val="{split: 0.5}", name="first.yaml")))
    from_last = load_datasets(load_config(_config(
        write_config, f"{{format: npz, path: {tmp_path / 'last.npz'}, scale: 255, "
                      "layout: nhwc}", val="{split: 0.5}", name="last.yaml")))
    for want, got in zip(reference, from_last):
        assert np.array_equal(want, got)
    x = from_last[0]
    assert x.shape[1:] == (3, 16, 16) and x.dtype == np.float32
    assert x.stored.flags.c_contiguous
    separate = load_datasets(load_config(_config(
        write_config, f"{{format: npz, path: {tmp_path / 'first.npz'}, limit: 4}}",
        val=f"{{format: npz, path: {tmp_path / 'val_last.npz'}, layout: nhwc}}",
        name="separate.yaml")))
    assert np.array_equal(separate[0], first[:4].astype(np.float32))
    assert np.array_equal(separate[2], first[:3].astype(np.float32))
    assert separate[2].stored.flags.c_contiguous


def test_layout_nhwc_trains_and_the_run_folder_keeps_it(write_config, tmp_path):
    data = _npz(tmp_path / "d.npz", _images((16, 16, 16, 3)), _labels(16))
    config = _config(write_config, f"{{format: npz, path: {data}, scale: 255, layout: nhwc}}",
                     val=f"{{format: npz, path: {data}, scale: 255, layout: nhwc}}")
    out = tmp_path / "run"
    result = _train(config, out)
    assert result.exit_code == 0, result.output
    resolved = load_config(str(out / "config.yaml"))
    assert resolved.data.train.layout == "nhwc" and resolved.data.val.layout == "nhwc"
    assert (out / "config.yaml").read_text().count("layout: nhwc") == 2


def test_the_default_layout_is_written_to_the_run_folder(write_config, tmp_path):
    config = _config(write_config, "{format: builtin, name: digits, scale: 16, limit: 64}",
                     head=RGB.replace("[3, 16, 16]", "[1, 8, 8]").replace("4}", "10}"))
    out = tmp_path / "run"
    assert _train(config, out).exit_code == 0
    assert "layout: nchw" in (out / "config.yaml").read_text()


# ---------------------------------------------------------------- flat data: no shape to check

def test_flat_npz_is_reshaped_channels_first_as_before(write_config, tmp_path):
    first = _images()
    data = _npz(tmp_path / "d.npz", first.reshape(6, -1))
    x = load_datasets(load_config(_config(write_config, f"{{format: npz, path: {data}}}")))[0]
    assert np.array_equal(x, first.astype(np.float32))


def test_flat_rows_with_layout_nhwc_are_read_in_h_w_c_order(write_config, tmp_path):
    """A CSV row of an RGB image written pixel by pixel (r, g, b, r, g, b, ...)."""
    first = _images()
    rows = np.concatenate([_labels()[:, None], first.transpose(0, 2, 3, 1).reshape(6, -1)], 1)
    (tmp_path / "d.csv").write_text("\n".join(",".join(map(str, r)) for r in rows) + "\n")
    (tmp_path / "planes.csv").write_text("\n".join(
        ",".join(map(str, r)) for r in np.concatenate([_labels()[:, None],
                                                       first.reshape(6, -1)], 1)) + "\n")
    nhwc = load_datasets(load_config(_config(
        write_config, f"{{format: csv, path: {tmp_path / 'd.csv'}, layout: nhwc}}")))[0]
    planes = load_datasets(load_config(_config(
        write_config, f"{{format: csv, path: {tmp_path / 'planes.csv'}}}", name="p.yaml")))[0]
    assert np.array_equal(nhwc, first.astype(np.float32))
    assert np.array_equal(planes, first.astype(np.float32))
    assert nhwc.stored.flags.c_contiguous


@pytest.mark.parametrize("layout", ["", ", layout: nhwc"])
def test_one_channel_images_need_no_layout(write_config, tmp_path, layout):
    """(N, H, W) has one channel, the same in either order: the builtin digits and MNIST."""
    head = RGB.replace("[3, 16, 16]", "[1, 8, 8]").replace("4}", "10}")
    config = _config(write_config, f"{{format: builtin, name: digits{layout}}}", head=head)
    x = load_datasets(load_config(config))[0]
    assert x.shape == (1797, 1, 8, 8)
