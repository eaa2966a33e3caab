"""The `data:` section of a config -> frozen DataSpec: which sources, where, how read."""

from dataclasses import dataclass

FORMATS = ("idx", "npz", "csv", "cifar10", "folder", "builtin")
BUILTINS = ("digits",)
CIFAR_INPUT = (3, 32, 32)


@dataclass(frozen=True)
class AugmentSpec:
    pad_crop: int = 0   # pad by this many pixels, then crop back to size at a random place
    flip: bool = False  # flip horizontally with probability 1/2


@dataclass(frozen=True)
class SourceSpec:
    """Where samples come from. `path`s are relative to the working directory (the
    resolved config holds them absolute: fields.Section.get_path).

    `layout` is the order of each image's stored values: `nchw` (channels first, what
    convtrain computes in) or `nhwc` (channels last, transposed once at load). For a flat
    row per image (CSV, a flat NPZ) it is the order of that row: nhwc means pixel by pixel,
    (r, g, b, r, g, b, ...). One-channel (N, H, W) data reads the same either way.
    """
    PATH_FIELDS = ("path", "images", "labels")  # the fields that name files or folders

    format: str
    key_path: str
    images: str = None
    labels: str = None
    path: str = None
    x_key: str = "x"
    y_key: str = "y"
    header: bool = False
    name: str = None
    scale: float = 1.0
    limit: int = None
    layout: str = "nchw"
    split: str = "train"  # cifar10: which batch files, train (data_batch_1..5) or test
    resize: bool = False  # folder: resize images to input's size instead of refusing others
    mean: tuple = None    # per channel, subtracted after `scale`
    std: tuple = None     # per channel, divided by after `mean`
    augment: AugmentSpec = None  # data.train only


@dataclass(frozen=True)
class DataSpec:
    train: SourceSpec = None
    val: SourceSpec = None
    val_split: float = 0.0


def read_data(section, input_shape):
    """The `data:` section: data.train, and data.val as a source or a split of train."""
    train = (_source(section.section("train"), "data.train", input_shape) if section.has("train")
             else None)
    section.seen.add("train")
    val, split = None, 0.0
    if section.has("val"):
        val_section = section.section("val")
        if "split" in val_section.raw and "format" not in val_section.raw:
            # a fraction of the train source; a source of its own (cifar10's
            # split: test) has a format
            split = val_section.get_float("split", positive=True, below=1.0)
            val_section.finish()
        else:
            val = _source(val_section, "data.val", input_shape)
    section.seen.add("val")
    section.finish()
    return DataSpec(train, val, split)


def _source(section, key_path, input_shape):
    fmt = section.get_choice("format", FORMATS)
    channels = input_shape[0]
    if fmt == "cifar10" and tuple(input_shape) != CIFAR_INPUT:
        # Named at `input`, the likelier slip, before mean and std are checked against it.
        raise section.source.error(("input",), f"is {list(input_shape)}, but {key_path} is "
                                               f"CIFAR-10, whose images are "
                                               f"{list(CIFAR_INPUT)} (R, G, B, 32x32)")
    scale = section.get_float("scale", 1.0, positive=True)
    layout = section.get_choice("layout", ("nchw", "nhwc"), "nchw")
    limit = section.get_int("limit", None, minimum=1) if section.has("limit") else None
    section.seen.add("limit")
    normalise = {key: _per_channel(section, key, channels) for key in ("mean", "std")}
    if section.has("augment"):
        if key_path != "data.train":
            raise section.error("augment", "augments training samples only: put it in "
                                           "data.train")
        augment_section = section.section("augment")
        normalise["augment"] = AugmentSpec(augment_section.get_int("pad_crop", 0, minimum=0),
                                           augment_section.get_bool("flip", False))
        augment_section.finish()
    elif key_path == "data.train":
        section.seen.add("augment")  # known here: named among the keys a misspelling lists
    if normalise["std"] is not None and min(normalise["std"]) <= 0:
        raise section.error("std", f"must be greater than 0 for every channel, got "
                                   f"{list(normalise['std'])}")
    fields = {}
    if fmt == "idx":
        fields = {"images": section.get_path("images"), "labels": section.get_path("labels")}
    elif fmt == "npz":
        fields = {"path": section.get_path("path"), "x_key": section.get_str("x", "x"),
                  "y_key": section.get_str("y", "y")}
    elif fmt == "csv":
        fields = {"path": section.get_path("path"), "header": section.get_bool("header", False)}
    elif fmt == "cifar10":
        if isinstance(section.raw.get("split"), (int, float)) and key_path == "data.val":
            raise section.error("split", "a cifar10 source's split is train or test; a "
                                         "fraction of data.train is data.val: {split: f}, "
                                         "without a format")
        fields = {"path": section.get_path("path"),
                  "split": section.get_choice("split", ("train", "test"), "train")}
    elif fmt == "folder":
        fields = {"path": section.get_path("path"), "resize": section.get_bool("resize", False)}
    else:
        fields = {"name": section.get_choice("name", BUILTINS)}
    section.finish()
    return SourceSpec(fmt, key_path, scale=scale, limit=limit, layout=layout, **normalise,
                      **fields)


def _per_channel(section, key, channels):
    """`mean` or `std`: one number per input channel (a plain number for one channel), or
    None."""
    if not section.has(key):
        section.get_raw(key, None)
        return None
    value = section.get_raw(key)
    values = value if isinstance(value, list) else [value]
    if len(values) != channels or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                          for v in values):
        raise section.error(key, f"must be {channels} number{'s' if channels > 1 else ''}, one "
                                 f"per input channel, got {value!r}")
    return tuple(float(v) for v in values)
