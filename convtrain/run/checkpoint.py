"""Atomic .npz checkpoints: weights, optimizer state, position in training, fingerprint.

Written to a temp file in the same folder, fsynced, then renamed over the old
one (convtrain.outputs), so a crash at any moment leaves either the old or the new file,
whole.
Layout: "param/<layer>.<key>", "opt/<layer>.<key>/<state>", and "meta", the
JSON of {epoch, step_in_epoch, global_step, optimizer_steps, best_val_acc,
fingerprint, seed, preparation, classes, ...} stored as uint8 bytes (no pickles anywhere).
Loading checks that a checkpoint fits the config: its architecture (load_into), and for
eval, predict and export its input preparation, loss and classes (matching_classes).
"""

import io
import json
import os
import zipfile
import zlib

import numpy as np

from convtrain.spec.architecture import (
    architecture_mismatch,
    checkpoint_architecture,
    parse_architecture,
)
from convtrain.errors import UserError, no_such
from convtrain.data.filekind import what_file
from convtrain.layers import walk
from convtrain.outputs import write_whole
from convtrain.spec.yamlsource import did_you_mean


def save_checkpoint(path, network, optimizer, meta, flag=None):
    """Write the checkpoint whole or not at all (convtrain.outputs.write_whole): a failed
    write is an OutputError, and the checkpoint there before is left as it was."""
    arrays = {f"param/{k}": v for k, v in network.state().items()}
    arrays.update({f"opt/{k}": v for k, v in optimizer.state.items()})
    arrays["meta"] = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_whole(path, buffer.getbuffer(), flag,
                kept="the checkpoint there before, if any, is whole and unchanged")


EXPECTED = "expected a checkpoint-*.npz written by `convtrain train`"


def read_checkpoint(path):
    """Returns (params {"layer.key": array}, opt_state {"layer.key/state": array}, meta).

    Anything else is a UserError that says what the file is instead. Nothing in it is
    unpickled, and NumPy's own messages (its advice to load pickles) are not passed on.
    """
    if os.path.isdir(path):
        inside = [name for name in ("checkpoint-best.npz", "checkpoint-last.npz")
                  if os.path.exists(os.path.join(path, name))]
        hint = f": give a file in it ({' or '.join(inside)})" if inside else ""
        raise UserError(f"is a folder, not a checkpoint{hint}", file=path)
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        raise UserError(no_such("checkpoint") + _checkpoints_beside(path), file=path) from None
    except OSError as exc:
        raise UserError(f"cannot read the checkpoint: {exc.strerror or exc}", file=path) from None
    try:
        arrays = _npz_arrays(raw)
        meta = _convtrain_meta(arrays)
    except _NotACheckpoint as exc:
        raise UserError(f"not a convtrain checkpoint but {exc}; {EXPECTED}", file=path) from None
    params = {k[len("param/"):]: v for k, v in arrays.items() if k.startswith("param/")}
    opt = {k[len("opt/"):]: v for k, v in arrays.items() if k.startswith("opt/")}
    if checkpoint_architecture(params, meta) is None:
        raise UserError("damaged checkpoint: its parameters are not those of the layers its "
                        "meta \"architecture\" lists", file=path)
    return params, opt, meta


class _NotACheckpoint(Exception):
    """Raised with what a file is instead of a checkpoint, as a phrase: "a text file"."""


def _npz_arrays(raw):
    """{name: array} of the .npz in raw bytes."""
    if not raw.startswith((b"PK\x03\x04", b"PK\x05\x06")):  # a zip's first entry, or none
        raise _NotACheckpoint(what_file(raw))
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
            and parse_architecture(meta.get("architecture")) is not None):
        raise _NotACheckpoint("a .npz whose \"meta\" entry is not convtrain's")
    return meta


def _checkpoints_beside(path):
    """'; its folder holds checkpoint-best.npz, …' where the folder exists, else ''."""
    folder = os.path.dirname(path) or "."
    if not os.path.isdir(folder):
        return ""
    there = sorted(name for name in os.listdir(folder) if name.endswith(".npz"))
    if not there:
        return f"; {folder} holds no .npz"
    more = f" and {len(there) - 4} more" if len(there) > 4 else ""
    return f"; {folder} holds {', '.join(there[:4])}{more}"


def load_into(checkpoint, path, config, network, optimizer=None):
    """Load a checkpoint (read by `read_checkpoint` from path) of this architecture into
    network (and optimizer); one of another architecture is a UserError naming the first
    difference. Returns its meta."""
    params, opt, meta = checkpoint
    difference = architecture_mismatch(checkpoint, config)
    if difference:
        raise _other_architecture(config, difference, path)
    network.load_state(params)
    if optimizer is not None:
        if meta.get("optimizer") != config.optimizer.type:
            raise UserError(f"checkpoint holds {meta.get('optimizer')} state but the config "
                            f"uses {config.optimizer.type}", file=path)
        optimizer.load_state(opt, meta["optimizer_steps"])
    return meta


def _other_architecture(config, difference, path, hint=""):
    return UserError(f"checkpoint is of another architecture than {config.file}: {difference}"
                     f"{hint}", file=path)


def load_weights(checkpoint, path, config, network, skip=()):
    """Copy a checkpoint's weights into network for fine-tuning (`train --init-from`):
    the architectures must match but for the layers named in `skip`, which keep their
    initialisation. Returns the names of the layers loaded."""
    params = checkpoint[0]
    names = [spec.name for spec in walk(config.layers)]
    for name in skip:
        if name not in names:
            raise UserError(f"no layer named '{name}' in {config.file}"
                            f"{did_you_mean(name, names)}", path="--init-from-skip")
    # Skipping a residual block skips every layer inside it.
    skip = {name for name in names if any(name == s or name.startswith(s + ".") for s in skip)}
    difference = architecture_mismatch(checkpoint, config, skip)
    if difference:
        raise _other_architecture(config, difference, path, "; --init-from-skip LAYER "
                                                            "leaves a layer at its initialisation")
    loaded = []
    for layer, key in network.parameters():
        if layer.name not in skip:
            layer.params[key][...] = params[f"{layer.name}.{key}"]
            loaded.append(layer.name)
    return list(dict.fromkeys(loaded))


def preparation(config):
    """How the network's inputs were prepared and its outputs read: data.train's scale,
    mean and std, and the loss. A checkpoint keeps it, so that eval, predict and export
    can refuse a config that would feed it differently."""
    source = config.data.train
    return {"scale": source.scale if source else 1.0,
            "mean": list(source.mean) if source and source.mean else None,
            "std": list(source.std) if source and source.std else None,
            "loss": config.loss}


def matching_classes(meta, spec, checkpoint, data_names=None):
    """The checkpoint's class names (or data_names); refuses a config that would prepare
    inputs, or read outputs, otherwise than the checkpoint's training did, and data whose
    classes are others."""
    trained, ours = meta.get("preparation"), preparation(spec)
    if trained and trained != ours:
        differ = "; ".join(f"{key} {trained.get(key)} there, {ours[key]} here"
                           for key in ours if trained.get(key) != ours[key])
        raise UserError(f"the checkpoint was trained with other input preparation or loss "
                        f"({differ}): give the config it was trained with, its run folder's "
                        f"config.yaml", file=checkpoint)
    names = meta.get("classes")
    if names and data_names and names != data_names:
        raise UserError(f"the checkpoint was trained on the classes {', '.join(names)}, but "
                        f"the config's data has {', '.join(data_names)}: its labels would "
                        f"mean other classes", file=checkpoint)
    return names or data_names
