"""Training-time augmentation (`data.train.augment`): a random crop of the image padded by
`pad_crop` pixels, and a random horizontal flip, each sample's draw a pure function of
(seed, epoch, sample index), so thread count and `--resume` never change a batch."""

import numpy as np

from convtrain.kernels.augment import crop_flip


class EpochAugmentation:
    """Every training sample's draws for one epoch; `apply` augments a batch of them."""

    def __init__(self, spec, source, seed, epoch, count, channels, dtype):
        rng = np.random.default_rng([seed, 7, epoch])
        span = 2 * spec.pad_crop + 1
        self.rows = rng.integers(0, span, size=count)
        self.cols = rng.integers(0, span, size=count)
        self.flips = (rng.random(count) < 0.5) if spec.flip else np.zeros(count, dtype=bool)
        self.pad = spec.pad_crop
        # Padding is black, as torchvision pads the image before normalising: here the
        # images are normalised already, so black is (0 - mean) / std in each channel.
        mean = np.asarray(source.mean or (0.0,) * channels, dtype=np.float64)
        std = np.asarray(source.std or (1.0,) * channels, dtype=np.float64)
        self.fill = (-mean / std).astype(dtype)

    def apply(self, xb, index):
        """xb (B, C, H, W), the samples `index` (B,) of the training set -> augmented copy."""
        out = np.empty_like(xb)
        crop_flip(np.ascontiguousarray(xb), self.rows[index], self.cols[index],
                  self.flips[index], self.pad, self.fill, out)
        return out
