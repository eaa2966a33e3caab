"""Write a stand-in for cifar-10-binary.tar.gz: the binary distribution's layout and size
(data_batch_1..5.bin of 10,000 records and test_batch.bin, each record a label byte and
3x32x32 pixel bytes in R, G, B planes) filled with synthetic images, for measuring memory
and time where the real file cannot be downloaded. Each class has its own mean colour
under uniform noise, so a network can learn something from them; their accuracy says
nothing about CIFAR-10's.

    python scripts/make_synthetic_cifar.py data/cifar-10-binary.tar.gz [--per-file 10000]
"""

import argparse
import io
import os
import tarfile

import numpy as np

FILES = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]


def records(count, rng):
    """count CIFAR-10 records (count, 3073) uint8."""
    labels = rng.integers(0, 10, size=count, dtype=np.uint8)
    colours = np.random.default_rng(10).integers(40, 216, size=(10, 3), dtype=np.int16)
    noise = rng.integers(-40, 40, size=(count, 3, 32 * 32), dtype=np.int16)
    pixels = np.clip(colours[labels][:, :, None] + noise, 0, 255).astype(np.uint8)
    return np.concatenate([labels[:, None], pixels.reshape(count, -1)], axis=1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="the .tar.gz to write")
    parser.add_argument("--per-file", type=int, default=10000, help="records in each file")
    args = parser.parse_args()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    rng = np.random.default_rng(0)
    with tarfile.open(args.out, "w:gz", compresslevel=1) as archive:
        for name in FILES:
            raw = records(args.per_file, rng).tobytes()
            member = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            member.size = len(raw)
            archive.addfile(member, io.BytesIO(raw))
    print(f"wrote {args.out}: {len(FILES)} files of {args.per_file} records, "
          f"{os.path.getsize(args.out) / 1e6:.0f} MB")


if __name__ == "__main__":
    main()
