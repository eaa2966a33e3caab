"""The decoded images of an image folder, kept in one file inside it, so that only the
first run decodes them.

    FOLDER/.convtrain-cache-CxHxW[-resize].npz   images (N, C, H, W) uint8, labels (N,),
                                                 manifest: the SHA-256 of every image's
                                                 path, class, size, times and inode

The cache serves only while its manifest matches the folder's files: an image added,
removed, replaced, copied over or touched makes the next run decode them all again and
rewrite it. A
folder that cannot be written to is simply decoded every time.
"""

import hashlib
import io
import os
import zipfile

import numpy as np

from convtrain.outputs import OutputError, write_whole

VERSION = 1  # of the file's content; another version is stale


def cache_path(folder, input_shape, resize):
    shape = "x".join(str(n) for n in input_shape)
    return os.path.join(folder, f".convtrain-cache-{shape}{'-resize' if resize else ''}.npz")


def manifest(folder, files):
    """The digest of files [(path, label)], in order: their paths relative to folder,
    labels, sizes, modification times, and inode change times and numbers, which no copy
    keeps (cp -p, rsync -a and tar x set the modification time)."""
    digest = hashlib.sha256(f"convtrain folder cache {VERSION}\n".encode())
    for path, label in files:
        stat = os.stat(path)
        digest.update(f"{os.path.relpath(path, folder)}\t{label}\t{stat.st_size}\t"
                      f"{stat.st_mtime_ns}\t{stat.st_ctime_ns}\t{stat.st_ino}\n".encode())
    return digest.hexdigest()


def load(path, expected_manifest):
    """(images, labels) from the cache file at path if it holds expected_manifest's files,
    else None (missing, stale or unreadable: a cache is never an error)."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            if str(archive["manifest"]) != expected_manifest:
                return None
            return archive["images"], archive["labels"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None


def save(path, images, labels, manifest_digest):
    """Write the cache whole (convtrain.outputs.write_whole) or not at all. A folder that
    cannot take it (read-only, full, no permission) is no error: returns False."""
    buffer = io.BytesIO()
    np.savez(buffer, images=images, labels=labels, manifest=np.array(manifest_digest))
    try:
        write_whole(path, buffer.getbuffer())
    except OutputError:
        return False
    return True
