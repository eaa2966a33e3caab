"""What layer specs read and compute alike: arrays given in the config, checked against
their shapes, and a window op's padding and output size
(OH = (H + pad_top + pad_bottom - KH) // SH + 1)."""

import numpy as np


def as_array(section, key, shape):
    """Read a nested list of numbers of exactly `shape` (float64), or None."""
    if not section.has(key):
        section.get_raw(key, None)
        return None
    value = section.get_raw(key)
    try:
        array = np.asarray(value, dtype=np.float64)
    except (ValueError, TypeError):
        raise section.error(key, "must be a nested list of numbers with the same length "
                                 "at each level") from None
    if array.shape != tuple(shape):
        raise section.error(key, f"has shape {list(array.shape)}, expected {list(shape)}")
    if not np.all(np.isfinite(array)):
        raise section.error(key, "contains a value that is not finite")
    return array


def require_image(section, in_shape, kind):
    if len(in_shape) != 3:
        raise section.error(None, f"{kind} needs an image input (C, H, W), but the layer below "
                                  f"gives a vector of {in_shape[0]}; put it before "
                                  f"flatten/dense")


def window(section, name, in_shape, kernel, stride, padding, what):
    """Resolve padding (a pair (h, w), four (top, left, bottom, right), 'same' or 'valid')
    into (top, bottom, left, right), and the output size of a window."""
    _, height, width = in_shape
    if padding == "same":
        pads = []
        for size, k, s in ((height, kernel[0], stride[0]), (width, kernel[1], stride[1])):
            out = -(-size // s)
            total = max((out - 1) * s + k - size, 0)
            pads.append((total // 2, total - total // 2))
        (top, bottom), (left, right) = pads
    elif padding == "valid":
        top = bottom = left = right = 0
    elif len(padding) == 4:
        top, left, bottom, right = padding
    else:
        top = bottom = padding[0]
        left = right = padding[1]
    padded_h, padded_w = height + top + bottom, width + left + right
    if kernel[0] > padded_h or kernel[1] > padded_w:
        padded = ("" if (padded_h, padded_w) == (height, width)
                  else f" padded to {padded_h}x{padded_w}")
        raise section.error("kernel" if "kernel" in section.raw else "size",
                            f"{what} {kernel[0]}x{kernel[1]} is larger than its input "
                            f"{height}x{width}{padded} (layer {name}, "
                            f"{section.raw.get('type')})")
    out_h = (padded_h - kernel[0]) // stride[0] + 1
    out_w = (padded_w - kernel[1]) // stride[1] + 1
    return (top, bottom, left, right), (out_h, out_w)


def weights_and_biases(section, weight_shape, bias):
    """The `weights:` and `biases:` a conv2d or dense layer was given (or None each), of the
    shapes its parameters have; biases only where the layer has them."""
    weights = as_array(section, "weights", weight_shape)
    biases = as_array(section, "biases", weight_shape[:1])
    if biases is not None and not bias:
        raise section.error("biases", "given, but the layer has `bias: false`")
    return weights, biases
