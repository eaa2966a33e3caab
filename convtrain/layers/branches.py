"""branches: several paths on one input, their outputs merged; residual is two of them added.

    merge: add       out = path1(x) + path2(x) + ...          (equal shapes)
           concat    out = [path1(x), path2(x), ...] along channels (features of a vector);
                     H and W equal
           multiply  out = path1(x) ⊙ path2(x) ⊙ ...          (equal shapes, or a path of one
                     value per channel, (C,) or (C, 1, 1), scaling its channel's H×W values:
                     squeeze-and-excitation's gate)

An empty path is the identity. Backward hands each path its share of the delta at the
block's output (add: all of it; concat: its own channels; multiply: the delta times the
other paths' outputs, a gate's summed over H×W), runs the paths down, and adds the deltas
they hand back: the block's input feeds every path.
"""

import time
from dataclasses import dataclass

import numpy as np

from convtrain.layers.base import Layer, LayerSpec, kernels, planes

MERGES = ("add", "concat", "multiply")


class Branches(Layer):
    compile_s = {"add": 0.3, "place_channels": 0.3, "take_channels": 0.3, "multiply": 0.3,
                 "scale_channels": 0.3, "channel_dot": 0.3}

    def __init__(self, spec, dtype, rng=None):
        super().__init__(spec, dtype)
        self.paths = [[child.compute(child, dtype, rng) for child in path]
                      for path in spec.paths]
        self.deltas = {}

    def children(self):
        return [layer for path in self.paths for layer in path]

    def forward(self, x):
        return self.combine([self._path_forward(path, x) for path in self.paths])

    def _path_forward(self, layers, out):
        for layer in layers:
            started = time.perf_counter()
            out = layer.forward(out)
            self.mode.time(layer, "forward_ms", started)
        return out

    def combine(self, outputs):
        """The paths' outputs (N, *path shape) merged into the block's (N, *out_shape). A
        multiply keeps them for backward."""
        spec = self.spec
        if spec.merge == "add":
            return _total(outputs)
        if spec.merge == "concat":
            out = np.empty((outputs[0].shape[0],) + spec.out_shape, dtype=self.dtype)
            first = 0
            for part in outputs:
                kernels("merge").place_channels(planes(part, part.shape[1]),
                                                planes(out, out.shape[1]), first)
                first += part.shape[1]
            return out
        self.cache = outputs
        full, gate = self._products(outputs, range(len(outputs)))
        return self._scaled(full, gate)

    def backward(self, dout, need_dx=True):
        """Fills self.deltas (each nested layer's output delta, by full name)."""
        self.deltas = {}
        handed = [self._path_backward(path, share, need_dx)
                  for path, share in zip(self.paths, self.shares(dout))]
        return _total(handed) if need_dx else None

    def _path_backward(self, layers, delta, need_dx):
        for layer in reversed(layers):
            delta = delta.reshape((delta.shape[0],) + layer.spec.out_shape)
            self.mode.keep(self.deltas, layer.name, delta)
            started = time.perf_counter()
            delta = layer.backward(delta, need_dx or layer is not layers[0])
            self.mode.time(layer, "backward_ms", started)
            self.deltas.update(layer.nested_deltas())
        return delta

    def shares(self, dout):
        """Each path's delta at its output, from dout (N, *out_shape)."""
        spec = self.spec
        if spec.merge == "add":
            return [dout] * len(self.paths)
        if spec.merge == "concat":
            shares, first = [], 0
            for shape in spec.path_shapes():
                share = np.empty((dout.shape[0],) + shape, dtype=self.dtype)
                kernels("merge").take_channels(planes(dout, dout.shape[1]), first,
                                               planes(share, shape[0]))
                shares.append(share)
                first += shape[0]
            return shares
        return [self._multiply_share(dout, i) for i in range(len(self.paths))]

    def _multiply_share(self, dout, i):
        """∂L/∂path_i = dout ⊙ the other paths' outputs; a gate's summed over each plane."""
        outputs, others = self.cache, [j for j in range(len(self.paths)) if j != i]
        full, gate = self._products(outputs, others)
        if not self.spec.gates[i]:
            scaled = _product([dout, full]) if full is not None else dout
            return self._scaled(scaled, gate).reshape(outputs[i].shape)
        channels = self.spec.out_shape[0]  # a gate's others hold every full-shaped output
        dgate = np.empty((dout.shape[0], channels), dtype=self.dtype)
        kernels("merge").channel_dot(planes(full, channels), planes(dout, channels), dgate)
        return (_product([dgate, gate]) if gate is not None else dgate).reshape(
            outputs[i].shape)

    def _products(self, outputs, which):
        """(product of the full-shaped outputs among `which`, product of the gates among
        them as (N, C)), each None where there are none; in path order."""
        gates = self.spec.gates
        full = _product([outputs[j] for j in which if not gates[j]])
        gate = _product([outputs[j].reshape(outputs[j].shape[0], -1) for j in which
                         if gates[j]])
        return full, gate

    def _scaled(self, full, gate):
        if gate is None:
            return full
        channels = self.spec.out_shape[0]
        out = np.empty((full.shape[0],) + self.spec.out_shape, dtype=self.dtype)
        kernels("merge").scale_channels(planes(full, channels), np.ascontiguousarray(gate),
                                        planes(out, channels))
        return out

    def nested_deltas(self):
        """Handed over once: the network keeps them, this block forgets them."""
        deltas, self.deltas = self.deltas, {}
        return deltas

    def to_onnx(self, graph, x, rank):
        """Each path's nodes, then an Add, a Concat or a Mul (a gate reshaped to
        (N, C, 1, 1) to broadcast over H, W)."""
        spec = self.spec
        outputs = []
        for path, shape, gate in zip(self.paths, spec.path_shapes(), spec.gates):
            out = graph.layers(path, x, rank) if path else x
            if gate and len(shape) == 1:
                shaped = graph.weight(graph.name(f"{spec.name}.gate_shape"),
                                      np.array([0, -1, 1, 1], dtype=np.int64))
                out = graph.node("Reshape", [out, shaped], spec.name + ".gate")
            outputs.append(out)
        if spec.merge == "concat":
            return graph.node("Concat", outputs, spec.name, axis=1)
        op = "Add" if spec.merge == "add" else "Mul"
        out = outputs[0]
        for other in outputs[1:]:
            out = graph.node(op, [out, other], spec.name)
        return out


def _total(arrays):
    """arrays[0] + arrays[1] + ..., left to right, a new array (any of them may be what a
    layer keeps for its backward pass)."""
    total = arrays[0]
    for other in arrays[1:]:
        a, b = np.ascontiguousarray(total), np.ascontiguousarray(other)
        total = np.empty_like(a)
        kernels("elementwise").add(a.reshape(-1), b.reshape(-1), total.reshape(-1))
    return total


def _product(arrays):
    """arrays[0] ⊙ arrays[1] ⊙ ..., left to right; None for none, the array itself for one."""
    if not arrays:
        return None
    product = arrays[0]
    for other in arrays[1:]:
        a, b = np.ascontiguousarray(product), np.ascontiguousarray(other)
        product = np.empty_like(a)
        kernels("merge").multiply(a.reshape(-1), b.reshape(-1), product.reshape(-1))
    return product


@dataclass(frozen=True)
class BranchesSpec(LayerSpec):
    """Paths on the block's input, merged. A path layer's name is the block's, a dot and
    its own: `fire2.e1`; unnamed ones are numbered per path: `fire2.path2_conv1`."""
    paths: tuple = ()  # of tuples of specs; () is the identity
    merge: str = "add"

    type = "branches"
    compute = Branches
    contains_layers = True

    @property
    def path_labels(self):
        """How trace names each path's share of the deltas: δx.path1, δx.path2, ..."""
        return tuple(f"path{i + 1}" for i in range(len(self.paths)))

    def path_shapes(self):
        return tuple(path[-1].out_shape if path else self.in_shape for path in self.paths)

    @property
    def gates(self):
        """For each path, whether it is a multiply's gate: one value per channel."""
        return tuple(self.merge == "multiply" and shape != self.out_shape
                     for shape in self.path_shapes())

    @classmethod
    def parse(cls, section, index, name, in_shape, parse_layers):
        """merge (required) and paths: a list of at least two lists of layers, read by
        parse_layers(key, items, default_prefix) -> specs."""
        merge = section.get_choice("merge", MERGES)
        items = section.get_raw("paths")
        if not (isinstance(items, list) and len(items) >= 2
                and all(isinstance(path, list) for path in items)):
            raise section.error("paths", "must be a list of two or more paths, each a list of "
                                         "layers ([] for the identity)")
        paths = tuple(parse_layers(("paths", i), path, f"path{i + 1}_")
                      for i, path in enumerate(items))
        section.finish()
        shapes = [path[-1].out_shape if path else tuple(in_shape) for path in paths]
        out_shape = _MERGED_SHAPE[merge](shapes)
        if isinstance(out_shape, str):
            bad, problem = _first_mismatch(shapes, merge)
            raise section.source.error(section.path + ("paths", bad),
                                       f"branches block '{name}': {problem}")
        return cls(index, name, tuple(in_shape), out_shape, paths, merge)

    def children(self):
        return tuple(child for path in self.paths for child in path)

    @property
    def param_count(self):
        return sum(child.param_count for child in self.children())

    def flops(self):
        merging = 0 if self.merge == "concat" else (len(self.paths) - 1) * int(
            np.prod(self.out_shape))
        return sum(child.flops() for child in self.children()) + merging

    def _outputs(self, s):
        """Each path's output as trace names it: its last layer's A, or the block's input;
        a gate's with [c]: one value per channel."""
        return [(s.out(path[-1]) if path else s.inp(self)) + ("[c]" if gate else "")
                for path, gate in zip(self.paths, self.gates)]

    def path_title(self, i):
        return self.path_labels[i]

    def forward_formula(self, s):
        outputs = self._outputs(s)
        if self.merge == "concat":
            axis = "channels" if len(self.out_shape) == 3 else "features"
            return f"{s.out(self)} = concat over {axis}({', '.join(outputs)})"
        if self.merge == "add":
            return f"{s.out(self)} = " + " + ".join(outputs)
        note = (" (a [c] factor scales each channel's H×W values)" if any(self.gates)
                else " (elementwise)")
        return f"{s.out(self)} = " + " ⊙ ".join(outputs) + note

    def backward_formulas(self, s, textbook):
        return None, f"{s.delta_in(self)} = " + " + ".join(
            f"{s.delta_in(self)}.{label}" for label in self.path_labels)

    def entry_formula(self, s):
        """What trace says as the delta enters the block: how the paths share it."""
        how = {"add": "each path takes all of it (the derivative of a sum)",
               "concat": "each path takes its own part of the concat",
               "multiply": "each path takes it times the other paths' outputs (the "
                           "derivative of a product)"}[self.merge]
        shares = "; ".join(self.share_formula(s, i) for i in range(len(self.paths)))
        return f"{s.delta(self)} enters {self.name}: {how}: {shares}"

    def share_formula(self, s, i):
        """The delta path i takes at its output, from δ at the block's."""
        path, delta = self.paths[i], s.delta(self)
        target = s.delta(path[-1]) if path else f"{s.delta_in(self)}.{self.path_labels[i]}"
        if self.merge == "add":
            return f"{target} = {delta}"
        if self.merge == "concat":
            first = sum(shape[0] for shape in self.path_shapes()[:i])
            count = self.path_shapes()[i][0]
            unit = "channel" if len(self.out_shape) == 3 else "feature"
            part = (f"{unit} {first}" if count == 1 else
                    f"{unit}s {first}..{first + count - 1}")
            return f"{target} = {delta}[{part}]"
        outputs = self._outputs(s)
        others = " ⊙ ".join(outputs[:i] + outputs[i + 1:])
        if self.gates[i]:
            return f"{target}[c] = Σ_hw {delta} ⊙ {others}"
        return f"{target} = {delta} ⊙ {others}"


def _added_shape(shapes):
    return shapes[0] if len(set(shapes)) == 1 else "add"


def _concatenated_shape(shapes):
    ranks = {len(shape) for shape in shapes}
    if ranks == {1}:
        return (sum(shape[0] for shape in shapes),)
    if ranks == {3} and len({shape[1:] for shape in shapes}) == 1:
        return (sum(shape[0] for shape in shapes),) + shapes[0][1:]
    return "concat"


def _multiplied_shape(shapes):
    full = max(shapes, key=lambda shape: int(np.prod(shape)))
    gate_shapes = ((full[0],), (full[0], 1, 1)) if len(full) == 3 else ()
    if all(shape == full or shape in gate_shapes for shape in shapes):
        return full
    return "multiply"


_MERGED_SHAPE = {"add": _added_shape, "concat": _concatenated_shape,
                 "multiply": _multiplied_shape}


def _first_mismatch(shapes, merge):
    """(index of the first path whose output cannot merge, the message naming the shapes)."""
    listed = ", ".join(f"path{i + 1} gives {list(shape)}" for i, shape in enumerate(shapes))
    if merge == "concat":
        bad = next((i for i, shape in enumerate(shapes)
                    if len(shape) != len(shapes[0]) or shape[1:] != shapes[0][1:]), 0)
        rule = ("concatenates its paths' outputs along channels, so they must all be images "
                "of the same height and width (or all vectors)")
    elif merge == "add":
        bad = next((i for i, shape in enumerate(shapes) if shape != shapes[0]), 0)
        rule = "adds its paths' outputs, so they must have the same shape"
    else:
        full = max(shapes, key=lambda shape: int(np.prod(shape)))
        bad = next((i for i, shape in enumerate(shapes) if shape != full), 0)
        rule = ("multiplies its paths' outputs, so they must have the same shape, or be one "
                "value per channel ([C] or [C, 1, 1]) to scale an image's channels")
    return bad, f"{rule}: {listed}"


TYPES = (BranchesSpec,)
