"""format: cifar10, the binary distribution: from the .tar.gz as downloaded and from the
extracted folder, the same arrays; pixel order, labels, splits; per-channel mean and std;
broken files, each one line and exit 2."""

import io
import os
import tarfile

import numpy as np
import pytest
from click.testing import CliRunner

from convtrain.cli import main
from convtrain.spec.config import load_config
from convtrain.data.sources import load_datasets
from convtrain.data.image_files import CIFAR_FILES


def _records(count, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, size=count, dtype=np.uint8)
    pixels = rng.integers(0, 256, size=(count, 3, 32, 32), dtype=np.uint8)
    return labels, pixels, np.concatenate([labels[:, None], pixels.reshape(count, -1)], axis=1)


def _distribution(tmp_path, per_file=4):
    """The binary distribution's files, as a folder and as the .tar.gz; returns (tar path,
    folder path, {file name: (labels, pixels)})."""
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    content = {}
    for seed, name in enumerate(CIFAR_FILES["train"] + CIFAR_FILES["test"]):
        labels, pixels, raw = _records(per_file, seed)
        (folder / name).write_bytes(raw.tobytes())
        content[name] = (labels, pixels)
    archive = tmp_path / "cifar-10-binary.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-bin")
    return str(archive), str(tmp_path), content


def _config(path, split="train", extra=""):
    return load_config("cifar.yaml", text=(
        "input: [3, 32, 32]\nlayers:\n  - {type: flatten}\n  - {type: dense, units: 10}\n"
        f"data:\n  train: {{format: cifar10, path: {path}, split: {split}{extra}}}\n"))


def test_the_tar_and_the_folder_give_the_same_arrays_in_the_files_order(tmp_path):
    archive, folder, content = _distribution(tmp_path)
    x_tar, y_tar, _, _ = load_datasets(_config(archive), need_val=False)
    x_dir, y_dir, _, _ = load_datasets(_config(folder), need_val=False)
    np.testing.assert_array_equal(x_tar, x_dir)
    np.testing.assert_array_equal(y_tar, y_dir)
    labels = np.concatenate([content[name][0] for name in CIFAR_FILES["train"]])
    pixels = np.concatenate([content[name][1] for name in CIFAR_FILES["train"]])
    np.testing.assert_array_equal(y_tar, labels)
    np.testing.assert_array_equal(x_tar, pixels.astype(np.float32))  # R, G, B planes, rows
    x_test, y_test, _, _ = load_datasets(_config(archive, "test"), need_val=False)
    np.testing.assert_array_equal(y_test, content["test_batch.bin"][0])
    assert len(y_tar) == 20 and len(y_test) == 4


def test_the_test_split_as_its_own_validation_source(tmp_path):
    archive, _, content = _distribution(tmp_path)
    config = load_config("cifar.yaml", text=(
        "input: [3, 32, 32]\nlayers:\n  - {type: flatten}\n  - {type: dense, units: 10}\n"
        f"data:\n  train: {{format: cifar10, path: {archive}, split: train}}\n"
        f"  val: {{format: cifar10, path: {archive}, split: test}}\n"))
    _, y, _, val_y = load_datasets(config)
    assert len(y) == 20
    np.testing.assert_array_equal(val_y, content["test_batch.bin"][0])


def test_mean_and_std_normalise_each_channel_after_scale(tmp_path):
    archive, _, content = _distribution(tmp_path)
    config = _config(archive, extra=", scale: 255, mean: [0.4914, 0.4822, 0.4465], "
                                   "std: [0.2470, 0.2435, 0.2616]")
    x, _, _, _ = load_datasets(config, need_val=False)
    pixels = content["data_batch_1.bin"][1].astype(np.float32) / np.float32(255)
    mean = np.array([0.4914, 0.4822, 0.4465], np.float32)[:, None, None]
    std = np.array([0.2470, 0.2435, 0.2616], np.float32)[:, None, None]
    np.testing.assert_allclose(x[:4], (pixels - mean) / std, rtol=1e-6)


def test_images_stay_bytes_until_a_batch_is_made_and_a_batch_equals_the_whole_set(tmp_path):
    archive, _, content = _distribution(tmp_path, per_file=50)
    config = _config(archive, extra=", scale: 255, mean: [0.4914, 0.4822, 0.4465], "
                                   "std: [0.2470, 0.2435, 0.2616]")
    x, _, _, _ = load_datasets(config, need_val=False)
    assert x.stored.dtype == np.uint8 and x.stored.nbytes == 250 * 3 * 32 * 32
    assert x.dtype == np.float32 and x.shape == (250, 3, 32, 32)
    whole = np.asarray(x)
    index = np.array([249, 3, 3, 120])
    assert x[index].dtype == np.float32
    np.testing.assert_array_equal(x[index], whole[index])  # to the last bit
    np.testing.assert_array_equal(x[7], whole[7])
    np.testing.assert_array_equal(x[-1], whole[-1])
    np.testing.assert_array_equal(x[10:20], whole[10:20])


def _error(path, config_text_extra="", split="train", tmp_path=None):
    config = tmp_path / "c.yaml"
    config.write_text("input: [3, 32, 32]\nlayers:\n  - {type: flatten}\n"
                      "  - {type: dense, units: 10}\n"
                      f"data:\n  train: {{format: cifar10, path: {path}, split: {split}"
                      f"{config_text_extra}}}\n")
    result = CliRunner().invoke(main, ["train", str(config), "--smoke"])
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    return result.stderr


def test_broken_distributions_are_one_line(tmp_path):
    archive, folder, _ = _distribution(tmp_path)
    batch = os.path.join(folder, "cifar-10-batches-bin", "data_batch_3.bin")
    with open(batch, "ab") as handle:
        handle.write(b"\x00" * 10)
    message = _error(folder, tmp_path=tmp_path)
    assert "data_batch_3.bin" in message and "not a whole number of CIFAR-10 records" in message
    os.truncate(batch, 2 * 3073)
    raw = bytearray(open(batch, "rb").read())
    raw[3073] = 12
    open(batch, "wb").write(bytes(raw))
    assert "record 1 has label 12" in _error(folder, tmp_path=tmp_path)
    empty = tmp_path / "empty.tar.gz"
    with tarfile.open(empty, "w:gz") as tar:
        info = tarfile.TarInfo("readme.txt")
        tar.addfile(info, io.BytesIO(b""))
    assert "has no data_batch_1.bin" in _error(empty, tmp_path=tmp_path)
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(open(archive, "rb").read()[:-500])
    assert "ends too soon: a download cut short?" in _error(cut, tmp_path=tmp_path)
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not a tar at all")
    assert "is not a .tar.gz or a folder: give cifar-10-binary.tar.gz as downloaded" in \
        _error(junk, tmp_path=tmp_path)
    one = os.path.join(folder, "cifar-10-batches-bin", "data_batch_1.bin")
    assert "is one file of the CIFAR-10 binary distribution: give the folder that holds " \
           "them all" in _error(one, tmp_path=tmp_path)


@pytest.mark.parametrize("extra,words", [
    (", mean: [0.5, 0.5]", ["data.train.mean", "3 numbers, one per input channel"]),
    (", std: [0.2, 0, 0.2]", ["data.train.std", "greater than 0"]),
    (", split: validation", ["data.train.split", "choose one of: train, test"]),
    (", augmnt: {flip: true}", ["did you mean 'augment'?", "known keys here: augment, "]),
])
def test_bad_normalisation_and_split_are_config_errors(tmp_path, extra, words):
    archive, _, _ = _distribution(tmp_path)
    config = tmp_path / "c.yaml"
    text = ("input: [3, 32, 32]\nlayers:\n  - {type: flatten}\n  - {type: dense, units: 10}\n"
            f"data:\n  train: {{format: cifar10, path: {archive}{extra}}}\n")
    config.write_text(text.replace(", split: validation}", ", split: validation}"))
    result = CliRunner().invoke(main, ["summary", str(config)])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert all(word in result.stderr for word in words), result.stderr


def test_an_input_that_is_not_cifars_shape_is_named_before_mean_and_std(tmp_path):
    archive, _, _ = _distribution(tmp_path)
    config = tmp_path / "c.yaml"
    config.write_text("input: [1, 32, 32]\nlayers:\n  - {type: flatten}\n"
                      "  - {type: dense, units: 10}\n"
                      f"data:\n  train: {{format: cifar10, path: {archive}, "
                      f"mean: [0.5, 0.5, 0.5], std: [0.2, 0.2, 0.2]}}\n")
    result = CliRunner().invoke(main, ["summary", str(config)])
    assert result.exit_code == 2 and result.stderr == (
        f"error: {config}:1: input: is [1, 32, 32], but data.train is CIFAR-10, whose images "
        f"are [3, 32, 32] (R, G, B, 32x32)\n")
