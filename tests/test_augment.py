"""augment: {pad_crop, flip} on the train source: the kernel against NumPy for given draws;
training with it is bit-identical across thread counts and --resume; val refuses it."""

import json

import numpy as np
from click.testing import CliRunner

from convtrain.run.checkpoint import read_checkpoint
from convtrain.cli import main
from convtrain.kernels.augment import crop_flip


def test_crop_and_flip_are_exactly_the_shifted_and_flipped_images():
    rng = np.random.default_rng(0)
    x = rng.integers(1, 256, size=(4, 2, 5, 6), dtype=np.uint8)  # as stored: 0 is black
    rows, cols = np.array([0, 2, 1, 4]), np.array([4, 0, 2, 1])
    flips = np.array([False, True, True, False])
    out = np.empty_like(x)
    crop_flip(x, rows, cols, flips, 2, out)
    for n in range(4):
        padded = np.pad(x[n], ((0, 0), (2, 2), (2, 2)))
        crop = padded[:, rows[n]:rows[n] + 5, cols[n]:cols[n] + 6]
        np.testing.assert_array_equal(out[n], crop[:, :, ::-1] if flips[n] else crop)
    assert np.all(out[0, :, :2, :] == 0)  # rows 0 and 1 come from the padding
    assert np.all(out[0, :, 2:, :2] != 0)  # a shift of two columns left: none from it


def test_an_augmented_batch_is_normalised_after_cropping_so_the_padding_is_black():
    from convtrain.data.augment import EpochAugmentation
    from convtrain.spec.data_spec import AugmentSpec
    from convtrain.data.stored_images import StoredImages

    stored = np.full((3, 3, 4, 4), 200, dtype=np.uint8)
    images = StoredImages(stored, np.float32, 255, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
    draws = EpochAugmentation(AugmentSpec(pad_crop=1, flip=True), seed=0, epoch=1, count=3)
    draws.rows[:], draws.cols[:], draws.flips[:] = 0, 1, False  # one row of padding on top
    batch = draws.batch(images, np.arange(3))
    assert batch.dtype == np.float32
    black = images.normalised(np.zeros((1, 3, 1, 1), np.uint8))[0, :, 0, 0]
    np.testing.assert_array_equal(batch[:, :, 0, :], np.broadcast_to(black[:, None], (3, 3, 4)))
    np.testing.assert_array_equal(batch[:, :, 1:, :], images[0:3][:, :, 1:, :])
    np.testing.assert_allclose(black, [-2.5, -1.6, -1.0], rtol=1e-6)


CONFIG = """name: augmented
seed: 3
input: [1, 8, 8]
layers:
  - {type: conv2d, filters: 4, kernel: 3, padding: same}
  - {type: relu}
  - {type: maxpool, size: 2}
  - {type: flatten}
  - {type: dense, units: 10}
optimizer: {type: sgd, lr: 0.1, momentum: 0.9}
train: {epochs: 2, batch_size: 32}
data:
  train: {format: builtin, name: digits, scale: 16, limit: 400, mean: 0.3, std: 0.4,
          augment: {pad_crop: 2, flip: true}}
  val: {split: 0.2}
"""


def _run(args):
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def _epochs(folder):
    with open(folder / "metrics.jsonl") as handle:
        return [(r["train_loss"], r["val_acc"]) for r in map(json.loads, handle)
                if r["event"] == "epoch"]


def test_augmented_training_is_bit_identical_across_threads_and_resume(write_config, tmp_path):
    config = write_config(CONFIG)
    plain = write_config(CONFIG.replace(",\n          augment: {pad_crop: 2, flip: true}", ""),
                         "plain.yaml")
    for name, args in (("t1", ["--threads", "1"]), ("t2", ["--threads", "2"]),
                       ("cut", ["--max-steps", "13"])):
        _run(["train", config, "--out", str(tmp_path / name), "--quiet", *args])
    _run(["train", config, "--resume", str(tmp_path / "cut" / "checkpoint-last.npz"),
          "--quiet"])
    _run(["train", plain, "--out", str(tmp_path / "plain"), "--quiet"])
    weights = {name: read_checkpoint(str(tmp_path / name / "checkpoint-last.npz"))[0]
               for name in ("t1", "t2", "cut", "plain")}
    for name in ("t2", "cut"):
        assert all(np.array_equal(weights["t1"][k], weights[name][k]) for k in weights["t1"])
    assert _epochs(tmp_path / "t1") == _epochs(tmp_path / "t2") == _epochs(tmp_path / "cut")
    # and augmentation did something
    assert not np.array_equal(weights["t1"]["conv1.weight"], weights["plain"]["conv1.weight"])


def test_augment_on_a_validation_source_is_refused(write_config):
    config = write_config(CONFIG.replace("  val: {split: 0.2}\n",
                                         "  val: {format: builtin, name: digits, scale: 16, "
                                         "augment: {flip: true}}\n"))
    result = CliRunner().invoke(main, ["summary", config])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert "data.val.augment" in result.stderr and "put it in data.train" in result.stderr
