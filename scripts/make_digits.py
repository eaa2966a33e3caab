"""Build convtrain/datasets/digits.npz from scikit-learn's copy of the UCI digits.

    pip install scikit-learn && python scripts/make_digits.py

scikit-learn is needed only here, never at run time. The file holds
x: uint8 (1797, 8, 8) with values 0..16 and y: uint8 (1797,) with labels 0..9.
"""

import os

import numpy as np
from sklearn.datasets import load_digits

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "convtrain", "datasets", "digits.npz")


def main():
    digits = load_digits()
    images = digits.images.astype(np.uint8)
    labels = digits.target.astype(np.uint8)
    assert images.shape == (1797, 8, 8) and images.max() == 16
    np.savez_compressed(OUT, x=images, y=labels)
    print(f"wrote {os.path.normpath(OUT)}: {images.shape[0]} images, "
          f"{os.path.getsize(OUT)} bytes")


if __name__ == "__main__":
    main()
