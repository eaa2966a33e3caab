"""Reading YAML safely while remembering where every value came from.

A config error must name the file, the key path (``layers[2].kernel``) and the
line. PyYAML's ``safe_load`` forgets the lines, so we compose the node tree with
the safe loader and build plain Python values from it ourselves, recording the
line of each key path on the way. Only the safe loader ever sees the text: no
tag in a config can construct a Python object or run code.
"""

import difflib

import yaml

from convtrain.errors import ConfigError


def format_path(path):
    """('layers', 2, 'kernel') -> 'layers[2].kernel'."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def did_you_mean(word, choices):
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


class Source:
    """The parsed YAML tree of one file plus the line of every key path."""

    def __init__(self, tree, file, lines):
        self.tree = tree
        self.file = file
        self.lines = lines

    def line_of(self, path):
        """Line of the closest recorded ancestor of `path` (1-based), or None."""
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return None

    def error(self, path, message):
        return ConfigError(message, file=self.file, path=format_path(path) or None,
                           line=self.line_of(path))


def load_yaml(file, text=None):
    """Parse YAML text (read from `file` unless given) into a Source."""
    if text is None:
        try:
            with open(file, encoding="utf-8") as handle:
                text = handle.read()
        except FileNotFoundError:
            raise ConfigError("no such file", file=file) from None
        except IsADirectoryError:
            raise ConfigError("is a directory, not a YAML file", file=file) from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"not UTF-8 text ({exc.reason})", file=file) from None
        except OSError as exc:
            raise ConfigError(f"cannot read: {exc.strerror}", file=file) from None
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or "YAML syntax error"
        if exc.context:
            problem = f"{exc.context}, {problem}"
        raise ConfigError(f"YAML syntax error: {problem}", file=file,
                          line=mark.line + 1 if mark else None) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"YAML error: {exc}", file=file) from None
    finally:
        loader.dispose()
    if root is None:
        raise ConfigError("the file is empty; a network spec needs at least `input` and `layers`",
                          file=file)
    lines = {}
    tree = _build(root, (), lines, file)
    return Source(tree, file, lines)


STANDARD_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")


def _build(node, path, lines, file):
    lines.setdefault(path, node.start_mark.line + 1)
    if not isinstance(node, yaml.ScalarNode) and node.tag not in STANDARD_TAGS:
        raise ConfigError(f"tag {node.tag} is not allowed: a config holds only plain "
                          f"mappings, lists and values", file=file,
                          path=format_path(path) or None, line=node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node, path, file)
            if not isinstance(key, (str, int)) or isinstance(key, bool):
                raise ConfigError(f"keys must be names, not {key!r}", file=file,
                                  path=format_path(path) or None, line=key_node.start_mark.line + 1)
            if key in out:
                raise ConfigError(f"duplicate key '{key}'", file=file,
                                  path=format_path(path + (key,)), line=key_node.start_mark.line + 1)
            lines[path + (key,)] = key_node.start_mark.line + 1
            out[key] = _build(value_node, path + (key,), lines, file)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, path + (i,), lines, file) for i, item in enumerate(node.value)]
    return _scalar(node, path, file)


def _scalar(node, path, file):
    if not isinstance(node, yaml.ScalarNode):
        raise ConfigError("a mapping or list cannot be used as a key", file=file,
                          path=format_path(path) or None, line=node.start_mark.line + 1)
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    except yaml.constructor.ConstructorError as exc:
        raise ConfigError(f"cannot read value: {exc.problem}", file=file,
                          path=format_path(path) or None, line=node.start_mark.line + 1) from None
    finally:
        loader.dispose()


def apply_override(source, assignment):
    """Apply one `--set key.path=value` to the tree; the value is read as YAML."""
    if "=" not in assignment:
        raise ConfigError(f"--set expects KEY=VALUE, got '{assignment}'")
    key, _, text = assignment.partition("=")
    parts = [p for p in key.strip().split(".")]
    if not key.strip() or any(p == "" for p in parts):
        raise ConfigError(f"--set: bad key path '{key}'")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        value = text
    node = source.tree
    path = ()
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.lstrip("-").isdigit() or not -len(node) <= int(part) < len(node):
                raise ConfigError(f"--set {key}: '{format_path(path)}' is a list of {len(node)} "
                                  f"items; '{part}' is not an index into it")
            index = int(part) % len(node)
            path += (index,)
            if last:
                node[index] = value
            else:
                node = node[index]
        elif isinstance(node, dict):
            part_key = part
            path += (part_key,)
            if last:
                node[part_key] = value
            else:
                if part_key not in node or node[part_key] is None:
                    node[part_key] = {}
                node = node[part_key]
        else:
            raise ConfigError(f"--set {key}: '{format_path(path)}' is a value, not a mapping or list")
    source.lines[path] = None
