"""What a checkpoint's network is, and how it differs from a config's.

A checkpoint records its architecture as one line of text (`describe_architecture`)
and a fingerprint; its parameter arrays give the shapes. `architecture_mismatch`
compares that with a config and names the first difference, so a user sees which
layer changed instead of two long lists.
"""

import difflib
import json
import re
import shlex
from dataclasses import dataclass

from convtrain.layers import LAYER_TYPES, LayerSpec, walk


def describe_architecture(config):
    parts = [f"{s.type}{list(s.out_shape)}" for s in walk(config.layers)]
    return f"{config.dtype} {list(config.input)} -> " + " -> ".join(parts)


def architecture_mismatch(checkpoint, config, skip=()):
    """None if the checkpoint (what `read_checkpoint` returns) holds config's network, else
    one phrase: the first difference in network order, how many there are, and where to
    see the config's layers.

    skip: names of layers that may differ in anything or be in one and not the other (their
    parameters are not loaded). The fingerprint covers those layers too, so with a skip it
    is not compared; the layers are, one by one.
    """
    params, _, meta = checkpoint
    ours = _config_architecture(config)
    theirs = checkpoint_architecture(params, meta)
    found = _differences(theirs, ours, set(skip))
    if not found:
        if skip or meta["fingerprint"] == config.architecture_fingerprint():
            return None
        found = [_ONLY_THE_FINGERPRINT]
    count = f"first of {len(found)} differences; " if len(found) > 1 else ""
    return (f"{found[0]} ({count}`convtrain summary {shlex.quote(config.file)}` lists the "
            f"config's layers)")


_ONLY_THE_FINGERPRINT = (
    "its dtype, input, layer types, output shapes and parameters match the config, but its "
    "architecture fingerprint does not; the fingerprint also covers the names of "
    "parameter-free layers, which this (older) checkpoint does not record: was one renamed?")


@dataclass
class _Layer:
    """One layer as a checkpoint or a config describes it."""
    name: str  # None for a parameter-free layer of a checkpoint that predates layer_names
    type: str
    out_shape: tuple
    params: dict  # key -> shape

    def key(self, named):
        # With every name known (checkpoints record them since layer_names), a layer is
        # its name and type. Before that only a layer with parameters was its name (its
        # arrays are stored by it); a parameter-free one was only its type.
        if named:
            return (self.name, self.type)
        return ("params", self.name) if self.params else ("type", self.type)


@dataclass
class _Architecture:
    dtype: str
    input: tuple
    layers: list


def _config_architecture(config):
    return _Architecture(config.dtype, tuple(config.input), [
        _Layer(s.name, s.type, tuple(s.out_shape),
               {k: tuple(v) for k, v in {**s.param_shapes(), **s.buffer_shapes()}.items()})
        for s in walk(config.layers)])


def checkpoint_architecture(params, meta):
    """The checkpoint's network, or None if its parts disagree: meta "architecture"
    (`describe_architecture`) gives every layer's type and output shape, the arrays give
    the names and parameter shapes of the layers that have parameters, in network order.
    The names of parameter-free layers are recorded nowhere."""
    dtype, input_shape, sequence = parse_architecture(meta["architecture"])
    shapes = {}
    for full_key, array in params.items():
        name, _, key = full_key.rpartition(".")
        shapes.setdefault(name, {})[key] = tuple(array.shape)
    names = meta.get("layer_names")
    if not (isinstance(names, list) and len(names) == len(sequence)):
        names = [None] * len(sequence)
    layers = [_Layer(name, kind, out_shape, {})
              for name, (kind, out_shape) in zip(names, sequence)]
    with_params = [layer for layer in layers if _has_arrays(layer.type)]
    if len(with_params) != len(shapes):
        return None
    for layer, (name, keys) in zip(with_params, shapes.items()):
        if layer.name not in (None, name):
            return None
        layer.name, layer.params = name, keys
    dtypes = [str(array.dtype) for array in params.values()]
    return _Architecture(dtypes[0] if dtypes else dtype, input_shape, layers)


_RECORD = re.compile(r"(\w+) (\[[\d, ]*\]) -> (.+)")
_RECORDED_LAYER = re.compile(r"(\w+)(\[[\d, ]*\])")


def parse_architecture(text):
    """(dtype, input, [(type, out_shape)]) from `describe_architecture`'s text, or None."""
    whole = _RECORD.fullmatch(text) if isinstance(text, str) else None
    if whole is None:
        return None
    sequence = []
    for part in whole.group(3).split(" -> "):
        layer = _RECORDED_LAYER.fullmatch(part)
        if layer is None:
            return None
        sequence.append((layer.group(1), tuple(json.loads(layer.group(2)))))
    return whole.group(1), tuple(json.loads(whole.group(2))), sequence


def _has_arrays(kind):
    """Whether a checkpoint holds arrays for layers of this type: their spec defines
    param_shapes or buffer_shapes."""
    spec = LAYER_TYPES.get(kind)
    return spec is not None and (spec.param_shapes is not LayerSpec.param_shapes
                                 or spec.buffer_shapes is not LayerSpec.buffer_shapes)


def _a(kind):
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


def _shape(shape):
    return str(list(shape))


def _differences(theirs, ours, skip):
    """Every difference between the checkpoint's architecture and the config's, as phrases
    in network order. Layers are paired by a diff of the two sequences; a layer's output
    shape counts only when its input agrees, so one changed layer is not blamed on all
    the layers after it."""
    found = []
    if theirs.dtype != ours.dtype:
        found.append(f"the dtype is {theirs.dtype} in the checkpoint and {ours.dtype} in the "
                     f"config")
    if theirs.input != ours.input:
        found.append(f"the input is {_shape(theirs.input)} in the checkpoint and "
                     f"{_shape(ours.input)} in the config")
    their_in, our_in = theirs.input, ours.input
    named = all(layer.name is not None for layer in theirs.layers)
    matcher = difflib.SequenceMatcher(None, [layer.key(named) for layer in theirs.layers],
                                      [layer.key(named) for layer in ours.layers],
                                      autojunk=False)
    for _, i1, i2, j1, j2 in matcher.get_opcodes():
        paired = min(i2 - i1, j2 - j1)
        for t, o in zip(theirs.layers[i1:i1 + paired], ours.layers[j1:j1 + paired]):
            if t.name not in skip and o.name not in skip:
                found.extend(_layer_differences(t, o, their_in == our_in, our_in))
            their_in, our_in = t.out_shape, o.out_shape
        for index in range(i1 + paired, i2):
            t = theirs.layers[index]
            if t.name not in skip:
                which = t.name if t.name is not None else f"number {index + 1}"
                found.append(f"the checkpoint's layer {which} ({t.type}) is not in the config")
            their_in = t.out_shape
        for o in ours.layers[j1 + paired:j2]:
            if o.name not in skip:
                found.append(f"the config's layer {o.name} ({o.type}) is not in the checkpoint")
            our_in = o.out_shape
    return found


def _layer_differences(t, o, same_input, our_in):
    """Differences between the checkpoint's layer t and the config's layer o, paired."""
    if t.name is not None and t.name != o.name:
        return [f"where the config has layer {o.name} ({o.type}), the checkpoint has "
                f"{t.name} ({t.type})"]
    if t.type != o.type:
        return [f"layer {o.name} is {_a(t.type)} in the checkpoint and {_a(o.type)} in the "
                f"config"]
    found = []
    for key in dict.fromkeys([*t.params, *o.params]):
        theirs, ours = t.params.get(key), o.params.get(key)
        if theirs is None:
            found.append(f"layer {o.name} has a {key} in the config and none in the checkpoint")
        elif ours is None:
            found.append(f"layer {o.name} has a {key} in the checkpoint and none in the config")
        elif theirs != ours:
            found.append(f"layer {o.name}'s {key} is {_shape(theirs)} in the checkpoint and "
                         f"{_shape(ours)} in the config")
    if not found and same_input and t.out_shape != o.out_shape:
        found.append(f"layer {o.name}'s output is {_shape(t.out_shape)} in the checkpoint and "
                     f"{_shape(o.out_shape)} in the config from the same input "
                     f"{_shape(our_in)}")
    return found
