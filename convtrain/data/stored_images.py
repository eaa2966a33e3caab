"""A data source's images as they are stored, and the normalised batches made from them.

Images of whole numbers (CIFAR-10's bytes, MNIST's, an image folder's) stay in their own
type until a batch is made: 50,000 CIFAR-10 images take 150 MB as uint8, 600 MB as
float32. Indexing gives the network's input:

    x[index] = ((stored[index] as dtype) / scale - mean[c]) / std[c]

in `dtype`, operation by operation, so a batch is the same to the last bit as the rows of
the whole set normalised at once.
"""

import numpy as np


class StoredImages:
    """stored (N, C, H, W): whole numbers in their own type, or floats already in `dtype`.
    Reads like the (N, C, H, W) `dtype` array of normalised images: len, shape, dtype,
    x[index] and np.asarray(x)."""

    def __init__(self, stored, dtype, scale=1.0, mean=None, std=None):
        self.stored = stored
        self.dtype = np.dtype(dtype)
        self.scale, self.mean, self.std = scale, mean, std
        channels = stored.shape[1]
        self._scale = self.dtype.type(scale)
        self._mean = (None if mean is None else
                      np.asarray(mean, dtype=self.dtype).reshape(1, channels, 1, 1))
        self._std = (None if std is None else
                     np.asarray(std, dtype=self.dtype).reshape(1, channels, 1, 1))

    @property
    def shape(self):
        return self.stored.shape

    def __len__(self):
        return len(self.stored)

    def __getitem__(self, index):
        """The normalised images stored[index] (index: an int, a slice or an index array)."""
        if isinstance(index, (int, np.integer)):
            return self.normalised(self.stored[index:index + 1 or None])[0]
        return self.normalised(self.stored[index])

    def __array__(self, dtype=None, copy=None):
        x = self.normalised(self.stored)
        return x if dtype is None else x.astype(dtype)

    def take(self, index):
        """The samples stored[index], still as stored."""
        return StoredImages(self.stored[index], self.dtype, self.scale, self.mean, self.std)

    def normalised(self, raw):
        """raw (B, C, H, W) as stored -> a new (B, C, H, W) array in dtype."""
        x = raw.astype(self.dtype)  # always a copy: the operations below are in place
        x /= self._scale
        if self._mean is not None:
            x -= self._mean
        if self._std is not None:
            x /= self._std
        return x
