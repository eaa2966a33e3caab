"""The one-line messages a user meets when a checkpoint does not fit: which difference
between the checkpoint's network and the config's comes first, and how many there are."""

import os

import numpy as np
import pytest
from click.testing import CliRunner

from convtrain.spec.architecture import describe_architecture
from convtrain.run.checkpoint import load_into
from convtrain.cli import main
from convtrain.spec.config import load_config
from convtrain.errors import UserError
from convtrain.layers import walk
from nets import small_cnn

SMALL = small_cnn("small", epochs=1, batch_size=16, limit=64, val_split=None, optimizer=None)
CONV = "  - {type: conv2d, filters: 4, kernel: 3, padding: same}\n"


def _checkpoint(config):
    """What `read_checkpoint` returns for a checkpoint `convtrain train` wrote for config
    (the meta entries that describe the network, as `Trainer.meta` writes them): every
    layer's parameters and buffers, those inside residual blocks too."""
    params = {f"{spec.name}.{key}": np.zeros(shape, dtype=config.dtype)
              for spec in walk(config.layers)
              for key, shape in {**spec.param_shapes(), **spec.buffer_shapes()}.items()}
    meta = {"fingerprint": config.architecture_fingerprint(),
            "architecture": describe_architecture(config)}
    return params, {}, meta


@pytest.fixture
def small(write_config):
    return write_config(SMALL, "small.yaml")


def _mismatch(small, text=None, overrides=()):
    """The message `load_into` gives for a checkpoint of SMALL and a config of `text`
    (SMALL if None) with `overrides`, without its `error: FILE: ` head."""
    other = small if text is None else os.path.join(os.path.dirname(small), "other.yaml")
    if text is not None:
        with open(other, "w") as handle:
            handle.write(text)
    config = load_config(other, overrides)
    with pytest.raises(UserError) as caught:
        load_into(_checkpoint(load_config(small)), "ck.npz", config, network=None)
    message = caught.value.message
    head = f"checkpoint is of another architecture than {other}: "
    assert message.startswith(head), message
    hint = f"`convtrain summary {other}` lists the config's layers)"
    assert message.endswith(hint), message
    return message[len(head):-len(hint)]


def test_a_parameter_of_another_shape_is_named_with_both_shapes(small):
    assert _mismatch(small, overrides=["layers.0.filters=5"]) == (
        "layer conv1's weight is [4, 1, 3, 3] in the checkpoint and [5, 1, 3, 3] in the config "
        "(first of 3 differences; ")


def test_a_layer_in_the_config_only_is_named(small):
    text = SMALL.replace(CONV, CONV + "  - {type: relu}\n" + CONV)
    assert _mismatch(small, text) == (
        "the config's layer relu2 (relu) is not in the checkpoint (first of 3 differences; ")


def test_a_layer_in_the_checkpoint_only_is_named(small):
    assert _mismatch(small, SMALL.replace("  - {type: relu}\n", "")) == (
        "the checkpoint's layer number 2 (relu) is not in the config (first of 2 differences; ")
    # Layers with parameters are matched by name: dense5 is in both.
    text = SMALL.replace("  - {type: dense, units: 10}\n", "  - {type: dense, units: 64}\n"
                                                           "  - {type: dense, units: 10}\n")
    assert _mismatch(small, text).startswith(
        "layer dense5's weight is [10, 64] in the checkpoint and [64, 64] in the config")


def test_another_dtype_and_another_input_come_first(small):
    assert _mismatch(small, overrides=["dtype=float64"]) == (
        "the dtype is float32 in the checkpoint and float64 in the config (")
    # Every later shape follows from the input; only the parameters it changes count too.
    assert _mismatch(small, overrides=["input=[1, 10, 10]"]) == (
        "the input is [1, 8, 8] in the checkpoint and [1, 10, 10] in the config "
        "(first of 2 differences; ")


def test_parameter_free_layers_that_differ_are_named(small):
    assert _mismatch(small, SMALL.replace("{type: relu}", "{type: tanh}")) == (
        "layer tanh2 is a relu in the checkpoint and a tanh in the config (")
    assert _mismatch(small, SMALL.replace("{type: maxpool, size: 2}",
                                          "{type: maxpool, size: 2, stride: 1}")) == (
        "layer maxpool3's output is [4, 4, 4] in the checkpoint and [4, 7, 7] in the config "
        "from the same input [4, 8, 8] (first of 2 differences; ")


def test_a_fingerprint_mismatch_with_nothing_else_different_still_says_what_it_can(small):
    message = _mismatch(small, overrides=["layers.1.name=act"])
    assert "fingerprint" in message and "names of parameter-free layers" in message
    assert message.endswith("was one renamed? (")


def test_a_checkpoint_missing_a_parameter_its_fingerprint_promises(small):
    params, opt, meta = _checkpoint(load_config(small))
    del params["conv1.bias"]
    with pytest.raises(UserError) as caught:
        load_into((params, opt, meta), "ck.npz", load_config(small), network=None)
    assert ": layer conv1 has a bias in the config and none in the checkpoint (" in (
        caught.value.message)


def test_skip_lets_the_named_layers_differ_or_be_missing(small, write_config):
    from convtrain.spec.architecture import architecture_mismatch

    checkpoint = _checkpoint(load_config(small))
    assert architecture_mismatch(checkpoint, load_config(small)) is None
    head = load_config(small, ["layers.4.units=3"])
    assert architecture_mismatch(checkpoint, head, skip=["dense5"]) is None
    assert architecture_mismatch(checkpoint, head).startswith(
        "layer dense5's weight is [10, 64] in the checkpoint and [3, 64] in the config")
    wider = load_config(small, ["layers.0.filters=5"])
    assert architecture_mismatch(checkpoint, wider, skip=["conv1"]).startswith(
        "layer dense5's weight is [10, 64] in the checkpoint and [10, 80] in the config (`")
    assert architecture_mismatch(checkpoint, wider, skip=["conv1", "dense5"]) is None
    grown = load_config(write_config(SMALL.replace("units: 10", "units: 10, name: out")
                                     .replace(CONV, CONV + CONV), "grown.yaml"))
    assert architecture_mismatch(checkpoint, grown, skip=["conv2", "dense5", "out"]) is None


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    config = folder / "small.yaml"
    config.write_text(SMALL)
    result = CliRunner().invoke(main, ["train", str(config), "--out", str(folder / "run"),
                                       "--max-steps", "1", "--quiet"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return str(config), str(folder / "run" / "checkpoint-last.npz")


@pytest.mark.parametrize("command", ["eval", "train"])
def test_resume_and_eval_name_the_first_difference_in_one_line(trained, command, tmp_path):
    config, checkpoint = trained
    flag = ["--checkpoint", checkpoint] if command == "eval" else [
        "--resume", checkpoint, "--out", str(tmp_path / "new")]
    result = CliRunner().invoke(main, [command, config, "--set", "layers.0.filters=8", *flag])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr.splitlines() == [
        f"error: {checkpoint}: checkpoint is of another architecture than {config}: layer "
        f"conv1's weight is [4, 1, 3, 3] in the checkpoint and [8, 1, 3, 3] in the config "
        f"(first of 3 differences; `convtrain summary {config}` lists the config's layers)"]


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return path


def _meta(text):
    return np.frombuffer(text.encode(), dtype=np.uint8)


NOT_CHECKPOINTS = {
    "objects.npz": (lambda p: _npz(p, a=np.array([{"lr": 0.1}], dtype=object)),
                    "a .npz whose array \"a\" holds Python objects (pickled)"),
    "array.npy": (lambda p: np.save(p, np.zeros(3)), "a single NumPy array (.npy)"),
    "notes.txt": (lambda p: p.write_text("epoch 3: loss 0.1\n"), "a text file"),
    "empty.npz": (lambda p: p.write_bytes(b""), "an empty file"),
    "model.pkl": (lambda p: p.write_bytes(__import__("pickle").dumps({"w": [1.0]})),
                  "a Python pickle"),
    "data.npz": (lambda p: _npz(p, x=np.zeros((2, 3)), y=np.zeros(2)),
                 "a .npz without convtrain's \"meta\" entry (arrays: x, y)"),
    "bad-meta.npz": (lambda p: _npz(p, meta=_meta("{not json")),
                     "a .npz whose \"meta\" entry is not convtrain's"),
    "old-meta.npz": (lambda p: _npz(p, meta=_meta('{"epochs_done": 1}')),
                     "a .npz whose \"meta\" entry is not convtrain's"),
    "archive.zip": (lambda p: __import__("zipfile").ZipFile(p, "w").writestr("data.pkl", "x"),
                    "a zip archive of files that are not NumPy arrays (data.pkl)"),
}


@pytest.mark.parametrize("name", NOT_CHECKPOINTS)
def test_a_file_that_is_not_a_checkpoint_is_named_for_what_it_is(trained, name, tmp_path):
    make, what = NOT_CHECKPOINTS[name]
    path = tmp_path / name
    make(path)
    config, _ = trained
    result = CliRunner().invoke(main, ["eval", config, "--checkpoint", str(path)])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert result.stderr.splitlines() == [
        f"error: {path}: not a convtrain checkpoint but {what}; expected a checkpoint-*.npz "
        f"written by `convtrain train`"]
    for numpy_advice in ("pickle=", "pickle.load", "unsafe", "Object arrays"):
        assert numpy_advice not in result.stderr


def test_resume_from_a_truncated_checkpoint_says_so(trained, tmp_path):
    config, checkpoint = trained
    cut = tmp_path / "checkpoint-last.npz"
    with open(checkpoint, "rb") as handle:
        cut.write_bytes(handle.read()[:3000])
    result = CliRunner().invoke(main, ["train", config, "--resume", str(cut)])
    assert result.exit_code == 2 and result.stderr.splitlines() == [
        f"error: {cut}: not a convtrain checkpoint but a damaged or truncated .npz; expected "
        f"a checkpoint-*.npz written by `convtrain train`"]


def test_a_checkpoint_whose_parameters_are_not_its_recorded_layers_is_damaged(trained, tmp_path):
    config, checkpoint = trained
    with np.load(checkpoint) as archive:
        arrays = {k: archive[k] for k in archive.files if not k.startswith("param/conv1.")}
    edited = _npz(tmp_path / "edited.npz", **arrays)
    result = CliRunner().invoke(main, ["eval", config, "--checkpoint", str(edited)])
    assert result.exit_code == 2 and result.stderr.splitlines() == [
        f"error: {edited}: damaged checkpoint: its parameters are not those of the layers its "
        f"meta \"architecture\" lists"]


@pytest.mark.parametrize("name", sorted(os.listdir(os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs"))))
def test_every_shipped_config_matches_a_checkpoint_of_itself(repo_root, name):
    from convtrain.spec.architecture import architecture_mismatch

    config = load_config(os.path.join(repo_root, "configs", name))
    assert architecture_mismatch(_checkpoint(config), config) is None


def test_a_checkpoint_that_records_its_layer_names_is_compared_name_by_name(small,
                                                                              write_config,
                                                                              tmp_path):
    """Checkpoints written by `train` record every layer's name (layer_names), so the first
    difference is named even where a parameter-free layer stands."""
    out = tmp_path / "run"
    assert CliRunner().invoke(main, ["train", small, "--out", str(out), "--quiet"]
                              ).exit_code == 0
    other = write_config(SMALL.replace("  - {type: maxpool, size: 2}\n",
                                       "  - {type: avgpool, size: 2}\n"), "other.yaml")
    result = CliRunner().invoke(main, ["eval", other, "--checkpoint",
                                       str(out / "checkpoint-last.npz")])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert ("where the config has layer avgpool3 (avgpool), the checkpoint has maxpool3 "
            "(maxpool)") in result.stderr


def test_a_run_folder_given_as_checkpoint_names_the_files_in_it(small, tmp_path):
    run = tmp_path / "run"
    assert CliRunner().invoke(main, ["train", small, "--out", str(run), "--quiet"]).exit_code == 0
    for args in (["eval", small, "--checkpoint", str(run)],
                 ["train", small, "--resume", str(run)]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 2 and result.stderr == (
            f"error: {run}: is a folder, not a checkpoint: give a file in it "
            f"(checkpoint-best.npz or checkpoint-last.npz)\n")
