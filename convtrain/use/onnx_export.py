"""`convtrain export`: a trained network as an ONNX model (the `onnx` package, an optional
extra) that ONNX Runtime, OpenCV's DNN module or TensorRT can run.

    input   float32 [N, C, H, W], N free          scores  float32 [N, K], the last layer's
                                                          outputs, flattened
Each layer becomes the ONNX operators that compute what its eval-mode forward computes
(its `to_onnx`, in its module under convtrain/layers/): conv2d a Conv (op: convolution with
its kernel flipped, as convtrain's kernels get it), dense a Gemm (after a Flatten),
batchnorm a BatchNormalization with the running statistics, globalavgpool a
GlobalAveragePool and a Flatten, a block its paths and an Add, a Concat or a Mul; dropout is
left out (it is the identity outside training). Weights are float32 even for a float64
network. The model's metadata says how to prepare an input as training did.
"""

import json

import numpy as np

from convtrain.version import __version__
from convtrain.run.checkpoint import preparation
from convtrain.errors import UserError
from convtrain.extras import pip_install
from convtrain.outputs import write_whole

DEFAULT_OPSET = 17
OPSETS = range(13, 22)  # BatchNormalization's, Flatten's and Gemm's forms used here


def require_onnx():
    try:
        import onnx
    except ImportError:
        raise UserError(f"export needs the onnx package, an optional extra: "
                        f"{pip_install('onnx')}") from None
    return onnx


def export_onnx(network, config, opset=DEFAULT_OPSET, classes=None):
    """The ONNX ModelProto of network (its current weights, eval mode)."""
    onnx = require_onnx()
    from onnx import TensorProto, helper

    graph = _Graph(helper, onnx.numpy_helper)
    out = graph.layers(network.layers, "input", len(config.input) + 1)
    if len(network.layers[-1].spec.out_shape) > 1:
        out = graph.node("Flatten", [out], axis=1)
    graph.nodes.append(helper.make_node("Identity", [out], ["scores"], name="scores"))
    channels, height, width = config.input
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                            ["N", channels, height, width])]
    outputs = [helper.make_tensor_value_info("scores", TensorProto.FLOAT,
                                             ["N", int(np.prod(network.layers[-1].spec.out_shape))])]
    model = helper.make_model(
        helper.make_graph(graph.nodes, config.name, inputs, outputs, graph.weights),
        opset_imports=[helper.make_opsetid("", opset)], producer_name="convtrain",
        producer_version=__version__)
    model.ir_version = min(model.ir_version, _IR_VERSION.get(opset, model.ir_version))
    helper.set_model_props(model, preprocessing_metadata(config, classes))
    return model


def write_model(model, path):
    """Write the model whole (convtrain.outputs.write_whole) or not at all."""
    write_whole(path, model.SerializeToString(), "--out")


# The newest IR version each opset's runtimes read (onnx's own table, VERSION_TABLE).
_IR_VERSION = {13: 7, 14: 7, 15: 8, 16: 8, 17: 8, 18: 8, 19: 9, 20: 9, 21: 10}


def preprocessing_metadata(config, classes):
    """{key: JSON text}: what a user of the file needs to feed it as training did."""
    meta = {"config_name": config.name,
            "input": list(config.input),
            "preprocessing": (
                "input = (pixels / scale - mean[c]) / std[c]; pixels are the raw values as "
                "the training data held them (0..255 for 8-bit images and CIFAR-10), "
                + ("grey, one channel" if config.input[0] == 1 else
                   "R, G, B channels" if config.input[0] == 3 else
                   f"{config.input[0]} channels")
                + f", channels first (N, C, H, W), H x W = {config.input[1]} x "
                  f"{config.input[2]}; a null mean or std is left out"),
            "scores": ("the last layer's outputs; softmax gives the class probabilities"
                       if config.loss == "softmax_cross_entropy" else
                       f"the last layer's outputs, trained with the {config.loss} loss; the "
                       f"largest is the class"),
            **preparation(config),  # scale, mean, std, loss: as checkpoints record them
            "classes": list(classes) if classes else None}
    return {f"convtrain.{key}": json.dumps(value) for key, value in meta.items()}


class _Graph:
    """Nodes and initialisers as the layers are walked; every name is unique."""

    def __init__(self, helper, numpy_helper):
        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes, self.weights, self.count = [], [], 0

    def name(self, hint):
        self.count += 1
        return f"{hint}_{self.count}"

    def node(self, op, inputs, name=None, **attributes):
        output = self.name(name or op.lower())
        self.nodes.append(self.helper.make_node(op, inputs, [output], name=output,
                                                **attributes))
        return output

    def weight(self, name, array):
        """An initialiser: float32 values, or int64 for integers (shapes, pads, indices)."""
        dtype = np.int64 if np.asarray(array).dtype.kind in "iu" else np.float32
        self.weights.append(self.numpy_helper.from_array(
            np.ascontiguousarray(array, dtype=dtype), name))
        return name

    def layers(self, layers, x, rank):
        """Append layers' nodes; x: the name of their input, of `rank` dimensions."""
        for layer in layers:
            x = self.layer(layer, x, rank)
            rank = len(layer.spec.out_shape) + 1
        return x

    def layer(self, layer, x, rank):
        """Append the nodes of one layer (its to_onnx, in convtrain/layers/); x: its input."""
        return layer.to_onnx(self, x, rank)
