"""residual: out = body(x) + shortcut(x), the shortcut the identity when it has no layers:
a `branches` block of two paths and merge add, read from its own keys.

Backward hands the delta at the block's output to both branches unchanged (the derivative
of a sum) and adds the deltas they hand down: dx = dbody + dshortcut."""

from dataclasses import dataclass

from convtrain.layers.branches import BranchesSpec


@dataclass(frozen=True)
class ResidualSpec(BranchesSpec):
    """output = body(x) + shortcut(x); no shortcut layers: the identity. Its layers' names
    are full names, the block's name first: `res1.conv1`."""

    type = "residual"
    name_stem = "res"
    path_labels = ("body", "shortcut")

    @property
    def body(self):
        return self.paths[0]

    @property
    def shortcut(self):
        return self.paths[1]

    @classmethod
    def parse(cls, section, index, name, in_shape, parse_layers):
        """body (required) and shortcut (optional): lists of layers, read by
        parse_layers(key, items, default_prefix) -> specs, whose outputs add."""
        branches = {}
        for key in ("body", "shortcut"):
            items = section.get_raw(key) if key == "body" else section.get_raw(key, [])
            if not isinstance(items, list) or (key == "body" and not items):
                raise section.error(key, f"must be a {'non-empty ' if key == 'body' else ''}"
                                         f"list of layers, each a mapping with `type`")
            branches[key] = parse_layers(key, items, "shortcut_" if key == "shortcut" else "")
        section.finish()  # a misspelt `shortcuts:` is named as such, not as a shape mismatch
        body, shortcut = branches["body"], branches["shortcut"]
        body_out = body[-1].out_shape
        short_out = shortcut[-1].out_shape if shortcut else tuple(in_shape)
        if body_out != short_out:
            what = "its shortcut gives" if shortcut else "its input (the identity shortcut) is"
            raise section.error(None, f"residual block '{name}': its body gives "
                                      f"{list(body_out)} but {what} {list(short_out)}; the "
                                      f"two must match to be added (a shortcut of a 1x1 "
                                      f"conv2d with the body's filters and stride makes them "
                                      f"match)")
        return cls(index, name, tuple(in_shape), body_out, (body, shortcut), "add")

    def path_title(self, i):
        return f"the {self.path_labels[i]}"

    def forward_formula(self, s):
        skip = f"shortcut({s.inp(self)})" if self.shortcut else s.inp(self)
        return f"{s.out(self)} = body({s.inp(self)}) + {skip}"

    def entry_formula(self, s):
        lasts = [s.delta(path[-1]) for path in self.paths if path]
        return (f"{s.delta(self)} enters {self.name}: the body and the shortcut each take all "
                f"of it (the derivative of a sum): {' = '.join(lasts + [s.delta(self)])}")


TYPES = (ResidualSpec,)
