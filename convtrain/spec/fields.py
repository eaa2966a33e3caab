"""Typed, checked reads of one YAML mapping, with errors that name key and line.

A `Section` wraps one mapping of the config. Each `get_*` call reads one key,
checks it and records the resolved value (defaults filled in), so that the
resolved config written next to a run is exactly what was validated.
`finish()` rejects every key nobody asked for, with a did-you-mean hint.
"""

import math
import os

from convtrain.spec.yamlsource import did_you_mean

MISSING = object()


def _type_name(value):
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a boolean ({value})"
    if isinstance(value, int):
        return f"an integer ({value})"
    if isinstance(value, float):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"a string ('{value}')"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _found_instead(key, others):
    """' (the mapping has 'filtres': misspelt?)' where a key present is close to the
    missing one, else ''."""
    close = did_you_mean(key, others)
    if not close:
        return ""
    found = close.split("'")[1]
    return f" (it has '{found}': misspelt?)"


class Section:
    def __init__(self, source, path, value, what="this section"):
        if not isinstance(value, dict):
            raise source.error(path, f"{what} must be a mapping of keys to values, "
                                     f"got {_type_name(value)}")
        self.source = source
        self.path = tuple(path)
        self.raw = value
        self.seen = set()
        self.resolved = {}

    def error(self, key, message):
        path = self.path + ((key,) if key is not None else ())
        return self.source.error(path, message)

    def has(self, key):
        return key in self.raw and self.raw[key] is not None

    def _take(self, key, default):
        self.seen.add(key)
        if key not in self.raw or self.raw[key] is None:
            if default is MISSING:
                unknown = [k for k in self.raw if isinstance(k, str) and k != key]
                raise self.error(None, f"missing required key '{key}'"
                                       f"{_found_instead(key, unknown)}")
            return MISSING
        return self.raw[key]

    def _keep(self, key, value):
        self.resolved[key] = value
        return value

    def get_raw(self, key, default=MISSING):
        value = self._take(key, default)
        return self._keep(key, default if value is MISSING else value)

    def get_int(self, key, default=MISSING, minimum=None):
        value = self._take(key, default)
        if value is MISSING:
            return self._keep(key, default)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"must be an integer, got {_type_name(value)}")
        if minimum is not None and value < minimum:
            raise self._below_minimum(key, minimum, value)
        return self._keep(key, value)

    def get_float(self, key, default=MISSING, minimum=None, maximum=None, positive=False,
                  below=None):
        value = self._take(key, default)
        if value is MISSING:
            return self._keep(key, default)
        if isinstance(value, str):
            # PyYAML reads 1e-3 (no dot) as a string; accept what is plainly a number.
            try:
                value = float(value)
            except ValueError:
                raise self.error(key, f"must be a number, got {_type_name(value)}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(key, f"must be a number, got {_type_name(value)}")
        value = float(value)
        if not math.isfinite(value):
            raise self.error(key, f"must be a finite number, got {value}")
        if positive and value <= 0:
            raise self.error(key, f"must be greater than 0, got {value:g}")
        if minimum is not None and value < minimum:
            raise self._below_minimum(key, minimum, value)
        if maximum is not None and value > maximum:
            raise self.error(key, f"must be at most {maximum:g}, got {value:g}")
        if below is not None and value >= below:
            raise self.error(key, f"must be less than {below:g}, got {value:g}")
        return self._keep(key, value)

    def get_bool(self, key, default=MISSING):
        value = self._take(key, default)
        if value is MISSING:
            return self._keep(key, default)
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false, got {_type_name(value)}")
        return self._keep(key, value)

    def get_str(self, key, default=MISSING):
        value = self._take(key, default)
        if value is MISSING:
            return self._keep(key, default)
        if not isinstance(value, str) or not value:
            raise self.error(key, f"must be a non-empty string, got {_type_name(value)}")
        return self._keep(key, value)

    def get_path(self, key):
        """A file or folder path, returned as written (relative paths start at the working
        directory, and errors name the path as the user wrote it) and recorded absolute:
        the resolved config in a run folder then names the same data from any directory,
        so the resume command it prints works wherever it is pasted."""
        value = self.get_str(key)
        self.resolved[key] = os.path.abspath(value)
        return value

    def get_choice(self, key, choices, default=MISSING):
        value = self._take(key, default)
        if value is MISSING:
            return self._keep(key, default)
        if value not in choices:
            raise self.error(key, f"unknown value {value!r}{did_you_mean(value, choices)}; "
                                  f"choose one of: {', '.join(choices)}")
        return self._keep(key, value)

    def get_pair(self, key, default=MISSING, minimum=1, allow=(), sides=False):
        """An int, or [a, b]; returns (a, b). Strings in `allow` pass through. sides: four
        numbers [top, left, bottom, right] (ONNX's order of pads) are taken too and returned
        as they are."""
        value = self._take(key, default)
        if value is MISSING:
            self._keep(key, default if isinstance(default, int) else list(default))
            return (default, default) if isinstance(default, int) else tuple(default)
        if isinstance(value, str) and value in allow:
            return self._keep(key, value)
        four = " or four [top, left, bottom, right]" if sides else ""
        if isinstance(value, (list, tuple)):
            if len(value) != 2 and not (sides and len(value) == 4):
                raise self.error(key, f"must be an integer or a pair [h, w]{four}, got a list "
                                      f"of {len(value)}")
            items = list(value)
        else:
            items = [value, value]
        for item in items:
            if isinstance(item, bool) or not isinstance(item, int):
                choices = " or " + " or ".join(f"'{a}'" for a in allow) if allow else ""
                raise self.error(key, f"must be an integer or a pair [h, w]{four}{choices}, "
                                      f"got {_type_name(value)}")
            if item < minimum:
                raise self._below_minimum(key, minimum, item)
        result = tuple(items)
        self._keep(key, value if isinstance(value, int) else list(result))
        return result

    def section(self, key, default=MISSING, what=None):
        value = self._take(key, default)
        if value is MISSING:
            value = {} if default is MISSING else default
        sub = Section(self.source, self.path + (key,), value, what or f"'{key}'")
        self.resolved[key] = sub.resolved
        return sub

    def reject_unknown(self, known):
        """Check keys against a fixed list up front, so a misspelt required key is
        reported as the misspelling rather than as missing."""
        for key in self.raw:
            if key not in known:
                raise self._unknown(key, known, ", ".join(known))

    def finish(self, extra_known=()):
        known = list(self.seen) + list(extra_known)
        for key in self.raw:
            if key not in known:
                raise self._unknown(key, known, ", ".join(sorted(map(str, known))))

    def _unknown(self, key, known, listed):
        return self.error(key, f"unknown key '{key}'{did_you_mean(key, known)}; known keys "
                               f"here: {listed}")

    def _below_minimum(self, key, minimum, value):
        def number(v):
            return f"{v:g}" if isinstance(v, float) else str(v)
        return self.error(key, f"must be at least {number(minimum)}, got {number(value)}")
