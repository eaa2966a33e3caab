"""Atomic .npz checkpoints: weights, optimizer state, position in training, fingerprint.

Written to a temp file in the same folder, fsynced, then renamed over the old
one, so a crash at any moment leaves either the old or the new file, whole.
Layout: "param/<layer>.<key>", "opt/<layer>.<key>/<state>", and "meta", the
JSON of {epoch, step_in_epoch, global_step, optimizer_steps, best_val_acc,
fingerprint, seed, ...} stored as uint8 bytes (no pickles anywhere).
"""

import codecs
import difflib
import io
import json
import os
import re
import shlex
import tempfile
import zipfile
import zlib
from dataclasses import dataclass

import numpy as np

from convtrain.errors import UserError
from convtrain.layer_specs import LAYER_SPECS, LayerSpec


def save_checkpoint(path, network, optimizer, meta):
    arrays = {f"param/{k}": v for k, v in network.state().items()}
    arrays.update({f"opt/{k}": v for k, v in optimizer.state.items()})
    arrays["meta"] = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)
    folder = os.path.dirname(os.path.abspath(path))
    handle, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=folder)
    try:
        with os.fdopen(handle, "wb") as out:
            np.savez(out, **arrays)
            out.flush()
            os.fsync(out.fileno())
        # mkstemp creates the file 0600; give it the mode any new file would get.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    directory = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


EXPECTED = "expected a checkpoint-*.npz written by `convtrain train`"


def read_checkpoint(path):
    """Returns (params {"layer.key": array}, opt_state {"layer.key/state": array}, meta).

    Anything else is a UserError that says what the file is instead. Nothing in it is
    unpickled, and NumPy's own messages (its advice to load pickles) are not passed on.
    """
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        raise UserError("checkpoint not found", file=path) from None
    except OSError as exc:
        raise UserError(f"cannot read the checkpoint: {exc.strerror or exc}", file=path) from None
    try:
        arrays = _npz_arrays(raw)
        meta = _convtrain_meta(arrays)
    except _NotACheckpoint as exc:
        raise UserError(f"not a convtrain checkpoint but {exc}; {EXPECTED}", file=path) from None
    params = {k[len("param/"):]: v for k, v in arrays.items() if k.startswith("param/")}
    opt = {k[len("opt/"):]: v for k, v in arrays.items() if k.startswith("opt/")}
    if _checkpoint_architecture(params, meta) is None:
        raise UserError("damaged checkpoint: its parameters are not those of the layers its "
                        "meta \"architecture\" lists", file=path)
    return params, opt, meta


class _NotACheckpoint(Exception):
    """Raised with what a file is instead of a checkpoint, as a phrase: "a text file"."""


def _npz_arrays(raw):
    """{name: array} of the .npz in raw bytes."""
    if not raw.startswith((b"PK\x03\x04", b"PK\x05\x06")):  # a zip's first entry, or none
        raise _NotACheckpoint(_what_file(raw))
    arrays = {}
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            for info in archive.infolist():
                if not info.filename.endswith(".npy"):
                    raise _NotACheckpoint(f"a zip archive of files that are not NumPy "
                                          f"arrays ({info.filename})")
                name = info.filename[:-len(".npy")]
                with archive.open(info) as member:
                    arrays[name] = _npy_array(member, name)
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError):
        raise _NotACheckpoint("a damaged or truncated .npz") from None
    return arrays


def _npy_array(handle, name):
    """One .npy entry of a .npz, from a seekable file. Its header is read first, so that
    an array of Python objects is named, never unpickled."""
    version = np.lib.format.read_magic(handle)
    read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                   (2, 0): np.lib.format.read_array_header_2_0}.get(version)
    if read_header is None:
        raise _NotACheckpoint(f"a .npz whose entry {name} is a .npy of version "
                              f"{version[0]}.{version[1]}, which convtrain never writes")
    _, _, dtype = read_header(handle)
    if dtype.hasobject:
        raise _NotACheckpoint(f"a .npz whose array \"{name}\" holds Python objects (pickled)")
    handle.seek(0)
    return np.lib.format.read_array(handle, allow_pickle=False)


def _what_file(raw):
    """What a file that is not a zip archive is, as far as its first bytes tell."""
    if not raw:
        return "an empty file"
    if raw.startswith(b"\x93NUMPY"):
        return "a single NumPy array (.npy)"
    if raw.startswith(b"\x80"):
        return "a Python pickle"
    head = raw[:4096]
    try:
        # An incremental decoder, so that a character cut at the 4096th byte is no error.
        text = codecs.getincrementaldecoder("utf-8")().decode(head)
    except UnicodeDecodeError:
        text = None
    if text is not None and "\x00" not in text:
        return "a text file"
    return "a file that is not a .npz (zip) archive"


def _convtrain_meta(arrays):
    """The "meta" entry (popped from arrays) as a dict, if it is the one convtrain writes."""
    if "meta" not in arrays:
        names = list(arrays)
        if not names:
            raise _NotACheckpoint("an empty .npz")
        listed = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        raise _NotACheckpoint(f"a .npz without convtrain's \"meta\" entry (arrays: {listed})")
    try:
        meta = json.loads(arrays.pop("meta").tobytes().decode())
    except ValueError:  # not UTF-8, or not JSON
        meta = None
    if not (isinstance(meta, dict) and isinstance(meta.get("fingerprint"), str)
            and _parse_architecture(meta.get("architecture")) is not None):
        raise _NotACheckpoint("a .npz whose \"meta\" entry is not convtrain's")
    return meta


def load_into(checkpoint, path, config, network, optimizer=None):
    """Load a checkpoint (read by `read_checkpoint` from path) of this architecture into
    network (and optimizer); one of another architecture is a UserError naming the first
    difference. Returns its meta."""
    params, opt, meta = checkpoint
    difference = architecture_mismatch(checkpoint, config)
    if difference:
        raise UserError(f"checkpoint is of another architecture than {config.file}: "
                        f"{difference}", file=path)
    network.load_state(params)
    if optimizer is not None:
        if meta.get("optimizer") != config.optimizer.type:
            raise UserError(f"checkpoint holds {meta.get('optimizer')} state but the config "
                            f"uses {config.optimizer.type}", file=path)
        optimizer.load_state(opt, meta["optimizer_steps"])
    return meta


def describe_architecture(config):
    parts = [f"{s.type}{list(s.out_shape)}" for s in config.layers]
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
    theirs = _checkpoint_architecture(params, meta)
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
    "parameter-free layers, which the checkpoint does not record: was one renamed?")


@dataclass
class _Layer:
    """One layer as a checkpoint or a config describes it."""
    name: str  # None for a checkpoint's parameter-free layers: it does not record them
    type: str
    out_shape: tuple
    params: dict  # key -> shape

    def key(self):
        # Parameters are stored by layer name, so a layer that has them is that name;
        # a parameter-free one is only its type.
        return ("params", self.name) if self.params else ("type", self.type)


@dataclass
class _Architecture:
    dtype: str
    input: tuple
    layers: list


def _config_architecture(config):
    return _Architecture(config.dtype, tuple(config.input), [
        _Layer(s.name, s.type, tuple(s.out_shape),
               {k: tuple(v) for k, v in s.param_shapes().items()}) for s in config.layers])


def _checkpoint_architecture(params, meta):
    """The checkpoint's network, or None if its parts disagree: meta "architecture"
    (`describe_architecture`) gives every layer's type and output shape, the arrays give
    the names and parameter shapes of the layers that have parameters, in network order.
    The names of parameter-free layers are recorded nowhere."""
    dtype, input_shape, sequence = _parse_architecture(meta["architecture"])
    shapes = {}
    for full_key, array in params.items():
        name, _, key = full_key.rpartition(".")
        shapes.setdefault(name, {})[key] = tuple(array.shape)
    layers = [_Layer(None, kind, out_shape, {}) for kind, out_shape in sequence]
    with_params = [layer for layer in layers if _has_params(layer.type)]
    if len(with_params) != len(shapes):
        return None
    for layer, (name, keys) in zip(with_params, shapes.items()):
        layer.name, layer.params = name, keys
    dtypes = [str(array.dtype) for array in params.values()]
    return _Architecture(dtypes[0] if dtypes else dtype, input_shape, layers)


_RECORD = re.compile(r"(\w+) (\[[\d, ]*\]) -> (.+)")
_RECORDED_LAYER = re.compile(r"(\w+)(\[[\d, ]*\])")


def _parse_architecture(text):
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


def _has_params(kind):
    """Whether layers of this type have parameters: their spec defines param_shapes."""
    spec = LAYER_SPECS.get(kind)
    return spec is not None and spec.param_shapes is not LayerSpec.param_shapes


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
    matcher = difflib.SequenceMatcher(None, [layer.key() for layer in theirs.layers],
                                      [layer.key() for layer in ours.layers], autojunk=False)
    for _, i1, i2, j1, j2 in matcher.get_opcodes():
        paired = min(i2 - i1, j2 - j1)
        for t, o in zip(theirs.layers[i1:i1 + paired], ours.layers[j1:j1 + paired]):
            if t.name not in skip and o.name not in skip:
                found.extend(_layer_differences(t, o, their_in == our_in, our_in))
            their_in, our_in = t.out_shape, o.out_shape
        for index in range(i1 + paired, i2):
            t = theirs.layers[index]
            if t.name not in skip:
                which = t.name if t.name is not None else index + 1
                found.append(f"the checkpoint's layer {which} ({t.type}) is not in the config")
            their_in = t.out_shape
        for o in ours.layers[j1 + paired:j2]:
            if o.name not in skip:
                found.append(f"the config's layer {o.name} ({o.type}) is not in the checkpoint")
            our_in = o.out_shape
    return found


def _layer_differences(t, o, same_input, our_in):
    """Differences between the checkpoint's layer t and the config's layer o, paired."""
    if t.type != o.type:
        return [f"layer {o.name} is a {t.type} in the checkpoint and a {o.type} in the config"]
    found = []
    if t.name is not None and t.name != o.name:
        found.append(f"layer {o.name} is named {t.name} in the checkpoint")
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
