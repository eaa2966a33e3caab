"""channel_shuffle, channel_pad and channel_slice: each output channel a copy of one input
channel, or zeros (convtrain.kernels.channels). ShuffleNet's shuffle, ResNet's option-A
shortcut (zero channels added) and ShuffleNet v2's split. The channels are the first axis of
a sample: C of an image, the features of a vector."""

from dataclasses import dataclass

import numpy as np

from convtrain.layers.base import Layer, LayerSpec, kernels, planes


class ChannelMap(Layer):
    """Copies channels as spec.source() says; the backward pass copies the deltas back."""

    compile_s = {"gather_channels": 0.4, "scatter_channels": 0.4}

    def __init__(self, spec, dtype, rng=None):
        super().__init__(spec, dtype)
        self.source = np.asarray(spec.source(), dtype=np.int64)

    def forward(self, x):
        out = np.empty((x.shape[0],) + self.spec.out_shape, dtype=self.dtype)
        kernels("channels").gather_channels(planes(x, self.spec.in_shape[0]),
                                            self.source,
                                            out.reshape(x.shape[0], len(self.source), -1))
        return out

    def backward(self, dout, need_dx=True):
        dx = np.empty((dout.shape[0],) + self.spec.in_shape, dtype=self.dtype)
        kernels("channels").scatter_channels(planes(dout, len(self.source)), self.source,
                                             dx.reshape(dout.shape[0], self.spec.in_shape[0], -1))
        return dx

    def to_onnx(self, graph, x, rank):
        return self.spec.onnx_nodes(graph, x)


@dataclass(frozen=True)
class ChannelShuffleSpec(LayerSpec):
    groups: int = 1

    type = "channel_shuffle"
    compute = ChannelMap

    @classmethod
    def parse(cls, section, index, name, in_shape):
        groups = section.get_int("groups", minimum=1)
        if in_shape[0] % groups:
            raise section.error("groups", f"{groups} does not divide the {in_shape[0]} "
                                          f"channels of its input")
        return cls(index, name, tuple(in_shape), tuple(in_shape), groups)

    def source(self):
        """The channels as (groups, C/groups), transposed: out b·g + a ← in a·(C/g) + b."""
        per_group = self.in_shape[0] // self.groups
        return np.arange(self.in_shape[0]).reshape(self.groups, per_group).T.reshape(-1)

    def onnx_nodes(self, graph, x):
        """Reshape to (N, g, C/g, ...), Transpose the two, Reshape back."""
        name, rest = self.name, list(self.in_shape[1:])
        split = graph.weight(f"{name}.split", np.array(
            [0, self.groups, self.in_shape[0] // self.groups] + rest, dtype=np.int64))
        merged = graph.weight(f"{name}.merged", np.array([0] + list(self.in_shape),
                                                         dtype=np.int64))
        grouped = graph.node("Reshape", [x, split], name + ".groups")
        swapped = graph.node("Transpose", [grouped], name + ".swap",
                             perm=[0, 2, 1] + list(range(3, 3 + len(rest))))
        return graph.node("Reshape", [swapped, merged], name)

    def forward_formula(self, s):
        g = self.groups
        return (f"{s.out(self)} = {s.inp(self)} with its channels as ({g}, C/{g}) transposed "
                f"to (C/{g}, {g}): channel b·{g} + a ← channel a·(C/{g}) + b")

    def backward_formulas(self, s, textbook):
        return None, (f"{s.delta_in(self)} = {s.delta(self)} with its channels put back "
                      f"(the inverse order)")


@dataclass(frozen=True)
class ChannelPadSpec(LayerSpec):
    before: int = 0
    after: int = 0

    type = "channel_pad"
    compute = ChannelMap

    @classmethod
    def parse(cls, section, index, name, in_shape):
        before = section.get_int("before", 0, minimum=0)
        after = section.get_int("after", 0, minimum=0)
        out_shape = (in_shape[0] + before + after,) + tuple(in_shape[1:])
        return cls(index, name, tuple(in_shape), out_shape, before, after)

    def source(self):
        return [-1] * self.before + list(range(self.in_shape[0])) + [-1] * self.after

    def onnx_nodes(self, graph, x):
        rank = len(self.in_shape) + 1
        pads = [0] * (2 * rank)
        pads[1], pads[rank + 1] = self.before, self.after
        amounts = graph.weight(f"{self.name}.pads", np.array(pads, dtype=np.int64))
        return graph.node("Pad", [x, amounts], self.name, mode="constant")

    def forward_formula(self, s):
        return (f"{s.out(self)} = {s.inp(self)} with {self.before} zero channels before and "
                f"{self.after} after")

    def backward_formulas(self, s, textbook):
        last = self.before + self.in_shape[0] - 1
        return None, f"{s.delta_in(self)} = channels {self.before}..{last} of {s.delta(self)}"


@dataclass(frozen=True)
class ChannelSliceSpec(LayerSpec):
    start: int = 0
    stop: int = 1

    type = "channel_slice"
    compute = ChannelMap

    @classmethod
    def parse(cls, section, index, name, in_shape):
        start = section.get_int("start", 0, minimum=0)
        stop = section.get_int("stop", minimum=1)
        if not start < stop <= in_shape[0]:
            raise section.error("stop", f"channels [{start}, {stop}) are not a non-empty part "
                                        f"of the input's {in_shape[0]}")
        out_shape = (stop - start,) + tuple(in_shape[1:])
        return cls(index, name, tuple(in_shape), out_shape, start, stop)

    def source(self):
        return list(range(self.start, self.stop))

    def onnx_nodes(self, graph, x):
        bounds = [graph.weight(f"{self.name}.{key}", np.array([value], dtype=np.int64))
                  for key, value in (("starts", self.start), ("ends", self.stop), ("axes", 1))]
        return graph.node("Slice", [x] + bounds, self.name)

    def forward_formula(self, s):
        return f"{s.out(self)} = channels {self.start}..{self.stop - 1} of {s.inp(self)}"

    def backward_formulas(self, s, textbook):
        return None, (f"{s.delta_in(self)} = {s.delta(self)} in channels "
                      f"{self.start}..{self.stop - 1}, zero in the others")


TYPES = (ChannelShuffleSpec, ChannelPadSpec, ChannelSliceSpec)
