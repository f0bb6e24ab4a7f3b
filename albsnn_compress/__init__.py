"""albsnn-compress: binarize the layers of a spiking network that an accuracy budget affords.

Public API (the command line is a thin layer over it)::

    from albsnn_compress import load_checkpoint, save_checkpoint, binarize_
    model = load_checkpoint("model.pt")
"""

from albsnn_compress.binarize import binarize_, binarized_layers, candidate_layers, unbinarize_
from albsnn_compress.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from albsnn_compress.errors import AlbsnnError
from albsnn_compress.snn.spec import SpikingNet, build_model
from albsnn_compress.versions import __version__

__all__ = [
    "AlbsnnError",
    "SpikingNet",
    "__version__",
    "binarize_",
    "binarized_layers",
    "build_model",
    "candidate_layers",
    "load_checkpoint",
    "read_checkpoint",
    "save_checkpoint",
    "unbinarize_",
]
