"""Reading a data file whole (gunzipped when it is gzip), and what a file is, from its first
bytes: for messages that say what a user passed instead of what was expected ("not a
convtrain checkpoint but a text file")."""

import codecs
import gzip
import zipfile

from convtrain.errors import DataError, no_such


def what_file(raw):
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


def read_bytes(path, key_path):
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        raise DataError(no_such("file"),
                        file=path, path=key_path) from None
    except IsADirectoryError:
        raise DataError("is a directory, not a data file", file=path, path=key_path) from None
    except OSError as exc:
        raise DataError(f"cannot read: {exc.strerror}", file=path, path=key_path) from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zipfile.BadZipFile) as exc:
            raise DataError(f"broken gzip file ({exc})", file=path, path=key_path) from None
    return raw
