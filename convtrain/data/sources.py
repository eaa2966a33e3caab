"""Data sources -> (images as StoredImages (N, C, H, W), labels (N,) int64), checked
against the spec.

Formats: MNIST's IDX (plain or gzip), NPZ, CSV (label first, then pixels), the builtin
digits, and (image_files.py) the CIFAR-10 binary distribution and image folders. Every
problem is a DataError naming the file and the config key (`data.train`), never a NumPy
traceback.

convtrain is channels first: x (N, C, H, W), input = (C, H, W). A source's
`layout` (nchw, or nhwc for channels-last data) says in which order each
image's values are stored; see `_as_nchw` for what each array shape may be.
"""

import io
import zipfile
from importlib import resources

import numpy as np

from convtrain.spec.config import ONE_SAMPLE, lone_sample_batchnorm
from convtrain.errors import DataError
from convtrain.data.filekind import read_bytes, what_file
from convtrain.data.image_files import CIFAR_CLASSES, folder_classes, read_cifar10, read_folder
from convtrain.data.stored_images import StoredImages

IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path, key_path):
    """An IDX file (http://yann.lecun.com/exdb/mnist/ format) as a NumPy array."""
    raw = read_bytes(path, key_path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_TYPES or raw[3] == 0:
        raise DataError("not an IDX file (bad magic number; expected 00 00 <type> <ndim>)",
                        file=path, path=key_path)
    dtype, ndim = np.dtype(IDX_TYPES[raw[2]]), raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError("IDX file truncated inside its header", file=path, path=key_path)
    dims = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(dims)) * dtype.itemsize
    if len(raw) != expected:
        state = "truncated" if len(raw) < expected else "longer than its header says"
        raise DataError(f"IDX file {state}: header says {list(dims)} ({expected} bytes), "
                        f"file has {len(raw)} bytes", file=path, path=key_path)
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)


def read_npz(path, x_key, y_key, key_path):
    raw = read_bytes(path, key_path)
    if not raw.startswith((b"PK", b"\x93NUMPY")):
        # NumPy would try it as a pickle and advise loading it unsafely.
        raise DataError(f"not an .npz archive but {what_file(raw)}", file=path, path=key_path)
    try:
        archive = np.load(io.BytesIO(raw), allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"not a readable .npz file ({exc})", file=path, path=key_path) from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError("is a .npy array, not an .npz archive with x and y", file=path,
                        path=key_path)
    with archive:
        arrays = []
        for key in (x_key, y_key):
            if key not in archive.files:
                raise DataError(f"has no array '{key}' (it has: {', '.join(archive.files)})",
                                file=path, path=key_path)
            try:
                arrays.append(archive[key])
            except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
                raise DataError(f"array '{key}' is unreadable ({exc})", file=path,
                                path=key_path) from None
    return arrays


def read_csv(path, header, key_path):
    raw = read_bytes(path, key_path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise DataError("not a UTF-8 text file", file=path, path=key_path) from None
    lines = text.splitlines()[1 if header else 0:]
    rows = []
    width = None
    for number, line in enumerate(lines, start=2 if header else 1):
        if not line.strip():
            continue
        fields = line.split(",")
        if width is None:
            width = len(fields)
        if len(fields) != width:
            raise DataError(f"line {number} has {len(fields)} values, line 1 of the data has "
                            f"{width}", file=path, path=key_path)
        try:
            rows.append([float(field) for field in fields])
        except ValueError:
            bad = next(f for f in fields if not _is_number(f))
            raise DataError(f"line {number}: {bad.strip()!r} is not a number"
                            + (" (is there a header line? set header: true)" if number == 1 else ""),
                            file=path, path=key_path) from None
    if not rows:
        raise DataError("has no data rows", file=path, path=key_path)
    if width < 2:
        raise DataError("needs a label column and at least one pixel column", file=path,
                        path=key_path)
    table = np.asarray(rows)
    return table[:, 1:], table[:, 0]


def _is_number(text):
    try:
        float(text)
        return True
    except ValueError:
        return False


def read_builtin(name):
    with resources.files("convtrain.datasets").joinpath(f"{name}.npz").open("rb") as handle:
        with np.load(handle, allow_pickle=False) as archive:
            return archive["x"], archive["y"]


def source_paths(spec):
    """{key path: file or folder} of every data source the config reads, for the commands
    that write a file to refuse one among them."""
    paths = {}
    for key_path, source in (("data.train", spec.data.train), ("data.val", spec.data.val)):
        if source is None:
            continue
        for field in source.PATH_FIELDS:
            if getattr(source, field) is not None:
                paths[key_path if field == "path" else f"{key_path}.{field}"] = \
                    getattr(source, field)
    return paths


def load_source(source, input_shape, num_classes, dtype):
    """Read one SourceSpec and check it against the network's input and output."""
    key_path = source.key_path
    if source.format == "idx":
        images = read_idx(source.images, key_path + ".images")
        labels = read_idx(source.labels, key_path + ".labels")
        names = (source.images, source.labels)
    elif source.format == "npz":
        images, labels = read_npz(source.path, source.x_key, source.y_key, key_path)
        names = (source.path, source.path)
    elif source.format == "csv":
        images, labels = read_csv(source.path, source.header, key_path)
        names = (source.path, source.path)
    elif source.format == "cifar10":
        images, labels = read_cifar10(source.path, source.split, key_path)
        names = (source.path, source.path)
    elif source.format == "folder":
        classes = folder_classes(source.path, key_path)
        if len(classes) > num_classes:
            raise DataError(f"has {len(classes)} class folders ({', '.join(classes)}), but the "
                            f"network has {num_classes} outputs (the last layer, layers[-1] "
                            f"in the config, sets that number)", file=source.path, path=key_path)
        images, labels = read_folder(source.path, classes, input_shape, source.resize,
                                     key_path)
        names = (source.path, source.path)
    else:
        images, labels = read_builtin(source.name)
        names = (f"builtin:{source.name}", f"builtin:{source.name}")
    return _check(images, labels, names, source, input_shape, num_classes, dtype)


def _check(images, labels, names, source, input_shape, num_classes, dtype):
    key_path = source.key_path
    labels, images = np.asarray(labels), np.asarray(images)
    for array, name, what in ((images, names[0], "images"), (labels, names[1], "labels")):
        if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
            raise DataError(f"{what} must be numbers, got an array of {array.dtype}", file=name,
                            path=key_path)
    if labels.ndim != 1:
        labels = labels.reshape(-1) if labels.size == len(labels) else labels
    if labels.ndim != 1:
        raise DataError(f"labels must be one number per sample, got shape {list(labels.shape)}",
                        file=names[1], path=key_path)
    if images.ndim == 0 or len(images) != len(labels):
        raise DataError(f"{len(images) if images.ndim else 0} images but {len(labels)} labels",
                        file=names[0], path=key_path)
    if len(labels) == 0:
        raise DataError("holds no samples", file=names[0], path=key_path)
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)):
            raise DataError("labels must be whole numbers (class indices)", file=names[1],
                            path=key_path)
    labels = labels.astype(np.int64)
    if labels.min() < 0 or labels.max() >= num_classes:
        raise DataError(f"labels run from {labels.min()} to {labels.max()}, but the network "
                        f"has {num_classes} outputs (classes 0..{num_classes - 1}; the last "
                        f"layer, layers[-1] in the config, sets that number)",
                        file=names[1], path=key_path)
    images = _as_nchw(images, source.layout, tuple(input_shape), names[0], key_path)
    if source.limit is not None:
        images, labels = images[:source.limit], labels[:source.limit]
    return _stored_images(images, source, dtype, names[0]), labels


def _stored_images(images, source, dtype, name):
    """images (N, C, H, W) as StoredImages: whole numbers kept in their own type (in native
    byte order), floats converted to dtype; either way the one copy, which also makes a
    channels-last source's transposed view contiguous."""
    key_path = source.key_path
    if np.issubdtype(images.dtype, np.integer):
        stored = np.ascontiguousarray(images, dtype=images.dtype.newbyteorder("="))
    else:
        stored = images.astype(dtype, order="C")
        if not np.all(np.isfinite(stored)):
            raise DataError(f"contains values that are not finite in {dtype} (NaN or Inf)",
                            file=name, path=key_path)
    extremes = np.stack([stored.min(axis=(0, 2, 3)), stored.max(axis=(0, 2, 3))])
    x = StoredImages(stored, dtype, source.scale, source.mean, source.std)
    # Batches are normalised when they are made; each channel's extremes tell now whether
    # any value of any batch would overflow dtype.
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        scaled = extremes.astype(dtype) / dtype.type(source.scale)
        normalised = x.normalised(extremes[:, :, None, None])
    if not np.all(np.isfinite(scaled)):
        raise DataError(f"dividing the images by scale {source.scale} overflows {dtype}",
                        file=name, path=f"{key_path}.scale")
    if not np.all(np.isfinite(normalised)):
        raise DataError(f"normalising the images by mean and std overflows {dtype}",
                        file=name, path=f"{key_path}.std")
    return x


def _as_nchw(images, layout, input_shape, name, key_path):
    """images (N, ...) as a view of shape (N, C, H, W), checked against input (C, H, W).

    What one sample may be, by the array's dimensions:
      4 dims  (C, H, W) exactly as input; under layout nhwc (H, W, C), transposed here;
      3 dims  (H, W) of one channel (C = 1: MNIST, the builtin digits), either layout;
      1 or 2  a flat row of C*H*W values (CSV, or an NPZ stored flat): no shape to check,
              reshaped in C, H, W order, or H, W, C order (r, g, b, r, g, b, ...) under
              layout nhwc.
    A 4-dim array that is input's shape in the other layout is named as such, with the fix.
    """
    c, h, w = input_shape
    shape, wanted = list(images.shape), list(input_shape)
    channels_last = layout == "nhwc"
    stored = (h, w, c) if channels_last else (c, h, w)
    if images.ndim <= 2:
        per_sample = int(np.prod(images.shape[1:]))
        if per_sample != c * h * w:
            raise DataError(f"each image has {per_sample} values (shape {shape[1:]}), "
                            f"but input is {wanted} ({c * h * w} values)",
                            file=name, path=key_path)
        images = images.reshape((len(images),) + stored)
    elif images.ndim == 3:
        if (c, h, w) != (1,) + images.shape[1:]:
            raise DataError(f"images have shape {shape}, read as (N, H, W): one channel of "
                            f"{shape[1]}x{shape[2]} ({shape[1] * shape[2]} values each), but "
                            f"input is {wanted} (C, H, W)", file=name, path=key_path)
        return images.reshape(len(images), 1, h, w)
    elif images.ndim == 4:
        if images.shape[1:] != stored:
            raise DataError(_layout_mismatch(shape, input_shape, channels_last, key_path),
                            file=name, path=key_path)
    else:
        raise DataError(f"images have shape {shape}; convtrain reads (N, C, H, W), (N, H, W) "
                        f"for one channel, or one flat row of C*H*W values per image",
                        file=name, path=key_path)
    return images.transpose(0, 3, 1, 2) if channels_last else images


def _layout_mismatch(shape, input_shape, channels_last, key_path):
    """The message for a 4-dim array that is not input's shape in the source's layout."""
    c, h, w = input_shape
    wanted = list(input_shape)
    if not channels_last and tuple(shape[1:]) == (h, w, c):
        return (f"images have shape {shape}: that is input {wanted} in channels-last order "
                f"(N, H, W, C), but convtrain reads channels first (N, C, H, W); "
                f"add layout: nhwc to {key_path} to transpose them at load")
    if channels_last and tuple(shape[1:]) == (c, h, w):
        return (f"images have shape {shape}: that is input {wanted} already channels first "
                f"(N, C, H, W), but layout: nhwc reads them as (N, H, W, C); "
                f"remove layout: nhwc from {key_path}")
    order = "(N, H, W, C) as layout: nhwc says" if channels_last else "(N, C, H, W)"
    return f"images have shape {shape}, read as {order}, but input is {wanted} (C, H, W)"


def load_datasets(config, need_val=True):
    """(train_x, train_y, val_x, val_y) per the spec; val is None without validation data.
    The x are StoredImages: x[index] is a normalised batch.

    A `val: {split: f}` takes a seeded random fraction of the train source, so
    `train` and `eval` see the same validation samples.
    """
    if config.data.train is None:
        raise config.error("data.train", "the config has no data.train source; this command "
                                         "needs data")
    dtype = np.dtype(config.dtype)
    x, y = load_source(config.data.train, config.input, config.num_outputs, dtype)
    val_x = val_y = None
    if config.data.val_split:
        order = np.random.default_rng([config.seed, 1]).permutation(len(y))
        n_val = int(round(len(y) * config.data.val_split))
        if n_val == 0 or n_val == len(y):
            raise config.error("data.val.split", f"a split of {config.data.val_split} leaves "
                                                 f"{'no' if n_val == 0 else 'all'} samples "
                                                 f"for validation out of {len(y)}")
        val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
        val_x, val_y = x.take(val_idx), y[val_idx]
        x, y = x.take(train_idx), y[train_idx]
    elif config.data.val is not None and need_val:
        val_x, val_y = load_source(config.data.val, config.input, config.num_outputs, dtype)
    per_sample = lone_sample_batchnorm(config.layers)
    if per_sample and len(y) % config.train.batch_size == 1:
        raise config.error("train.batch_size",
                           f"the last batch of every epoch would hold one sample ({len(y)} "
                           f"training samples in batches of {config.train.batch_size}), and "
                           f"batchnorm '{per_sample}' cannot train on one ({ONE_SAMPLE}); "
                           f"choose another batch size")
    return x, y, val_x, val_y


def class_names(config):
    """The names of the classes 0, 1, ... as the training data has them (an image folder's
    subfolders, CIFAR-10's ten), or None. A validation source whose classes are not the
    first of those, in order, is refused: its labels would mean other classes."""
    names = _source_classes(config.data.train)
    val = config.data.val
    if names is None or val is None:
        return names
    val_names = _source_classes(val)
    if val_names is not None and val_names != names[:len(val_names)]:
        raise DataError(f"has the classes {', '.join(val_names)}, but data.train has "
                        f"{', '.join(names)}: a label would mean one class in training and "
                        f"another in validation", file=val.path, path=val.key_path)
    return names


def _source_classes(source):
    if source is None:
        return None
    if source.format == "folder":
        return folder_classes(source.path, source.key_path)
    if source.format == "cifar10":
        return list(CIFAR_CLASSES)
    return None
