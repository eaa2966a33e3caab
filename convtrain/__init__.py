"""convtrain: a CNN trainer whose every loop can be read.

From Python (convtrain.api has each function's options):

    import convtrain
    cfg = convtrain.load_config("configs/digits.yaml", overrides=["optimizer.lr=0.05"])
    run = convtrain.train(cfg, out="runs/a")           # {"folder": ..., "best": ...}
    convtrain.evaluate(cfg, checkpoint="runs/a/checkpoint-best.npz")
    convtrain.predict(cfg, checkpoint=..., inputs=["photo.png"])
    convtrain.trace(cfg), convtrain.gradcheck(cfg), convtrain.export(cfg, checkpoint=..., out=...)

Importing the package is cheap: numba is imported only by the modules that run kernels,
so `convtrain --help` and config validation stay fast.
"""

from convtrain.api import (
    evaluate,
    export,
    gradcheck,
    load_config,
    predict,
    smoke,
    time_network,
    trace,
    train,
)
from convtrain.errors import UserError
from convtrain.version import __version__

__all__ = ["evaluate", "export", "gradcheck", "load_config", "predict", "smoke",
           "time_network", "trace", "train", "UserError", "__version__"]
