"""Write stand-ins for MNIST's four .gz IDX files (train-images-idx3-ubyte.gz, ...), as
configs/lenet5-mnist.yaml names them, for where the real ones cannot be downloaded: noise
with one bright pixel whose place is the label, so that there is something to learn.

    python scripts/make_synthetic_mnist.py data [--train 256] [--test 32]
"""

import argparse
import gzip
import os
import struct

import numpy as np


def write_mnist(folder, train=256, test=32, seed=0):
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    for prefix, count in (("train", train), ("t10k", test)):
        labels = rng.integers(0, 10, size=count)
        images = rng.integers(0, 50, size=(count, 28, 28))
        images[np.arange(count), 2 * labels + 3, 2 * labels + 3] = 255
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            header = bytes([0, 0, 8, array.ndim]) + b"".join(struct.pack(">I", size)
                                                             for size in array.shape)
            with gzip.open(os.path.join(folder, f"{prefix}-{kind}-ubyte.gz"), "wb") as handle:
                handle.write(header + array.astype(np.uint8).tobytes())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("--train", type=int, default=256)
    parser.add_argument("--test", type=int, default=32)
    args = parser.parse_args()
    write_mnist(args.folder, args.train, args.test)
    print(f"wrote {args.folder}: MNIST-shaped IDX files, {args.train} training and "
          f"{args.test} test images")


if __name__ == "__main__":
    main()
