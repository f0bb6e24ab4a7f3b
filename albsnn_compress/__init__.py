"""albsnn-compress: binarize the layers of a spiking network that an accuracy budget affords.

The public API (the command line is a thin layer over it)::

    import albsnn_compress as ac

    model = ac.load_checkpoint("model.pt")
    print(ac.summary(model))                                   # per-layer storage table
    result = ac.compress(model, train, val, budget=0.2,        # tensors, ImageSet or DataLoader
                         config=ac.SearchConfig(seed=0))
    ac.write_container("model.albsnn", result.model)           # 1 bit per binary weight
    ac.export_onnx(result.model, "model.onnx")                 # stock onnxruntime runs it
    ac.export_nir(result.model, "model.nir")                   # snnTorch, SpikingJelly, neuromorphic flows
    model = ac.read_nir("net.nir", timesteps=4)                # a NIR chain as a SpikingNet
    report = ac.build_report(result, input_checkpoint="model.pt",
                             container="model.albsnn", onnx="model.onnx")

    model = ac.from_snntorch(net, input_shape=(1, 28, 28), timesteps=4)     # networks trained elsewhere
    model = ac.from_spikingjelly(sj_net, input_shape=(1, 28, 28), timesteps=4)

Everything else is importable from its module (``albsnn_compress.snn.layer_types``
for new layer types, ``albsnn_compress.search.estimators`` and ``albsnn_compress.search.strategies``
for new estimators and strategies); docs/architecture.md maps them.
"""

from albsnn_compress.binarize import binarize_, binarized_layers, candidate_layers, unbinarize_
from albsnn_compress.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from albsnn_compress.errors import AlbsnnError
from albsnn_compress.formats.container.file import read_container, write_container
from albsnn_compress.formats.nir.optional import export_nir, read_nir
from albsnn_compress.formats.onnx.export import export_onnx
from albsnn_compress.interop import from_snntorch, from_spikingjelly
from albsnn_compress.model_file import load_model_file
from albsnn_compress.progress import ProgressEvent
from albsnn_compress.report import build_report
from albsnn_compress.search import SearchConfig, compress
from albsnn_compress.search.estimators import register_estimator
from albsnn_compress.search.result import CompressionResult
from albsnn_compress.search.strategies import register_strategy
from albsnn_compress.snn.layer_types import LayerType, register_layer_type
from albsnn_compress.snn.spec import SpikingNet, build_model
from albsnn_compress.summary import summary
from albsnn_compress.versions import __version__

__all__ = [
    "AlbsnnError",
    "CompressionResult",
    "LayerType",
    "ProgressEvent",
    "SearchConfig",
    "SpikingNet",
    "__version__",
    "binarize_",
    "binarized_layers",
    "build_model",
    "build_report",
    "candidate_layers",
    "compress",
    "export_nir",
    "export_onnx",
    "from_snntorch",
    "from_spikingjelly",
    "load_checkpoint",
    "load_model_file",
    "read_checkpoint",
    "read_container",
    "read_nir",
    "register_estimator",
    "register_layer_type",
    "register_strategy",
    "save_checkpoint",
    "summary",
    "unbinarize_",
    "write_container",
]
