"""TensorBoard event files in the run folder (`log.tensorboard: true`), written with
tensorboardX — the optional extra `tensorboard` — so that
`tensorboard --logdir runs` shows every run's curves beside the others.

Scalars, all against the global step: train/loss and train/lr every log.every steps,
layers/<layer>/<norm> with them (delta_norm, grad_norm, update_norm and weight_norm as in
metrics.jsonl, and update_ratio, ‖ΔW‖/‖W‖, the table's last column), and
epoch/<key> (train_loss, train_acc, val_loss, val_acc, images_per_s) at each epoch's end.
"""

from convtrain.extras import pip_install

EPOCH_KEYS = ("train_loss", "train_acc", "val_loss", "val_acc", "images_per_s")


def require_tensorboardx(config):
    try:
        import tensorboardX  # noqa: F401
    except ImportError:
        raise config.error("log.tensorboard", f"TensorBoard logging needs the tensorboardX "
                                              f"package: {pip_install('tensorboard')}") from None


class EventWriter:
    def __init__(self, out_dir, first_step):
        from tensorboardX import SummaryWriter

        # A resumed run discards what a killed run logged after its checkpoint
        # (TensorBoard drops events at or after purge_step from the older files).
        self.writer = SummaryWriter(logdir=out_dir, purge_step=first_step or None,
                                    flush_secs=10)

    def add(self, record):
        event = record.get("event")
        if event == "step":
            step = record["step"]
            self.writer.add_scalar("train/loss", record["loss"], step)
            self.writer.add_scalar("train/lr", record["lr"], step)
            for layer, norms in record["layers"].items():
                for key, value in norms.items():
                    self.writer.add_scalar(f"layers/{layer}/{key}", value, step)
                if norms.get("weight_norm"):  # the table's last column, the one users watch
                    self.writer.add_scalar(f"layers/{layer}/update_ratio",
                                           norms["update_norm"] / norms["weight_norm"], step)
        elif event == "epoch":
            for key in EPOCH_KEYS:
                if record.get(key) is not None:
                    self.writer.add_scalar(f"epoch/{key}", record[key], record["step"])

    def close(self):
        self.writer.close()
