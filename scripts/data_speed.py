"""How fast convtrain makes training batches from a config's data.train (gather the
shuffled samples, crop and flip them when the config augments, normalise), against one
training step of the config's network at the same batch size, in one run: the data path
must be a small share of the step.

    python scripts/data_speed.py configs/resnet20-cifar10.yaml [--batches 100] [--iters 5]

Batches are made exactly as `convtrain train` makes them in epoch 1 (the same order and
draws), on the main thread between steps; the step is `convtrain time`'s (median of
--iters steps on random inputs). Medians of per-batch times.
"""

import argparse
import time

import numpy as np

from convtrain.data.augment import EpochBatches
from convtrain.spec.config import load_config
from convtrain.data.sources import load_datasets
from convtrain.views.timing import time_network


def batch_times(config, x, y, count):
    """Seconds to make each of the first `count` training batches of epoch 1."""
    batches = EpochBatches(config, x, y, 1)
    times = []
    for k in range(min(count, len(batches))):
        started = time.perf_counter()
        batches[k]
        times.append(time.perf_counter() - started)
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--batches", type=int, default=100, help="batches to time")
    parser.add_argument("--iters", type=int, default=5, help="training steps to time")
    args = parser.parse_args()
    config = load_config(args.config)
    started = time.perf_counter()
    x, y, _, _ = load_datasets(config, need_val=False)
    load_s = time.perf_counter() - started
    batch = config.train.batch_size
    batch_times(config, x, y, 2)  # compiles (or loads) the augmentation kernel
    data_ms = 1e3 * float(np.median(batch_times(config, x, y, args.batches)))
    step_ms = time_network(config, batch, args.iters)["step_ms"]
    print(f"{config.name}: {len(x):,} training images ({x.stored.dtype} in memory, "
          f"{x.stored.nbytes / 2**20:.0f} MiB), loaded in {load_s:.1f} s")
    print(f"making a batch of {batch}: {data_ms:.3g} ms ({batch / data_ms * 1e3:,.0f} images/s)"
          f"{', augmented' if config.data.train.augment else ''}")
    print(f"training step:    {step_ms:.1f} ms ({batch / step_ms * 1e3:,.0f} images/s)")
    print(f"data / step:      {data_ms / step_ms:.1%}")


if __name__ == "__main__":
    main()
