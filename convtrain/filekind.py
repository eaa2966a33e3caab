"""What a file is, from its first bytes: for messages that say what a user passed instead
of what was expected ("not a convtrain checkpoint but a text file")."""

import codecs


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
