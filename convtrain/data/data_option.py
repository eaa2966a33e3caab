"""`eval --data PATH`: one data source named by its path alone, its format told from the
path (the config's `data:` sections name it with `format:`), read with the preparation the
network was trained with."""

import os
from dataclasses import replace

from convtrain.spec.data_spec import SourceSpec
from convtrain.errors import DataError, no_such

KEY = "--data"
ACCEPTED = ("a folder with one subfolder of images per class, a .npz (arrays x and y), a "
            ".csv (label, then pixels), MNIST's IDX images file (…-images-idx3-ubyte[.gz], "
            "its labels file beside it) or a CIFAR-10 binary folder or .tar.gz")


def source_from_path(spec, path):
    """The SourceSpec that reads PATH as the config's data.train is read: its scale, mean
    and std always (the network expects them), and its reading options (layout, the npz
    keys, the csv header, resize) where PATH has the same format."""
    fields = _format_fields(path)
    base = spec.data.train or spec.data.val
    kept = {}
    if base is not None:
        kept = {"scale": base.scale, "mean": base.mean, "std": base.std}
        if base.format == fields["format"]:
            kept.update(layout=base.layout, x_key=base.x_key, y_key=base.y_key,
                        header=base.header, resize=base.resize)
    return replace(SourceSpec(key_path=KEY, **fields), **kept)


def _format_fields(path):
    """{format, and the path keys of that format} for PATH, or a DataError naming what
    --data accepts."""
    if not os.path.exists(path):
        raise DataError(no_such("file or folder"),
                        file=path, path=KEY)
    name = os.path.basename(os.path.normpath(path)).lower()
    if os.path.isdir(path):
        if _has_cifar_batches(path):
            return {"format": "cifar10", "path": path, "split": "test"}
        return {"format": "folder", "path": path}
    if name.endswith((".tar.gz", ".tgz")) and "cifar" in name:
        return {"format": "cifar10", "path": path, "split": "test"}
    if name.endswith(".npz"):
        return {"format": "npz", "path": path}
    if name.endswith(".csv"):
        return {"format": "csv", "path": path}
    if "images-idx3" in name:
        labels = os.path.join(os.path.dirname(path),
                              os.path.basename(path).replace("images-idx3", "labels-idx1"))
        if not os.path.exists(labels):
            raise DataError(f"an IDX images file needs its labels beside it: no "
                            f"{os.path.basename(labels)} here", file=path, path=KEY)
        return {"format": "idx", "images": path, "labels": labels}
    raise DataError(f"cannot tell the data format from the name; {KEY} takes {ACCEPTED} "
                    f"(another source: --set data.val={{format: …}})", file=path, path=KEY)


def _has_cifar_batches(path):
    for folder in (path, os.path.join(path, "cifar-10-batches-bin")):
        if os.path.isfile(os.path.join(folder, "test_batch.bin")):
            return True
    return False


def load_data_option(spec, path, trained_names):
    """(images, labels, class names) of PATH for eval. A folder's classes must be the
    first of those the checkpoint was trained on, in order (as data.val's must be those
    of data.train): else its labels would mean other classes."""
    import numpy as np

    from convtrain.data.sources import _source_classes, load_source

    source = source_from_path(spec, path)
    names = _source_classes(source)
    if names and trained_names and names != list(trained_names)[:len(names)]:
        raise DataError(f"has the classes {', '.join(names)}, but the checkpoint was trained "
                        f"on {', '.join(trained_names)}: a label would mean another class",
                        file=path, path=KEY)
    x, y = load_source(source, spec.input, spec.num_outputs, np.dtype(spec.dtype))
    return x, y, trained_names or names
