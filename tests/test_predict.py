"""`convtrain predict`: class names for a folder of images whose class is plain to see; on
'-' the same accuracy as `eval`, exactly; .npy stacks; batches, not one call per input;
text, JSON and CSV; bad input one line naming the file."""

import csv
import io
import json
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from nets import train_into
from PIL import Image

from convtrain.cli import main

COLOURS = {"blue": (20, 40, 220), "red": (220, 30, 20)}

CONFIG = """name: colours
seed: 1
input: [3, 8, 8]
layers:
  - {{type: conv2d, filters: 4, kernel: 3, padding: 1}}
  - {{type: relu}}
  - {{type: globalavgpool}}
  - {{type: dense, units: 2}}
optimizer: {{type: sgd, lr: 0.2, momentum: 0.9}}
train: {{epochs: 4, batch_size: 8}}
data:
  train: {{format: folder, path: {path}, scale: 255, mean: [0.5, 0.5, 0.5], std: [0.3, 0.3, 0.3]}}
"""


def _images(folder, count, seed, classes=True):
    """count noisy 8x8 images of each colour, in class folders or all in one folder."""
    rng = np.random.default_rng(seed)
    written = {}
    for name, colour in COLOURS.items():
        target = folder / name if classes else folder
        target.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            noise = rng.integers(-20, 20, size=(8, 8, 3))
            pixels = np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)
            path = target / f"{name}-{i}.png"
            Image.fromarray(pixels, "RGB").save(path)
            written[str(path)] = name
    return written


@pytest.fixture(scope="module")
def colours(tmp_path_factory):
    """(config path, checkpoint path, folder) of a network trained on red and blue images."""
    folder = tmp_path_factory.mktemp("colours")
    _images(folder / "train", 12, seed=0)
    (folder / "c.yaml").write_text(CONFIG.format(path=folder / "train"))
    result = CliRunner().invoke(main, ["train", str(folder / "c.yaml"), "--out",
                                       str(folder / "run"), "--quiet"])
    assert result.exit_code == 0, result.output
    return str(folder / "c.yaml"), str(folder / "run" / "checkpoint-last.npz"), folder


def _predict(*args):
    return CliRunner().invoke(main, ["predict", *args])


def test_a_folder_of_new_images_gets_the_right_class_names(colours, tmp_path):
    config, checkpoint, _ = colours
    truth = _images(tmp_path / "new", 5, seed=7, classes=False)
    result = _predict(config, "--checkpoint", checkpoint, str(tmp_path / "new"), "--top", "2")
    assert result.exit_code == 0, result.output
    rows = result.stdout.splitlines()
    assert len(rows) == 10
    for row in rows:
        path, best, p, second, _ = row.split()
        assert best == truth[path] + ":" and second != best and float(p) > 0.5
    result = _predict(config, "--checkpoint", checkpoint, str(tmp_path / "new"), "--format",
                      "json")
    records = json.loads(result.stdout)["predictions"]
    assert [r["input"] for r in records] == sorted(truth)
    assert all(r["top"][0]["name"] == truth[r["input"]] and len(r["scores"]) == 2
               and r["top"][0]["class"] == ["blue", "red"].index(r["top"][0]["name"])
               for r in records)
    assert all(abs(sum(np.exp(r["scores"]) / np.sum(np.exp(r["scores"]))) - 1) < 1e-6
               for r in records)
    result = _predict(config, "--checkpoint", checkpoint, str(tmp_path / "new"), "--format",
                      "csv", "--top", "2")
    table = list(csv.reader(io.StringIO(result.stdout)))
    assert table[0] == ["input", "class_1", "name_1", "p_1", "class_2", "name_2", "p_2"]
    assert {row[0]: row[2] for row in table[1:]} == truth


DIGITS = """name: digits-predict
input: [1, 8, 8]
layers:
  - {type: conv2d, filters: 4, kernel: 3, padding: same}
  - {type: batchnorm}
  - {type: relu}
  - {type: maxpool, size: 2}
  - {type: flatten}
  - {type: dropout, rate: 0.3}
  - {type: dense, units: 10}
train: {epochs: 2, batch_size: 32}
data:
  train: {format: builtin, name: digits, scale: 16, limit: 500}
  val: {split: 0.3}
"""


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return train_into(tmp_path_factory.mktemp("digits"), DIGITS, "d.yaml")


def test_predict_on_the_validation_data_gives_evals_accuracy_exactly(digits):
    config, checkpoint = digits
    evaluated = json.loads(CliRunner().invoke(main, ["eval", config, "--checkpoint", checkpoint,
                                                     "--format", "json"]).stdout)
    result = _predict(config, "--checkpoint", checkpoint, "-", "--format", "json")
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)["predictions"]
    assert len(records) == evaluated["samples"] == 150
    correct = sum(r["top"][0]["class"] == r["label"] for r in records)
    assert correct / len(records) == evaluated["accuracy"]
    train = json.loads(_predict(config, "--checkpoint", checkpoint, "-", "--split", "train",
                                "--format", "json").stdout)["predictions"]
    assert len(train) == 350


def test_npy_stacks_in_batches_not_one_call_per_input(digits, tmp_path, monkeypatch):
    from convtrain.data.sources import read_builtin
    from convtrain.model.network import Network

    config, checkpoint = digits
    pixels = read_builtin("digits")[0]
    np.save(tmp_path / "many.npy", np.concatenate([pixels] * 3)[:600])  # (600, 8, 8) uint8
    np.save(tmp_path / "one.npy", pixels[0].astype(np.float64))         # (8, 8), one sample
    calls = []
    real = Network.forward
    monkeypatch.setattr(Network, "forward",
                        lambda self, x, training=False: calls.append(len(x)) or real(self, x))
    result = _predict(config, "--checkpoint", checkpoint, str(tmp_path / "many.npy"),
                      str(tmp_path / "one.npy"), "--format", "json", "--batch", "256")
    assert result.exit_code == 0, result.output
    assert calls == [256, 256, 89]
    records = json.loads(result.stdout)["predictions"]
    assert records[0]["input"] == f"{tmp_path / 'many.npy'}[0]"
    assert records[-1]["input"] == str(tmp_path / "one.npy")
    # the same digit, stored as bytes or as floats (in batches of other sizes: BLAS may
    # round differently)
    np.testing.assert_allclose(records[0]["scores"], records[-1]["scores"], rtol=1e-5)


@pytest.mark.parametrize("case", ["architecture", "shape", "size", "channels", "unreadable",
                                  "dtype", "rank", "top", "missing", "mixed", "pillow", "empty",
                                  "not-npy", "channels-last", "split", "gif"])
def test_bad_input_is_one_line_naming_the_file(case, colours, digits, tmp_path, monkeypatch):
    config, checkpoint, folder = colours
    image = tmp_path / "x.png"
    Image.new("RGB", (8, 8), (200, 0, 0)).save(image)
    args, words = [str(image)], []
    if case == "architecture":
        config, words = digits[0], ["checkpoint is of another architecture", checkpoint]
    elif case == "shape":
        np.save(tmp_path / "x.npy", np.zeros((2, 3, 8, 9)))
        args, words = [str(tmp_path / "x.npy")], ["x.npy", "has shape [2, 3, 8, 9], but input "
                                                            "is [3, 8, 8]"]
    elif case == "size":
        Image.new("RGB", (9, 8)).save(image)
        words = ["x.png", "is 9 pixels wide and 8 high", "--resize"]
    elif case == "channels":
        np.save(tmp_path / "x.npy", np.zeros((1, 8, 8)))
        args, words = [str(tmp_path / "x.npy")], ["x.npy", "has shape [1, 8, 8]"]
    elif case == "unreadable":
        image.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
        words = ["x.png", "cannot be read as an image"]
    elif case == "dtype":
        np.save(tmp_path / "x.npy", np.zeros((3, 8, 8), dtype=np.complex64))
        args, words = [str(tmp_path / "x.npy")], ["x.npy", "holds complex64, not numbers"]
    elif case == "rank":
        np.save(tmp_path / "x.npy", np.zeros((1, 1, 3, 8, 8)))
        args, words = [str(tmp_path / "x.npy")], ["x.npy", "has shape [1, 1, 3, 8, 8]"]
    elif case == "top":
        args, words = args + ["--top", "3"], ["--top: 3 is more than the network's 2 "
                                              "classes: at most 2"]
    elif case == "missing":
        args, words = [str(tmp_path / "nothere.png")], ["nothere.png", "no such file"]
    elif case == "mixed":
        args, words = ["-", str(image)], ["INPUT: '-' (a data source of the config) is an "
                                          "INPUT of its own"]
    elif case == "empty":
        np.save(tmp_path / "x.npy", np.zeros((0, 3, 8, 8)))
        args, words = [str(tmp_path / "x.npy")], ["x.npy", "holds no samples"]
    elif case == "not-npy":
        (tmp_path / "x.npy").write_bytes(image.read_bytes())
        args, words = [str(tmp_path / "x.npy")], ["x.npy", "is not a .npy array: it is an "
                                                            "image under a .npy name"]
    elif case == "channels-last":
        np.save(tmp_path / "x.npy", np.zeros((5, 8, 8, 3)))
        args, words = [str(tmp_path / "x.npy")], ["x.npy", "np.moveaxis(a, -1, -3)"]
    elif case == "split":
        args, words = args + ["--split", "train"], ["--split: --split chooses the data source"]
    elif case == "gif":
        Image.new("RGB", (8, 8)).save(tmp_path / "x.gif")
        args, words = [str(tmp_path / "x.gif")], ["x.gif", "give PNG, JPEG or BMP images"]
    elif case == "pillow":
        monkeypatch.setitem(sys.modules, "PIL", None)  # as if the extra were not installed
        words = ["x.png", "reading images needs Pillow, an optional extra: ",
                 " -m pip install Pillow"]
    result = _predict(config, "--checkpoint", checkpoint, *args)
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    for word in words:
        assert word in result.stderr, result.stderr


def test_a_checkpoint_trained_with_other_preparation_is_refused(colours, tmp_path):
    config, checkpoint, folder = colours
    other = tmp_path / "other.yaml"
    other.write_text(open(config).read().replace("std: [0.3, 0.3, 0.3]", "std: [0.2, 0.2, 0.2]"))
    image = tmp_path / "x.png"
    Image.new("RGB", (8, 8), (200, 0, 0)).save(image)
    for args in (["predict", str(other), "--checkpoint", checkpoint, str(image)],
                 ["eval", str(other), "--checkpoint", checkpoint],
                 ["export", str(other), "--checkpoint", checkpoint, "--out",
                  str(tmp_path / "m.onnx")]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.output
        assert "trained with other input preparation or loss (std [0.3, 0.3, 0.3] there, " \
               "[0.2, 0.2, 0.2] here): give the config it was trained with" in result.stderr
    assert not (tmp_path / "m.onnx").exists()


def test_labels_of_named_classes_are_named_and_hidden_files_are_skipped(colours, tmp_path):
    config, checkpoint, folder = colours
    result = _predict(config, "--checkpoint", checkpoint, "-")
    assert result.exit_code == 0, result.output
    assert all(row.endswith(("(label blue)", "(label red)")) for row in result.stdout.splitlines())
    records = json.loads(_predict(config, "--checkpoint", checkpoint, "-", "--format",
                                  "json").stdout)["predictions"]
    assert {r["label_name"] for r in records} == {"blue", "red"}
    truth = _images(tmp_path / "new", 1, seed=3, classes=False)
    (tmp_path / "new" / ".ipynb_checkpoints").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "new" / ".ipynb_checkpoints" / "a.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "new" / ".hidden.png")
    result = _predict(config, "--checkpoint", checkpoint, str(tmp_path / "new"))
    assert [row.split()[0] for row in result.stdout.splitlines()] == sorted(truth)


def test_classes_are_ranked_by_score_as_evals_argmax_ranks_them():
    from convtrain.use.predict import top_classes

    # -90 and the float32 just above it: far below the best, their softmax rounds to one
    # (subnormal) probability, yet the second is the larger score
    close = np.nextafter(np.float32(-90.0), np.float32(0.0))
    scores = np.array([[10.0, -90.0, close], [1.0, 1.0, 0.0]], dtype=np.float32)
    shifted = np.exp(scores[0] - scores[0].max())
    assert (shifted / shifted.sum())[1] == (shifted / shifted.sum())[2]
    rows = top_classes(scores, 3)
    assert [entry["class"] for entry in rows[0]] == [0, 2, 1]
    assert [entry["class"] for entry in rows[1]][:2] == [0, 1]  # a tie: the lower class first


def test_a_wrong_checkpoint_is_named_before_any_input_is_read(colours, digits, tmp_path):
    config, checkpoint, _ = colours
    result = _predict(digits[0], "--checkpoint", checkpoint, str(tmp_path / "missing.png"))
    assert result.exit_code == 2 and "checkpoint is of another architecture" in result.stderr
