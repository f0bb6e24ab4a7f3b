"""Named architectures: VGG-style spiking nets with a global-average-pooling head.

Every preset ends with ``conv(num_classes, 1x1) -> bn -> gap``: the ALBSNN paper's
choice of a GAP head instead of fully connected layers, which is what lets one
time step reach good accuracy. ``digits-fc`` keeps a fully connected head to
exercise ``linear`` layers. Presets are functions of the dataset's input shape,
class count and normalization, so one name serves any dataset.

============== ================================ ===================================
preset         body (channels, ``p`` = pool)    meant for
============== ================================ ===================================
digits-small   16, 32, 32p, 64                  8x8 digits demo, seconds on a CPU
digits-fc      16, 32p, flatten, fc 64, fc      FC-head variant (linear candidates)
fmnist-vgg     16, 32p, 64, 64p, 128            FashionMNIST, minutes/epoch on 2 cores
fmnist-wide    64, 128p, 256, 256p, 512         paper-scale FashionMNIST, for GPUs
cifar-vgg      64, 128p, 256, 256p, 512, 512p   CIFAR-10/100 (32x32x3), for GPUs
depth-4/8/16   4, 8 or 16 candidate convs       search-cost scaling benchmarks
============== ================================ ===================================

:func:`mlp_spec` builds a fully connected network on the flattened input (a flat spec, input ``[C*H*W]``):
snnTorch's first tutorials' kind of network, for any widths.
"""

from __future__ import annotations

import math
from typing import Any

from albsnn_compress.errors import SpecError
from albsnn_compress.snn.spec import flat_statistics, normalize_spec

__all__ = ["PRESETS", "make_preset", "vgg_spec", "mlp_spec"]

Block = tuple[int, bool]  # (out_channels, pool after this block)


def vgg_spec(
    name: str,
    blocks: list[Block],
    input_shape: list[int],
    num_classes: int,
    mean: list[float],
    std: list[float],
) -> dict[str, Any]:
    """A VGG-style spec: ``conv3x3-bn-lif[-avgpool]`` blocks, then the GAP head."""
    layers: list[dict[str, Any]] = []
    for channels, pool in blocks:
        layers += [
            {"type": "conv", "out_channels": channels, "kernel_size": 3, "padding": 1},
            {"type": "bn"},
            {"type": "lif"},
        ]
        if pool:
            layers.append({"type": "avgpool", "kernel_size": 2})
    layers += [
        {"type": "conv", "out_channels": num_classes, "kernel_size": 1},
        {"type": "bn"},
        {"type": "gap"},
    ]
    spec = {
        "name": name,
        "input": {"shape": list(input_shape), "mean": list(mean), "std": list(std)},
        "num_classes": num_classes,
        "layers": layers,
    }
    return normalize_spec(spec)


def _digits_fc(input_shape: list[int], num_classes: int, mean: list[float], std: list[float]) -> dict[str, Any]:
    layers = [
        {"type": "conv", "out_channels": 16, "kernel_size": 3, "padding": 1},
        {"type": "bn"},
        {"type": "lif"},
        {"type": "conv", "out_channels": 32, "kernel_size": 3, "padding": 1},
        {"type": "bn"},
        {"type": "lif"},
        {"type": "avgpool", "kernel_size": 2},
        {"type": "flatten"},
        {"type": "linear", "out_features": 64, "bias": False},
        {"type": "bn"},
        {"type": "lif"},
        {"type": "linear", "out_features": num_classes},
    ]
    spec = {
        "name": "digits-fc",
        "input": {"shape": list(input_shape), "mean": list(mean), "std": list(std)},
        "num_classes": num_classes,
        "layers": layers,
    }
    return normalize_spec(spec)


def mlp_spec(
    name: str,
    hidden: list[int],
    input_shape: list[int],
    num_classes: int,
    mean: list[float],
    std: list[float],
) -> dict[str, Any]:
    """A fully connected spec on the flattened input: ``linear-bn-lif`` per hidden width, then a linear readout.

    The spec's input is flat, ``[C*H*W]`` (a dataset's images are flattened row-major by the model,
    :func:`~albsnn_compress.snn.spec.accepts_input_shape`); per-channel ``mean``/``std`` of
    ``input_shape`` become one number when the channels agree (a one-channel dataset), else one per
    feature (each channel's value over its ``H * W`` pixels).

    Example:
        >>> spec = mlp_spec("fmnist-mlp", [256], [1, 28, 28], 10, [0.286], [0.353])
        >>> spec["input"], [layer["type"] for layer in spec["layers"]]
        ({'shape': [784], 'mean': [0.286], 'std': [0.353]}, ['linear', 'bn', 'lif', 'linear'])
    """
    layers: list[dict[str, Any]] = []
    for width in hidden:
        layers += [{"type": "linear", "out_features": width, "bias": False}, {"type": "bn"}, {"type": "lif"}]
    layers.append({"type": "linear", "out_features": num_classes})
    spec = {
        "name": name,
        "input": {
            "shape": [math.prod(input_shape)],
            "mean": flat_statistics(mean, input_shape),
            "std": flat_statistics(std, input_shape),
        },
        "num_classes": num_classes,
        "layers": layers,
    }
    return normalize_spec(spec)


_VGG_BODIES: dict[str, list[Block]] = {
    "digits-small": [(16, False), (32, False), (32, True), (64, False)],
    "fmnist-vgg": [(16, False), (32, True), (64, False), (64, True), (128, False)],
    "fmnist-wide": [(64, False), (128, True), (256, False), (256, True), (512, False)],
    "cifar-vgg": [(64, False), (128, True), (256, False), (256, True), (512, False), (512, True)],
    # first conv + N candidates; the classifier conv is excluded by default
    "depth-4": [(16, False)] + [(16, False)] * 2 + [(32, True)] + [(32, False)],
    "depth-8": [(16, False)] + [(16, False)] * 4 + [(32, True)] + [(32, False)] * 3,
    "depth-16": [(16, False)] + [(16, False)] * 8 + [(32, True)] + [(32, False)] * 7,
}

PRESETS: tuple[str, ...] = tuple(sorted([*_VGG_BODIES, "digits-fc"]))


def make_preset(
    name: str, input_shape: list[int], num_classes: int, mean: list[float], std: list[float]
) -> dict[str, Any]:
    """The normalized spec of preset ``name`` for a dataset's shape, classes and statistics.

    Raises:
        SpecError: if ``name`` is not a preset.
    """
    if name == "digits-fc":
        return _digits_fc(input_shape, num_classes, mean, std)
    if name not in _VGG_BODIES:
        raise SpecError(f"unknown architecture {name!r}; choose a preset {list(PRESETS)} or pass a JSON spec file")
    return vgg_spec(name, _VGG_BODIES[name], input_shape, num_classes, mean, std)
