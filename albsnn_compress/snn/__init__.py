"""The spiking core: neurons, time-distributed layers, architecture specs, presets.

It imports nothing else of the package except :mod:`albsnn_compress.errors`;
everything else builds on it.
"""

from albsnn_compress.snn.layers import TimeConv2d, TimeLinear
from albsnn_compress.snn.neurons import LIF
from albsnn_compress.snn.presets import PRESETS, make_preset
from albsnn_compress.snn.spec import SpikingNet, build_model, normalize_spec
from albsnn_compress.snn.surrogate import ArcTan, Rectangular, make_surrogate

__all__ = [
    "LIF",
    "PRESETS",
    "ArcTan",
    "Rectangular",
    "SpikingNet",
    "TimeConv2d",
    "TimeLinear",
    "build_model",
    "make_preset",
    "make_surrogate",
    "normalize_spec",
]
