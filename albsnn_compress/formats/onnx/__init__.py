"""ONNX export: packed 1-bit weights unpacked by standard operators (``export``), and the
graph builder the layer types write through (``graph``); docs/onnx.md."""
