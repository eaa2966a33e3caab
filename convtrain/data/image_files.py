"""Image files -> (images (N, C, H, W) uint8, labels (N,)): the CIFAR-10 binary
distribution (from its .tar.gz or the extracted folder) and folders of PNG/JPEG/BMP files,
one subfolder per class. Every problem is a DataError naming the file."""

import os
import tarfile
import zipfile

import numpy as np

from convtrain.data import folder_cache
from convtrain.errors import DataError, no_such
from convtrain.extras import pip_install

CIFAR_RECORD = 1 + 3 * 32 * 32  # a label byte, then the R, G and B planes, rows in order
CIFAR_FILES = {"train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
               "test": ("test_batch.bin",)}
# The names of labels 0..9, as the distribution's batches.meta.txt lists them.
CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                 "ship", "truck")


def read_cifar10(path, split, key_path):
    """The CIFAR-10 binary distribution's `split` files as (images (N, 3, 32, 32) uint8,
    labels (N,)): from the .tar.gz as downloaded, its members read in memory and never
    extracted (a member named ../x writes nothing), or from the extracted folder
    (cifar-10-batches-bin, or the folder above it).

    The images are filled file by file into one array: the whole set is held once (150 MB
    for the train split), never beside a copy of itself."""
    if os.path.isdir(path):
        try:
            return _fill_cifar(_cifar_folder_files(path, split, key_path), key_path)
        except OSError as exc:
            raise DataError(f"cannot read: {exc.strerror}", file=exc.filename or path,
                            path=key_path) from None
    if not os.path.exists(path):
        raise DataError(no_such("file"),
                        file=path, path=key_path)
    try:
        with tarfile.open(path, "r:*") as archive:
            return _fill_cifar(_cifar_members(archive, path, split, key_path), key_path)
    except EOFError:
        raise DataError("ends too soon: a download cut short? (the CIFAR-10 binary "
                        "distribution's .tar.gz is about 170 MB)", file=path,
                        path=key_path) from None
    except tarfile.ReadError:
        if path.endswith(".bin"):
            raise DataError(f"is one file of the CIFAR-10 binary distribution: give the "
                            f"folder that holds them all, {os.path.dirname(path) or '.'}",
                            file=path, path=key_path) from None
        raise DataError("is not a .tar.gz or a folder: give cifar-10-binary.tar.gz as "
                        "downloaded, or the folder it extracts to", file=path,
                        path=key_path) from None
    except (tarfile.TarError, OSError, zipfile.BadZipFile) as exc:
        raise DataError(f"not a readable .tar.gz of the CIFAR-10 binary distribution, nor its "
                        f"extracted folder ({exc})", file=path, path=key_path) from None


def _fill_cifar(files, key_path):
    """files: [(name for messages, size in bytes, open: () -> a binary file, where it is
    stored)] in the split's order -> (images (N, 3, 32, 32) uint8, labels (N,) int64).
    They are read in the order they are stored: a gzip stream only seeks forward cheaply."""
    for name, size, _, _ in files:
        if size == 0 or size % CIFAR_RECORD:
            raise DataError(f"is {size} bytes, not a whole number of CIFAR-10 records "
                            f"({CIFAR_RECORD} bytes each: a label byte, then 3x32x32 pixels)",
                            file=name, path=key_path)
    counts = [size // CIFAR_RECORD for _, size, _, _ in files]
    starts = np.cumsum([0] + counts[:-1])
    images = np.empty((sum(counts), 3, 32, 32), dtype=np.uint8)
    labels = np.empty(sum(counts), dtype=np.int64)
    buffer = np.empty((max(counts), CIFAR_RECORD), dtype=np.uint8)  # one file's records
    for i in sorted(range(len(files)), key=lambda i: files[i][3]):
        (name, size, open_file, _), count, start = files[i], counts[i], starts[i]
        records = buffer[:count]
        with open_file() as handle:
            got = handle.readinto(memoryview(records).cast("B"))
        if got != size:
            raise DataError(f"ends after {got} of its {size} bytes", file=name, path=key_path)
        bad = np.flatnonzero(records[:, 0] > 9)
        if len(bad):
            raise DataError(f"record {bad[0]} has label {records[bad[0], 0]}; CIFAR-10's "
                            f"labels are 0..9 (is this the CIFAR-100 binary?)",
                            file=name, path=key_path)
        labels[start:start + count] = records[:, 0]
        images[start:start + count] = records[:, 1:].reshape(count, 3, 32, 32)
    return images, labels


def _cifar_folder_files(path, split, key_path):
    inner = os.path.join(path, "cifar-10-batches-bin")
    folder = inner if os.path.isdir(inner) else path
    files = []
    for name in CIFAR_FILES[split]:
        file = os.path.join(folder, name)
        if not os.path.isfile(file):
            raise DataError(_missing_cifar(name, split), file=path, path=key_path)
        files.append((file, os.path.getsize(file), lambda file=file: open(file, "rb"), 0))
    return files


def _cifar_members(archive, path, split, key_path):
    """The split's files inside an open tar(.gz), found by base name, as _fill_cifar takes
    them. Listing the members reads the archive once, and _fill_cifar once more."""
    members = {os.path.basename(m.name): m for m in archive.getmembers() if m.isfile()}
    for name in CIFAR_FILES[split]:
        if name not in members:
            raise DataError(_missing_cifar(name, split), file=path, path=key_path)
    wanted = [members[name] for name in CIFAR_FILES[split]]
    return [(f"{path}:{m.name}", m.size, lambda m=m: archive.extractfile(m), m.offset_data)
            for m in wanted]


def _missing_cifar(name, split):
    return (f"has no {name}: the CIFAR-10 binary distribution's {split} files are "
            f"{', '.join(CIFAR_FILES[split])} (the Python/pickle version is not read)")


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
MAX_IMAGE_PIXELS = 64 * 1024 * 1024  # a larger header is a decompression bomb, not a photo


def read_folder(path, classes, input_shape, resize, key_path):
    """A folder with one subfolder per class (`classes`, from folder_classes: sorted names
    are classes 0, 1, ...) of PNG, JPEG or BMP files, decoded by Pillow into (images
    (N, C, H, W) uint8, labels (N,)):
    grey for one input channel, RGB for three; sizes other than input's are refused, or
    resized (bilinear) with `resize: true`. Decoded once: later runs read folder_cache's
    file while the folder's files are unchanged."""
    require_pillow(path, key_path)
    channels, height, width = input_shape
    if channels not in (1, 3):
        raise DataError(unsupported_channels(channels), file=path, path=key_path)
    files = []  # (path, label) in label order, then name order
    for label, name in enumerate(classes):
        folder = os.path.join(path, name)
        names = sorted(f for f in os.listdir(folder)
                       if f.lower().endswith(IMAGE_SUFFIXES) and not f.startswith("."))
        if not names:
            raise DataError(f"class folder '{name}' has no images ({', '.join(IMAGE_SUFFIXES)})",
                            file=folder, path=key_path)
        files += [(os.path.join(folder, f), label) for f in names]
    cache = folder_cache.cache_path(path, input_shape, resize)
    digest = folder_cache.manifest(path, files)
    cached = folder_cache.load(cache, digest)
    if cached is not None:
        return cached
    # Decoded one by one: threads made 10,000 32x32 PNGs take 2.1 s instead of 0.85 s on
    # 2 cores (Python's share of a small image holds the GIL), and won only 1.45x on
    # 256x256 JPEGs; the cache makes every later run 20x faster than either.
    images = np.empty((len(files), channels, height, width), dtype=np.uint8)
    for i, (file, _) in enumerate(files):
        images[i] = read_image(file, channels, (height, width), resize, key_path)
    labels = np.array([label for _, label in files], dtype=np.int64)
    folder_cache.save(cache, images, labels, digest)
    return images, labels


def unsupported_channels(channels):
    return f"images give 1 (grey) or 3 (RGB) channels, but input has {channels}"


def folder_classes(path, key_path):
    """An image folder's class names: its subfolders' names, sorted (label 0 first)."""
    if not os.path.exists(path):
        raise DataError(no_such("folder"), file=path,
                        path=key_path)
    if not os.path.isdir(path):
        raise DataError("not a folder (format: folder wants one subfolder of images per "
                        "class)", file=path, path=key_path)
    # Hidden folders (.ipynb_checkpoints, .git) are no classes: one sorted first would
    # shift every label.
    classes = sorted(d for d in os.listdir(path)
                     if not d.startswith(".") and os.path.isdir(os.path.join(path, d)))
    if not classes:
        raise DataError("has no class subfolders (format: folder wants one subfolder of "
                        "images per class, e.g. cat/ and dog/)", file=path, path=key_path)
    return classes


def require_pillow(file, key_path=None):
    """PIL.Image, or a DataError naming the extra that brings it."""
    try:
        from PIL import Image
    except ImportError:
        raise DataError(f"reading images needs Pillow, an optional extra: "
                        f"{pip_install('images')}", file=file, path=key_path) from None
    return Image


# Pillow modes of more than 8 bits a channel, which convert("L") and ("RGB") clip.
WIDE_MODES = {"I;16": "16-bit", "I;16B": "16-bit", "I;16L": "16-bit", "I;16N": "16-bit",
              "I": "32-bit integer", "F": "32-bit float"}
RESIZE_HINT = "; add resize: true to the source to resize every image"


def read_image(file, channels, size, resize, key_path, resize_hint=RESIZE_HINT):
    """One image file as (C, H, W) uint8: grey for one channel, RGB for three, of size
    (H, W), resized (bilinear) only when resize is true."""
    Image = require_pillow(file, key_path)
    try:
        with Image.open(file) as image:
            if image.width * image.height > MAX_IMAGE_PIXELS:
                raise DataError(f"claims {image.width}x{image.height} pixels, more than "
                                f"{MAX_IMAGE_PIXELS:,}: refused before decoding (a "
                                f"decompression bomb?)", file=file, path=key_path)
            if image.mode in WIDE_MODES:
                raise DataError(f"is a {WIDE_MODES[image.mode]} image (mode {image.mode}); "
                                f"convtrain reads 8-bit images: converted, its values would "
                                f"be clipped to 0..255", file=file, path=key_path)
            image = image.convert("L" if channels == 1 else "RGB")
            if (image.height, image.width) != size:
                if not resize:
                    raise DataError(f"is {image.width} pixels wide and {image.height} high, "
                                    f"but input is {size[1]} wide and {size[0]} high"
                                    f"{resize_hint}", file=file, path=key_path)
                image = image.resize((size[1], size[0]), Image.BILINEAR)
            pixels = np.asarray(image, dtype=np.uint8)
    except DataError:
        raise
    except Exception as exc:  # Pillow's errors for broken files vary by format
        raise DataError(f"cannot be read as an image ({type(exc).__name__}: {exc})",
                        file=file, path=key_path) from None
    return pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)
