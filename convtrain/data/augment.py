"""The batches of a training epoch: the samples in an order that is a pure function of
(seed, epoch), and with `data.train.augment` a random crop of each image padded by
`pad_crop` pixels and a random horizontal flip, each sample's draw a pure function of
(seed, epoch, sample index). So thread count and `--resume` never change a batch."""

import numpy as np

from convtrain.kernels import augment as augment_kernels


class EpochAugmentation:
    """Every training sample's draws for one epoch; `batch` makes an augmented batch."""

    def __init__(self, spec, seed, epoch, count):
        rng = np.random.default_rng([seed, 7, epoch])
        span = 2 * spec.pad_crop + 1
        self.rows = rng.integers(0, span, size=count)
        self.cols = rng.integers(0, span, size=count)
        self.flips = (rng.random(count) < 0.5) if spec.flip else np.zeros(count, dtype=bool)
        self.pad = spec.pad_crop

    def batch(self, images, index):
        """The samples `index` (B,) of the training set's StoredImages, augmented and then
        normalised: (B, C, H, W) in images.dtype. Cropping before normalising pads with
        black, as torchvision pads the image before its Normalize."""
        stored = images.stored[index]
        out = np.empty_like(stored)
        augment_kernels.crop_flip(stored, self.rows[index], self.cols[index], self.flips[index],
                                  self.pad, out)
        return images.normalised(out)


def epoch_order(seed, epoch, count, shuffle):
    if not shuffle:
        return np.arange(count)
    return np.random.default_rng([seed, 2, epoch]).permutation(count)


class EpochBatches:
    """The training batches of one epoch: batches[k] is the k-th (xb, yb), normalised and,
    when the config augments, cropped and flipped."""

    def __init__(self, config, x, y, epoch):
        self.x, self.y = x, y
        self.size = config.train.batch_size
        self.order = epoch_order(config.seed, epoch, len(y), config.train.shuffle)
        source = config.data.train
        self.augmentation = (EpochAugmentation(source.augment, config.seed, epoch, len(y))
                             if source and source.augment else None)

    def __len__(self):
        return -(-len(self.y) // self.size)

    def __getitem__(self, k):
        index = self.order[k * self.size:(k + 1) * self.size]
        xb = self.augmentation.batch(self.x, index) if self.augmentation else self.x[index]
        return xb, self.y[index]
