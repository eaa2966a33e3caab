"""The smaller points of issue 28's item 7, each as a newcomer met it."""

from convtrain import tensorboard


class _Recorder:
    def __init__(self):
        self.scalars = {}

    def add_scalar(self, tag, value, step):
        self.scalars[tag] = (value, step)


def test_tensorboard_gets_the_tables_update_weight_ratio_beside_the_norms():
    writer = tensorboard.EventWriter.__new__(tensorboard.EventWriter)
    writer.writer = _Recorder()
    writer.add({"event": "step", "step": 7, "loss": 1.0, "lr": 0.1,
                "layers": {"conv1": {"delta_norm": 0.5, "grad_norm": 2.0,
                                     "update_norm": 0.004, "weight_norm": 2.0},
                           "relu1": {"delta_norm": 0.25}}})
    scalars = writer.writer.scalars
    assert scalars["layers/conv1/update_ratio"] == (0.002, 7)  # ‖ΔW‖/‖W‖, as the table shows
    assert scalars["layers/conv1/weight_norm"] == (2.0, 7)
    assert scalars["layers/relu1/delta_norm"] == (0.25, 7)
    assert "layers/relu1/update_ratio" not in scalars  # no weight, no ratio
