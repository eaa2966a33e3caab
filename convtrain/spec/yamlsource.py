"""Reading YAML safely while remembering where every value came from.

A config error must name the file, the key path (``layers[2].kernel``) and the
line. PyYAML's ``safe_load`` forgets the lines, so we compose the node tree with
the safe loader and build plain Python values from it ourselves, recording the
line of each key path on the way. Only the safe loader ever sees the text: no
tag in a config can construct a Python object or run code.
"""

import difflib
import re

import yaml

from convtrain.errors import ConfigError, no_such


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
    choices = [str(c) for c in choices]
    # A choice that differs only in case is the likeliest typo ('adamW' means adamw, not adam).
    same = [c for c in choices if c.lower() == str(word).lower()]
    lowered = {c.lower(): c for c in choices}
    close = same or [lowered[c] for c in difflib.get_close_matches(str(word).lower(), lowered,
                                                                   n=1, cutoff=0.6)]
    return f" (did you mean '{close[0]}'?)" if close else ""


class Source:
    """The parsed YAML tree of one file plus the line of every key path."""

    def __init__(self, tree, file, lines):
        self.tree = tree
        self.file = file
        self.lines = lines
        self.overrides = {}  # key path -> the `--set KEY=VALUE` that wrote it

    def line_of(self, path):
        """Line of the closest recorded ancestor of `path` (1-based), or None."""
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return None

    def error(self, path, message):
        file, setting, line = self.file, self.override_near(path), self.line_of(path)
        if setting:
            # the value came from the flag: no line of the file holds it
            file, line = f"{file} with --set {setting}", None
        return ConfigError(message, file=file, path=format_path(path) or None, line=line)

    def override_near(self, path):
        """The `--set` that wrote at path, inside it or above it (None if none did): an
        error there is as likely the flag's as the file's."""
        path = tuple(path)
        for written, assignment in self.overrides.items():
            if path and (written[:len(path)] == path or path[:len(written)] == written):
                return assignment
        return None


def load_yaml(file, text=None):
    """Parse YAML text (read from `file` unless given) into a Source."""
    if text is None:
        try:
            with open(file, encoding="utf-8") as handle:
                text = handle.read()
        except FileNotFoundError:
            raise ConfigError(no_such("file"), file=file) from None
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
        raise _syntax_error(exc, file) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"YAML error: {exc}", file=file) from None
    finally:
        loader.dispose()
    if root is None:
        raise ConfigError("the file is empty; a network spec needs at least `input` and `layers`",
                          file=file)
    builder = _Builder(file)
    try:
        tree = builder.build(root, ())
    finally:
        builder.constructor.dispose()
    return Source(tree, file, builder.lines)


STANDARD_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")
MERGE_TAG = "tag:yaml.org,2002:merge"
MAX_VALUES = 1_000_000  # aliases can make a small file expand without bound ("billion laughs")


def _syntax_error(exc, file):
    """PyYAML's syntax error as a ConfigError at the line to fix. PyYAML marks where it
    noticed the problem: for an unclosed quote or bracket, or a key without its ':', that
    is a later line or the end of the file, and the line to fix is where its context (the
    quoted scalar, the simple key, the flow collection) began. For block structure the
    context is where the enclosing block began, often line 1, and the problem's line is
    the one to fix."""
    problem = exc.problem or "YAML syntax error"
    problem_line = exc.problem_mark.line + 1 if exc.problem_mark else None
    context_line = exc.context_mark.line + 1 if exc.context_mark else None
    if not exc.context:
        return ConfigError(f"YAML syntax error: {problem}", file=file,
                           line=problem_line or context_line)
    started_earlier = (exc.context.startswith(("while scanning", "while parsing a flow"))
                       and context_line is not None and problem_line is not None
                       and context_line < problem_line)
    if started_earlier:
        return ConfigError(f"YAML syntax error: {exc.context} that starts on this line, "
                           f"{problem} on line {problem_line}", file=file, line=context_line)
    return ConfigError(f"YAML syntax error: {exc.context}, {problem}", file=file,
                       line=problem_line or context_line)


class _Builder:
    """Composed YAML nodes -> plain dicts, lists and scalars, recording key-path lines."""

    def __init__(self, file):
        self.file = file
        self.lines = {}
        self.values = 0
        self.open_nodes = set()
        self.constructor = yaml.SafeLoader("")

    def error(self, path, node, message):
        return ConfigError(message, file=self.file, path=format_path(path) or None,
                           line=node.start_mark.line + 1)

    def build(self, node, path):
        self.lines.setdefault(path, node.start_mark.line + 1)
        self.values += 1
        if id(node) in self.open_nodes:
            raise self.error(path, node, "the YAML refers to itself through an alias")
        if self.values > MAX_VALUES:
            raise self.error(path, node, f"the YAML expands to more than {MAX_VALUES:,} "
                                         f"values through aliases")
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node, path)
        if node.tag not in STANDARD_TAGS:
            raise self.error(path, node, f"tag {node.tag} is not allowed: a config holds only "
                                         f"plain mappings, lists and values")
        self.open_nodes.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self.mapping(node, path)
            return [self.build(item, path + (i,)) for i, item in enumerate(node.value)]
        finally:
            self.open_nodes.discard(id(node))

    def mapping(self, node, path):
        out, merged = {}, []
        for key_node, value_node in node.value:
            if key_node.tag == MERGE_TAG:
                # `<<: *base` (or a list of them): keys written here win over merged ones.
                sources = value_node.value if isinstance(value_node, yaml.SequenceNode) \
                    else [value_node]
                for source in sources:
                    if not isinstance(source, yaml.MappingNode):
                        raise self.error(path, source, "`<<` must merge a mapping")
                    merged.append(self.build(source, path))
                continue
            key = self.scalar(key_node, path)
            if not isinstance(key, (str, int)) or isinstance(key, bool):
                raise self.error(path, key_node, f"keys must be names, not {key!r}")
            if key in out:
                raise self.error(path + (key,), key_node, f"duplicate key '{key}'")
            self.lines[path + (key,)] = key_node.start_mark.line + 1
            out[key] = self.build(value_node, path + (key,))
        for extra in merged:
            for key, value in extra.items():
                out.setdefault(key, value)
        return out

    def scalar(self, node, path):
        if not isinstance(node, yaml.ScalarNode):
            raise self.error(path, node, "a mapping or list cannot be used as a key")
        try:
            return self.constructor.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as exc:
            raise self.error(path, node, f"cannot read value: {exc.problem}") from None


def apply_override(source, assignment):
    """Apply one `--set key.path=value` to the tree; the value is read as YAML. A list index
    may also be written in brackets, `layers[0].filters`, the form error messages print
    (`format_path`), so that a path copied from an error works."""
    if "=" not in assignment:
        raise ConfigError(f"--set expects KEY=VALUE, got '{assignment}'")
    key, _, text = assignment.partition("=")
    parts = re.sub(r"\[(-?\d+)\]", r".\1", key.strip()).split(".")
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
    source.overrides[path] = assignment
