"""format: folder: one subfolder of PNG/JPEG/BMP images per class, read with Pillow: class
order, exact pixels in (C, H, W), grey conversion, resize, and each broken folder one line."""

import sys

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from convtrain.cli import main
from convtrain.spec.config import load_config
from convtrain.data.sources import load_datasets


def _folder(tmp_path, sizes=((4, 3),) * 2, classes=("dog", "cat")):
    """Two classes of RGB PNGs (random pixels); returns (path, {class: [arrays (H, W, 3)]})."""
    root = tmp_path / "images"
    content = {}
    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True)
        content[name] = []
        for index, (width, height) in enumerate(sizes):
            pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
            Image.fromarray(pixels, "RGB").save(root / name / f"{index}.png")
            content[name].append(pixels)
    return str(root), content


def _config(path, channels=3, size=(3, 4), extra=""):
    return load_config("folder.yaml", text=(
        f"input: [{channels}, {size[0]}, {size[1]}]\nlayers:\n  - {{type: flatten}}\n"
        f"  - {{type: dense, units: 2}}\ndata:\n  train: {{format: folder, path: {path}{extra}}}\n"))


def test_classes_in_sorted_order_and_exact_rgb_planes(tmp_path):
    path, content = _folder(tmp_path)
    x, y, _, _ = load_datasets(_config(path), need_val=False)
    assert list(y) == [0, 0, 1, 1]  # cat before dog
    expected = np.stack([p.transpose(2, 0, 1) for p in content["cat"] + content["dog"]])
    np.testing.assert_array_equal(x, expected.astype(np.float32))


def test_grey_and_resize(tmp_path):
    path, content = _folder(tmp_path, sizes=((4, 3), (8, 6)))
    x, _, _, _ = load_datasets(_config(path, channels=1, extra=", resize: true"),
                               need_val=False)
    grey = np.asarray(Image.fromarray(content["cat"][0]).convert("L"), dtype=np.float32)
    np.testing.assert_array_equal(x[0, 0], grey)  # the 4x3 one needs no resizing
    resized = Image.fromarray(content["cat"][1]).convert("L").resize((4, 3), Image.BILINEAR)
    np.testing.assert_array_equal(x[1, 0], np.asarray(resized, dtype=np.float32))


def _error(tmp_path, path, extra=""):
    config = tmp_path / "c.yaml"
    config.write_text("input: [3, 3, 4]\nlayers:\n  - {type: flatten}\n  - {type: dense, units: 2}\n"
                      f"data:\n  train: {{format: folder, path: {path}{extra}}}\n")
    result = CliRunner().invoke(main, ["train", str(config), "--smoke"])
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    return result.stderr


def test_broken_folders_are_one_line(tmp_path, monkeypatch):
    path, _ = _folder(tmp_path, sizes=((4, 3), (5, 3)))
    assert "1.png: data.train: is 5 pixels wide and 3 high, but input is 4 wide and 3 high" in \
        _error(tmp_path, path)
    assert "add resize: true" in _error(tmp_path, path)
    (tmp_path / "images" / "dog" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    assert "1.png: data.train: cannot be read as an image" in _error(tmp_path, path,
                                                                     ", resize: true")
    for image in (tmp_path / "images" / "dog").iterdir():
        image.unlink()
    assert "class folder 'dog' has no images" in _error(tmp_path, path, ", resize: true")
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.new("RGB", (4, 3)).save(flat / "a.png")
    assert "has no class subfolders" in _error(tmp_path, flat)
    monkeypatch.setitem(sys.modules, "PIL", None)  # as if Pillow were not installed
    assert "needs Pillow, an optional extra: " in _error(tmp_path, path)
    assert " -m pip install Pillow" in \
        _error(tmp_path, path)


def test_only_grey_or_rgb(tmp_path):
    path, _ = _folder(tmp_path)
    config = _config(path, channels=2)
    from convtrain.errors import DataError

    with pytest.raises(DataError, match="1 \\(grey\\) or 3 \\(RGB\\) channels"):
        load_datasets(config, need_val=False)


TRAIN = """name: folder-net
input: [3, 3, 4]
layers:
  - {{type: flatten}}
  - {{type: dense, units: 2}}
train: {{epochs: 1, batch_size: 2}}
data:
  train: {{format: folder, path: {train}}}
  val: {{format: folder, path: {val}}}
"""


def test_checkpoints_keep_the_class_names_and_eval_shows_them(tmp_path):
    from convtrain.run.checkpoint import read_checkpoint

    path, _ = _folder(tmp_path)
    config = tmp_path / "c.yaml"
    config.write_text(TRAIN.format(train=path, val=path))
    run = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", str(config), "--out", str(run), "--quiet"])
    assert result.exit_code == 0, result.output
    assert read_checkpoint(str(run / "checkpoint-last.npz"))[2]["classes"] == ["cat", "dog"]
    result = CliRunner().invoke(main, ["eval", str(config), "--checkpoint",
                                       str(run / "checkpoint-last.npz")])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[1].split()[:2] == ["class", "name"]
    assert lines[2].split()[:2] == ["0", "cat"] and lines[3].split()[:2] == ["1", "dog"]
    # data whose classes are others: its labels would mean other classes
    other, _ = _folder(tmp_path / "other", classes=("cat", "cow"))
    config.write_text(TRAIN.format(train=other, val=other))
    result = CliRunner().invoke(main, ["eval", str(config), "--checkpoint",
                                       str(run / "checkpoint-last.npz")])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert "trained on the classes cat, dog, but the config's data has cat, cow" in result.stderr


def test_a_validation_folder_with_other_classes_is_refused(tmp_path):
    path, _ = _folder(tmp_path)
    val, _ = _folder(tmp_path / "v", classes=("cat", "dog", "emu"))
    config = tmp_path / "c.yaml"
    config.write_text(TRAIN.format(train=path, val=val))
    result = CliRunner().invoke(main, ["train", str(config), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.output
    assert f"{val}: data.val: has the classes cat, dog, emu, but data.train has cat, dog" in (
        result.stderr)
    assert not (tmp_path / "run").exists()


def test_a_folder_is_decoded_once_and_again_only_when_its_files_change(tmp_path, monkeypatch):
    import os

    from convtrain.data import image_files
    path, content = _folder(tmp_path)
    first = load_datasets(_config(path), need_val=False)
    cache = os.path.join(path, ".convtrain-cache-3x3x4.npz")
    assert os.path.exists(cache)
    decoded = []
    real = image_files.read_image
    monkeypatch.setattr(image_files, "read_image",
                        lambda *args: decoded.append(args[0]) or real(*args))
    again = load_datasets(_config(path), need_val=False)
    assert decoded == []  # from the cache
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    # an image replaced (other size in bytes, or only touched), one added: decoded again
    pixels = np.full((3, 4, 3), 7, dtype=np.uint8)
    Image.fromarray(pixels, "RGB").save(os.path.join(path, "cat", "0.png"))
    x, _, _, _ = load_datasets(_config(path), need_val=False)
    assert len(decoded) == 4
    np.testing.assert_array_equal(x.stored[0], pixels.transpose(2, 0, 1))
    os.utime(os.path.join(path, "dog", "1.png"), ns=(1, 1))
    load_datasets(_config(path), need_val=False)
    assert len(decoded) == 8
    Image.fromarray(pixels, "RGB").save(os.path.join(path, "dog", "2.png"))
    x, y, _, _ = load_datasets(_config(path), need_val=False)
    assert len(decoded) == 8 + 5 and list(y) == [0, 0, 1, 1, 1]
    load_datasets(_config(path), need_val=False)
    assert len(decoded) == 13
    # another input size has a cache of its own; a damaged cache is rebuilt, not an error
    load_datasets(_config(path, channels=1), need_val=False)
    assert os.path.exists(os.path.join(path, ".convtrain-cache-1x3x4.npz"))
    with open(cache, "r+b") as handle:
        handle.truncate(100)
    x, y, _, _ = load_datasets(_config(path), need_val=False)
    assert len(decoded) == 13 + 5 + 5 and len(y) == 5


def test_a_folder_that_cannot_be_written_to_is_decoded_every_time(tmp_path, monkeypatch):
    import os

    import faults

    path, _ = _folder(tmp_path)
    faults.inject(monkeypatch, "EACCES", path)  # as for a read-only folder (root ignores chmod)
    for _ in range(2):
        x, y, _, _ = load_datasets(_config(path), need_val=False)
        assert len(y) == 4 and not [n for n in os.listdir(path) if n.startswith(".")]


def test_hidden_folders_are_no_classes_and_too_many_classes_are_named(tmp_path):
    path, _ = _folder(tmp_path)
    hidden = tmp_path / "images" / ".ipynb_checkpoints"
    hidden.mkdir()
    Image.new("RGB", (4, 3)).save(hidden / "0.png")
    x, y, _, _ = load_datasets(_config(path), need_val=False)
    assert list(y) == [0, 0, 1, 1] and len(x) == 4
    (tmp_path / "images" / "emu").mkdir()
    Image.new("RGB", (4, 3)).save(tmp_path / "images" / "emu" / "0.png")
    message = _error(tmp_path, path)
    assert "has 3 class folders (cat, dog, emu), but the network has 2 outputs" in message


def test_a_validation_folder_may_hold_the_first_classes_only(tmp_path):
    path, _ = _folder(tmp_path, classes=("cat", "dog", "emu"))
    val, _ = _folder(tmp_path / "v", classes=("cat", "dog"))
    config = tmp_path / "c.yaml"
    config.write_text(TRAIN.format(train=path, val=val).replace("units: 2", "units: 3"))
    result = CliRunner().invoke(main, ["train", str(config), "--out", str(tmp_path / "run"),
                                       "--quiet"])
    assert result.exit_code == 0, result.output


def test_images_of_more_than_8_bits_are_refused_not_clipped(tmp_path):
    path, _ = _folder(tmp_path)
    wide = (np.arange(12).reshape(3, 4) * 5000).astype(np.uint16)
    Image.fromarray(wide).save(tmp_path / "images" / "dog" / "9.png")
    message = _error(tmp_path, path)
    assert "9.png: data.train: is a 16-bit image (mode I;16)" in message
    assert "convtrain reads 8-bit images" in message


def test_an_image_copied_over_with_its_times_kept_is_decoded_again(tmp_path):
    import os
    import shutil

    path, _ = _folder(tmp_path)
    target = os.path.join(path, "cat", "7.bmp")  # BMPs of one size have one file size
    Image.fromarray(np.zeros((3, 4, 3), dtype=np.uint8), "RGB").save(target)
    load_datasets(_config(path), need_val=False)
    stat = os.stat(target)
    pixels = np.full((3, 4, 3), 99, dtype=np.uint8)
    Image.fromarray(pixels, "RGB").save(tmp_path / "new.bmp")
    assert os.path.getsize(tmp_path / "new.bmp") == stat.st_size
    shutil.copyfile(tmp_path / "new.bmp", target)
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # as cp -p, rsync -a, tar x
    x, _, _, _ = load_datasets(_config(path), need_val=False)
    np.testing.assert_array_equal(x.stored[2], pixels.transpose(2, 0, 1))  # cat: 0, 1, 7


def test_the_cache_file_is_readable_by_others_as_a_plain_file_is(tmp_path):
    import os
    import stat

    path, _ = _folder(tmp_path)
    old = os.umask(0o022)
    try:
        load_datasets(_config(path), need_val=False)
    finally:
        os.umask(old)
    mode = os.stat(os.path.join(path, ".convtrain-cache-3x3x4.npz")).st_mode
    assert stat.S_IMODE(mode) == 0o644
