"""`convtrain predict`: a trained network's top classes for image files, folders of
images, .npy arrays, or a data source of the config.

Every input is prepared as training prepared its data (the config's data.train `scale`,
`mean`, `std`; no augmentation) and run in eval mode (running statistics, no dropout), in
batches through the same kernels as validation.
"""

import csv
import io
import json
import os

import numpy as np

from convtrain.errors import DataError, UserError, no_such
from convtrain.data.filekind import what_file
from convtrain.data.image_files import IMAGE_SUFFIXES, read_image, unsupported_channels
from convtrain.data.stored_images import StoredImages

BATCH = 256


def read_inputs(paths, config, resize=False):
    """(StoredImages of every input's samples, [name of each sample]): image files, the
    images in folders (recursively, sorted), .npy files of one sample or a stack."""
    arrays, names = [], []
    for path in paths:
        for file in _files(path):
            stack, stack_names = _read_one(file, config, resize)
            arrays.append(stack)
            names += stack_names
    source = config.data.train
    scale, mean, std = (source.scale, source.mean, source.std) if source else (1.0, None, None)
    dtypes = {array.dtype for array in arrays}
    stored = np.concatenate(arrays) if len(dtypes) == 1 else np.concatenate(
        [array.astype(config.dtype) for array in arrays])
    return StoredImages(stored, config.dtype, scale, mean, std), names


def data_source(spec, split=None):
    """(StoredImages, labels, names "0", "1", ...) of the config's validation data, or its
    training data for split "train" or without validation data."""
    from convtrain.data.sources import load_datasets

    x, labels, val_x, val_y = load_datasets(spec, need_val=split != "train")
    if split == "val" and val_x is None:
        raise UserError("the config has no validation data (data.val)", path="--split")
    if val_x is not None and split != "train":
        x, labels = val_x, val_y
    return x, labels, [str(i) for i in range(len(labels))]


def _files(path):
    if os.path.isdir(path):
        found = []
        for root, folders, files in os.walk(path):
            folders[:] = sorted(f for f in folders if not f.startswith("."))  # as data folders
            found += [os.path.join(root, f) for f in sorted(files)
                      if f.lower().endswith(IMAGE_SUFFIXES) and not f.startswith(".")]
        if not found:
            raise DataError(f"holds no images ({', '.join(IMAGE_SUFFIXES)}), in it or below",
                            file=path)
        return found
    if not os.path.exists(path):
        raise DataError(no_such("file"), file=path)
    return [path]


def _read_one(file, config, resize):
    """(samples (n, C, H, W) as stored, names) of one image or .npy file."""
    channels, height, width = config.input
    if file.lower().endswith(IMAGE_SUFFIXES):
        if channels not in (1, 3):
            raise DataError(unsupported_channels(channels), file=file)
        hint = "; --resize resizes every image to input's size"
        return read_image(file, channels, (height, width), resize, None, hint)[None], [file]
    if file.lower().endswith(".npy"):
        return _read_npy(file, tuple(config.input))
    raise DataError("is not a file convtrain predicts on: give PNG, JPEG or BMP images, .npy "
                    "arrays or folders of images", file=file)


def _read_npy(file, input_shape):
    with open(file, "rb") as handle:
        head = handle.read(4096)
    if not head.startswith(b"\x93NUMPY"):
        raise DataError(f"is not a .npy array: it is {_kind(head)}", file=file)
    try:
        array = np.load(file, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"not a readable .npy array ({exc})", file=file) from None
    if not isinstance(array, np.ndarray):
        raise DataError("is an .npz archive, not one .npy array", file=file)
    if array.dtype == np.bool_ or not (np.issubdtype(array.dtype, np.integer)
                                       or np.issubdtype(array.dtype, np.floating)):
        raise DataError(f"holds {array.dtype}, not numbers (integers or floats)", file=file)
    c, h, w = input_shape
    shape = list(array.shape)
    if array.shape == input_shape or (c == 1 and array.shape == (h, w)):
        stack = array.reshape((1,) + input_shape)
    elif array.shape[1:] == input_shape or (c == 1 and array.ndim == 3
                                            and array.shape[1:] == (h, w)):
        stack = array.reshape((len(array),) + input_shape)
    else:
        channels_last = array.ndim >= 3 and array.shape[-3:] == (h, w, c)
        raise DataError(f"has shape {shape}, but input is {list(input_shape)}: give one sample "
                        f"(C, H, W) or a stack (N, C, H, W)"
                        + (", or (H, W) / (N, H, W) for one channel" if c == 1 else "")
                        + ("; this one is channels last: np.moveaxis(a, -1, -3) puts the "
                           "channels first" if channels_last else ""), file=file)
    if len(stack) == 0:
        raise DataError("holds no samples", file=file)
    if np.issubdtype(stack.dtype, np.floating) and not np.all(np.isfinite(stack)):
        raise DataError("contains values that are not finite (NaN or Inf)", file=file)
    names = [file] if array.shape in (input_shape, (h, w)) else [
        f"{file}[{i}]" for i in range(len(stack))]
    return np.ascontiguousarray(stack, dtype=stack.dtype.newbyteorder("=")), names


def _kind(head):
    if head.startswith(b"PK"):
        return "an .npz archive (several arrays), not one array"
    if head.startswith((b"\x89PNG", b"\xff\xd8", b"BM")):
        return "an image under a .npy name"
    kind = what_file(head)
    return "a file of another kind" if "zip" in kind else kind


def predict(network, x, batch=BATCH):
    """scores (N, K) of the network in eval mode for x (N, C, H, W) or StoredImages."""
    scores = np.empty((len(x), int(np.prod(network.layers[-1].spec.out_shape))),
                      dtype=network.dtype)
    for start in range(0, len(x), batch):
        scores[start:start + batch] = network.forward(x[start:start + batch])
    return scores


def top_classes(scores, top, names=None, probabilities=True):
    """For each row of scores, the `top` best classes [{"class", "name"?, "p" | "score"}],
    best first; p is the softmax of the row."""
    if probabilities:
        shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
        values = shifted / shifted.sum(axis=1, keepdims=True)
    else:
        values = scores
    # Ranked by the scores themselves (two scores can round to one probability), stably:
    # of equal scores the lower class first, as eval's argmax takes it.
    order = np.argsort(-scores, axis=1, kind="stable")[:, :top]
    key = "p" if probabilities else "score"
    return [[{"class": int(k), **({"name": names[k]} if names else {}),
              key: float(values[row, k])} for k in order[row]] for row in range(len(scores))]


def check_top(top, classes):
    if top > classes:
        raise UserError(f"{top} is more than the network's {classes} classes: at most "
                        f"{classes}", path="--top")


def prediction_records(names, rows, scores, labels=None, classes=None):
    """[{"input", "label" and "label_name" (with labels), "top", "scores"}], one per input."""
    records = []
    for i, (name, row) in enumerate(zip(names, rows)):
        record = {"input": name}
        if labels is not None:
            record["label"] = int(labels[i])
            if classes:
                record["label_name"] = classes[labels[i]]
        records.append({**record, "top": row, "scores": scores[i].tolist()})
    return records


def predictions_text(records, fmt, top):
    """records [{"input", "label"?, "top": [...], "scores"}] as text, JSON or CSV."""
    if fmt == "json":
        return json.dumps({"predictions": records}, indent=1) + "\n"
    key = "p" if "p" in records[0]["top"][0] else "score"
    labelled = "label" in records[0]
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["input"] + (["label"] if labelled else []) + [
            f"{field}_{rank}" for rank in range(1, top + 1) for field in ("class", "name", key)])
        for record in records:
            writer.writerow([record["input"]] + ([record["label"]] if labelled else []) + [
                value for entry in record["top"]
                for value in (entry["class"], entry.get("name", ""), f"{entry[key]:.6g}")])
        return out.getvalue()
    width = max(len(record["input"]) for record in records)
    lines = []
    for record in records:
        best = "  ".join(f"{entry.get('name', entry['class'])}: {entry[key]:.4f}"
                         for entry in record["top"])
        label = (f"  (label {record.get('label_name', record['label'])})" if labelled
                 else "")
        lines.append(f"{record['input']:<{width}}  {best}{label}")
    return "\n".join(lines) + "\n"
