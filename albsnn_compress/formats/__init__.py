"""File formats, one folder each: the ``.albsnn`` container, ONNX, NIR and C, with the 1-bit
packing they share (``bitpack``).

Formats know models, tensors and specs, never how layers were chosen: nothing here imports
the search or the estimators.
"""
