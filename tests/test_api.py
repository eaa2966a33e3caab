"""The Python API (convtrain.api, the package's face): train, evaluate, predict, trace and
export from Python, in this process, printing nothing; bad input is convtrain.UserError
with the command line's one line."""

import json
import os

import pytest

import convtrain
from nets import small_cnn


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("api")
    (folder / "net.yaml").write_text(small_cnn("api", epochs=2, log_every=5))
    cfg = convtrain.load_config(str(folder / "net.yaml"), overrides=["optimizer.lr=0.05"])
    return cfg, convtrain.train(cfg, out=str(folder / "run")), folder


def test_train_writes_a_run_folder_and_returns_the_best_epoch(trained):
    cfg, run, folder = trained
    assert run["folder"] == str(folder / "run")
    assert {"config.yaml", "metrics.jsonl", "checkpoint-last.npz", "checkpoint-best.npz"} <= \
        set(os.listdir(run["folder"]))
    epochs = [json.loads(line) for line in open(folder / "run" / "metrics.jsonl")
              if '"epoch"' in line and '"event": "epoch"' in line]
    assert run["best"]["epoch"] in (1, 2) and len(epochs) == 2
    assert run["best"]["val_acc"] == max(e["val_acc"] for e in epochs)


def test_evaluate_predict_trace_and_gradcheck_from_python(trained, capsys):
    cfg, run, folder = trained
    best = os.path.join(run["folder"], "checkpoint-best.npz")
    results = convtrain.evaluate(cfg, checkpoint=best)
    assert results["data"] == "val" and results["accuracy"] == run["best"]["val_acc"]
    records = convtrain.predict(cfg, checkpoint=best, inputs=["-"], top=2)
    assert len(records) == results["samples"] and len(records[0]["top"]) == 2
    steps = convtrain.trace(cfg, checkpoint=best, layers=["conv1"])["steps"]
    assert steps and all(step["layer"] == "conv1" for step in steps)
    assert convtrain.gradcheck(cfg, batch=2, max_entries=10)["passed"]
    assert capsys.readouterr() == ("", "")  # nothing printed: a notebook's cells stay clean


def test_train_prints_what_it_is_asked_to(trained, tmp_path, capsys):
    cfg, _, _ = trained
    convtrain.train(cfg, out=str(tmp_path / "quiet"), max_steps=3, log="quiet")
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("stopped after --max-steps 3")


def test_bad_input_is_a_user_error_with_the_one_line(tmp_path, trained):
    cfg, run, _ = trained
    with pytest.raises(convtrain.UserError) as raised:
        convtrain.load_config(str(tmp_path / "missing.yaml"))
    assert raised.value.one_line() == (f"error: {tmp_path / 'missing.yaml'}: no such file "
                                       f"(relative paths start at {os.getcwd()})")
    with pytest.raises(convtrain.UserError, match="is the --checkpoint this command reads"):
        best = os.path.join(run["folder"], "checkpoint-best.npz")
        convtrain.export(cfg, checkpoint=best, out=best)
