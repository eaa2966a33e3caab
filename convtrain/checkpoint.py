"""Atomic .npz checkpoints: weights, optimizer state, position in training, fingerprint.

Written to a temp file in the same folder, fsynced, then renamed over the old
one, so a crash at any moment leaves either the old or the new file, whole.
Layout: "param/<layer>.<key>", "opt/<layer>.<key>/<state>", and "meta", the
JSON of {epoch, step_in_epoch, global_step, optimizer_steps, best_val_acc,
fingerprint, seed, ...} stored as uint8 bytes (no pickles anywhere).
"""

import io
import json
import os
import tempfile
import zipfile

import numpy as np

from convtrain.errors import UserError
from convtrain.yamlsource import did_you_mean


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


def read_checkpoint(path):
    """Returns (params {"layer.key": array}, opt_state {"layer.key/state": array}, meta)."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
        with np.load(io.BytesIO(raw), allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
        meta = json.loads(arrays.pop("meta").tobytes().decode())
    except FileNotFoundError:
        raise UserError("checkpoint not found", file=path) from None
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
        raise UserError(f"not a convtrain checkpoint ({exc})", file=path) from None
    params = {k[len("param/"):]: v for k, v in arrays.items() if k.startswith("param/")}
    opt = {k[len("opt/"):]: v for k, v in arrays.items() if k.startswith("opt/")}
    return params, opt, meta


def load_into(checkpoint, path, config, network, optimizer=None):
    """Load a checkpoint (read by `read_checkpoint` from path) of this architecture into
    network (and optimizer). Returns its meta."""
    params, opt, meta = checkpoint
    if meta.get("fingerprint") != config.architecture_fingerprint():
        theirs = meta.get("architecture", "unknown")
        raise UserError(f"checkpoint is of another architecture ({theirs}) than "
                        f"{config.file} ({describe_architecture(config)})", file=path)
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


def load_weights(checkpoint, path, config, network, skip=()):
    """Copy a checkpoint's weights into network for fine-tuning (`train --init-from`):
    every layer but those named in `skip` must have the same parameter shapes there.
    Returns the names of the layers loaded."""
    params = checkpoint[0]
    names = [spec.name for spec in config.layers]
    for name in skip:
        if name not in names:
            raise UserError(f"no layer named '{name}' in {config.file}"
                            f"{did_you_mean(name, names)}", path="--init-from-skip")
    loaded = []
    for layer, key in network.parameters():
        if layer.name in skip:
            continue
        full = f"{layer.name}.{key}"
        mine = layer.params[key]
        theirs = params.get(full)
        if theirs is None or theirs.shape != mine.shape:
            there = "missing" if theirs is None else f"{list(theirs.shape)}"
            raise UserError(f"layer {layer.name}'s {key} is {there} in the checkpoint and "
                            f"{list(mine.shape)} in {config.file}; pass --init-from-skip "
                            f"{layer.name} to leave it at its initialisation", file=path)
        mine[...] = theirs
        if layer.name not in loaded:
            loaded.append(layer.name)
    return loaded
