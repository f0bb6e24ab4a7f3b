"""Hand-built compression results for the report tests (no search needed).

``tiny_model`` is small enough to count its bits by hand (see ``test_report.py``);
``digits_result`` is a digits-small run with a plausible trajectory.
"""

from __future__ import annotations

import torch

from albsnn_compress import SpikingNet, binarize_
from albsnn_compress.search.paired_drop import PairedDrop
from albsnn_compress.search.result import CompressionResult, LayerDecision, SearchStep
from albsnn_compress.storage import layer_storage, total_bits
from albsnn_compress.training.train_model import resolve_architecture

TINY_SPEC = {
    "name": "tiny",
    "input": {"shape": [1, 4, 4]},
    "num_classes": 3,
    "layers": [
        {"type": "conv", "out_channels": 4, "kernel_size": 3, "padding": 1, "bias": False},
        {"type": "bn"},
        {"type": "lif"},
        {"type": "conv", "out_channels": 3, "kernel_size": 1, "bias": True},
        {"type": "gap"},
    ],
}


def make_result(
    model: torch.nn.Module, binarized: list[str], candidates: list[str], **overrides: object
) -> CompressionResult:
    """A result whose decisions and trajectory are consistent with ``binarized``."""
    binarize_(model, binarized)
    full = total_bits(layer_storage(model, []))[0]
    decisions = [
        LayerDecision(
            name,
            100 + i,
            name in binarized,
            0.01 * (i + 1),
            0.05 * (i + 1),
            1000,
            f"est. {0.05 * (i + 1):.2f} pts {'<=' if name in binarized else '>'} remaining budget",
            measured_increment_points=0.04 * (i + 1),
        )
        for i, name in enumerate(candidates)
    ]
    points = {name: 0.05 * (i + 1) for i, name in enumerate(candidates)}
    raw = {name: 0.01 * (i + 1) for i, name in enumerate(candidates)}
    trajectory = [SearchStep(0, "start", [], [], 90.0, 0.0, full, {}, {}, 0.0)]
    chosen: list[str] = []
    for name in binarized:
        chosen = [*chosen, name]
        bits = total_bits(layer_storage(model, chosen))[1]
        trajectory.append(
            SearchStep(len(trajectory), "binarize", [name], list(chosen), 89.9, 0.1, bits, points, raw, 1.5)
        )
    rejected = [name for name in candidates if name not in binarized]
    if rejected:
        bits = total_bits(layer_storage(model, [*chosen, rejected[0]]))[1]
        trajectory.append(
            SearchStep(
                len(trajectory), "binarize", [rejected[0]], [*chosen, rejected[0]], 88.0, 2.0, bits, points, raw, 1.2
            )
        )
        trajectory.append(
            SearchStep(
                len(trajectory),
                "revert",
                [rejected[0]],
                list(chosen),
                89.9,
                0.1,
                total_bits(layer_storage(model, chosen))[1],
                points,
                raw,
                1.0,
            )
        )
    trajectory.append(
        SearchStep(
            len(trajectory),
            "final",
            [],
            list(chosen),
            89.9,
            0.1,
            total_bits(layer_storage(model, chosen))[1],
            {},
            {},
            0.2,
        )
    )
    fields = {
        "model": model,
        "binarized": list(binarized),
        "candidates": list(candidates),
        "decisions": decisions,
        "trajectory": trajectory,
        "budget": 0.2,
        "accuracy": {"val_before": 90.0, "val_after": 89.9, "test_before": 89.5, "test_after": 89.25},
        "timings": {"estimate": 0.5, "search": 4.25, "verify": 0.25, "total": 5.0},
        "finetune_epochs": 1.5,
        "strategy": "adaptive",
        "estimator": "weight",
        "seed": 0,
        "config": {"dataset": "digits", "lr": 0.001, "confidence": 0.9},
        # 90.0 -> 89.9 on 1000 validation images, 89.5 -> 89.25 on 2000 test images
        "paired": {"val": PairedDrop(1000, lost=6, gained=5), "test": PairedDrop(2000, lost=10, gained=5)},
    }
    fields.update(overrides)
    return CompressionResult(**fields)


def tiny_model() -> SpikingNet:
    torch.manual_seed(0)
    return SpikingNet(TINY_SPEC)


def digits_result(binarized: tuple[str, ...] = ("layers.conv2", "layers.conv3")) -> CompressionResult:
    torch.manual_seed(0)
    model = SpikingNet(resolve_architecture("digits-small", "digits"))
    return make_result(model, list(binarized), ["layers.conv2", "layers.conv3", "layers.conv4"])
