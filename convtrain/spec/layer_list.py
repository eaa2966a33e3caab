"""A config's `layers:`, and the layer lists of blocks inside it: each item's type looked up
in the registry (convtrain.layers.LAYER_TYPES), its full name given (`res1.c1`), its spec
parsed on the shape the layer below gives, and its size checked."""

import numpy as np

from convtrain.layers import LAYER_TYPES
from convtrain.spec.fields import Section
from convtrain.spec.yamlsource import did_you_mean

MAX_ELEMENTS = 2 ** 28  # per layer: 1 GiB of float32; more is a typo, not a network


def read_layers(top, input_shape):
    """The specs of the config's `layers:` (top: the config's top Section), checked."""
    items = top.get_raw("layers")
    if not isinstance(items, list) or not items:
        raise top.error("layers", "must be a non-empty list of layers, each a mapping with `type`")
    specs, resolved = _layer_list(top.source, ("layers",), items, input_shape, "", set())
    top.resolved["layers"] = resolved
    return specs


def _layer_list(source, path, items, shape, prefix, names, default_prefix=""):
    """The specs of a list of layers at `path` taking `shape`, their names prefixed (a
    block's layers: `res1.`), an unnamed one's number too (`shortcut_`, `path2_`); names
    holds every full name so far. Returns (specs, their resolved mappings)."""
    specs, resolved = [], []
    for index, item in enumerate(items):
        section = Section(source, path + (index,), item, f"layer {index}")
        kind = section.get_str("type")
        if kind not in LAYER_TYPES:
            raise section.error("type", f"unknown layer type '{kind}'"
                                        f"{did_you_mean(kind, LAYER_TYPES)}; known types: "
                                        f"{', '.join(LAYER_TYPES)}")
        spec_class = LAYER_TYPES[kind]
        stem = spec_class.name_stem or kind
        name = prefix + section.get_str("name", f"{default_prefix}{stem}{index + 1}")
        if name in names:
            raise section.error("name", f"layer name '{name}' is used twice")
        names.add(name)
        if spec_class.contains_layers:
            spec = spec_class.parse(section, index, name, shape,
                                    _nested_parser(section, shape, name, names))
        else:
            spec = spec_class.parse(section, index, name, shape)
        section.finish()
        for what, count in (("parameters", spec.param_count),
                            ("output values per sample", int(np.prod(spec.out_shape))),
                            ("values of working memory per sample", spec.scratch_per_sample())):
            if count > MAX_ELEMENTS:
                raise section.error(None, f"{kind} layer '{name}' on input "
                                          f"{list(spec.in_shape)} would have {count:,} {what}; "
                                          f"more than {MAX_ELEMENTS:,} is surely a typo")
        specs.append(spec)
        resolved.append(section.resolved)
        shape = spec.out_shape
    return tuple(specs), resolved


def _nested_parser(section, in_shape, name, names):
    """parse_layers(key, items, default_prefix) -> specs of a block's list of layers at `key`
    (a residual's "body", a branches block's ("paths", 1)), each taking the block's input
    and named `block.layer`. A path's resolved layers go in order into a list (replacing
    the raw list get_raw kept)."""
    def parse_layers(key, items, default_prefix=""):
        keys = key if isinstance(key, tuple) else (key,)
        specs, resolved = _layer_list(section.source, section.path + keys, items, in_shape,
                                      name + ".", names, default_prefix)
        if len(keys) == 1:
            section.resolved[key] = resolved
        else:
            section.resolved[keys[0]] = section.resolved[keys[0]][:keys[1]] + [resolved]
        return specs
    return parse_layers
