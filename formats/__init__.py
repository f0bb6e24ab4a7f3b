"""File formats: 1-bit packing, the ``.albsnn`` container, and ONNX export.

Formats know models, tensors and specs, never how layers were chosen: nothing
here imports the search or the estimators.
"""
