"""A trained network put to use: predict and ONNX export."""
