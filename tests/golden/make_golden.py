"""Regenerate the golden ``.albsnn`` files: ``python tests/golden/make_golden.py``.

Each case is a tiny fixed-seed model. Every value comes from a seeded
``torch.Generator`` (no forward passes, no float reductions whose rounding could
differ between CPUs), binarized layers get latent weights that are already
``alpha * sign`` and k-bit layers latent weights that are already ``codes * clip / Q``
(each channel reaching ``±Q``, or all zero), so the files are the same bytes on every machine.
``tests/test_container.py`` rebuilds each case and compares with the stored bytes:
only a deliberate format change (and a version bump, see docs/format.md) should
ever require running this script.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from albsnn_compress.binarize import binarize_
from albsnn_compress.files.atomic import atomic_write_bytes, atomic_write_text
from albsnn_compress.formats.container.file import container_bytes
from albsnn_compress.precision import precision, set_precision_
from albsnn_compress.snn.spec import SpikingNet

__all__ = ["CASES", "GOLDEN_DIR", "build", "golden_bytes", "fixed_inputs", "main"]

GOLDEN_DIR = Path(__file__).resolve().parent
EXPECTED_OUTPUTS = GOLDEN_DIR / "expected_outputs.json"

_INPUT = {"shape": [1, 8, 8], "mean": [0.3053], "std": [0.376]}
_CONV_SPEC = {
    "name": "golden-conv",
    "input": _INPUT,
    "num_classes": 10,
    "layers": [
        {"type": "conv", "out_channels": 16, "kernel_size": 3, "padding": 1},
        {"type": "bn"},
        {"type": "lif"},
        {"type": "conv", "out_channels": 32, "kernel_size": 3, "padding": 1},
        {"type": "bn"},
        {"type": "lif"},
        {"type": "avgpool", "kernel_size": 2},
        {"type": "conv", "out_channels": 32, "kernel_size": 3, "padding": 1},
        {"type": "bn"},
        {"type": "lif"},
        {"type": "conv", "out_channels": 10, "kernel_size": 1},
        {"type": "bn"},
        {"type": "gap"},
    ],
}
_FC_SPEC = {
    "name": "golden-fc",
    "input": _INPUT,
    "num_classes": 10,
    "layers": [
        {"type": "conv", "out_channels": 4, "kernel_size": 3, "padding": 1, "bias": True},
        {"type": "bn"},
        {"type": "lif"},
        {"type": "avgpool", "kernel_size": 2},
        {"type": "flatten"},
        {"type": "linear", "out_features": 16, "bias": False},
        {"type": "bn"},
        {"type": "lif"},
        {"type": "linear", "out_features": 10},
    ],
}

_KBIT_SPEC = {
    "name": "golden-kbit",
    "input": _INPUT,
    "num_classes": 10,
    "layers": [
        {"type": "conv", "out_channels": 3, "kernel_size": 3, "padding": 1},  # 27 codes of 8 bits
        {"type": "bn"},
        {"type": "lif"},
        {"type": "conv", "out_channels": 5, "kernel_size": 3, "padding": 1},  # 135 of 4 bits: 4 padding bits
        {"type": "bn"},
        {"type": "lif"},
        {"type": "avgpool", "kernel_size": 2},
        {"type": "conv", "out_channels": 7, "kernel_size": 3, "padding": 1},  # 315 of 2 bits: 2 padding bits
        {"type": "bn"},
        {"type": "lif"},
        {"type": "gap"},
        {"type": "linear", "out_features": 10},  # binarized: 70 bits, 2 padding bits
    ],
}

# name -> (spec, timesteps, binarized layers, k-bit layers, seed, container keyword arguments)
CASES: dict[str, tuple[dict[str, Any], int, list[str], dict[str, int], int, dict[str, Any]]] = {
    "conv_mixed": (
        _CONV_SPEC,
        2,
        ["layers.conv2", "layers.conv3"],
        {},
        1,
        {
            "class_names": [str(d) for d in range(10)],
            "accuracy": {"test_after": 96.5, "test_before": 97.25, "val_after": 97.0, "val_before": 97.5},
            "budget": 0.5,
            "source_sha256": hashlib.sha256(b"golden source checkpoint").hexdigest(),
            "metadata": {"dataset": "digits", "note": "golden vector, \u03b1 = mean|W|"},
        },
    ),
    "fc_float32": (_FC_SPEC, 1, [], {}, 2, {}),
    "fc_float16": (
        _FC_SPEC,
        3,
        ["layers.conv1", "layers.linear1"],
        {},
        3,
        {"metadata": {"dataset": "digits"}, "float_kind": "float16"},
    ),
    "kbit_mixed": (
        _KBIT_SPEC,
        2,
        ["layers.linear1"],
        {"layers.conv1": 8, "layers.conv2": 4, "layers.conv3": 2},
        4,
        {"metadata": {"dataset": "digits"}},
    ),
}


def _uniform(generator: torch.Generator, shape: torch.Size, low: float, high: float) -> torch.Tensor:
    return low + (high - low) * torch.rand(shape, generator=generator)


def _quantized(generator: torch.Generator, shape: torch.Size, bits: int) -> torch.Tensor:
    """Weights that ``bits``-bit quantization keeps bit for bit: random codes with ``±Q`` in each channel, times a
    random float32 clip over ``Q``; channel 0 all zero (clip 0)."""
    top = precision(bits).max_code
    codes = torch.randint(-top, top + 1, shape, generator=generator).flatten(1)
    codes[:, 0] = torch.where(torch.rand(shape[:1], generator=generator) < 0.5, -top, top)
    codes[0] = 0
    clip = _uniform(generator, shape[:1], 0.05, 0.5).double()
    return (codes.double() * (clip / top)[:, None]).float().view(shape)


def build(name: str) -> tuple[SpikingNet, dict[str, Any]]:
    """The model of golden case ``name`` (eval mode) and its container keyword arguments."""
    spec, timesteps, binarized, precisions, seed, kwargs = CASES[name]
    generator = torch.Generator().manual_seed(seed)
    model = SpikingNet(spec, timesteps)
    with torch.no_grad():
        for key, tensor in model.state_dict(keep_vars=True).items():
            module, _, attr = key.rpartition(".")
            if attr == "num_batches_tracked":
                continue
            if attr == "running_var":
                tensor.copy_(_uniform(generator, tensor.shape, 0.5, 1.5))
            elif attr == "weight" and tensor.dim() == 1:  # batch-norm gain: large enough that neurons fire
                tensor.copy_(_uniform(generator, tensor.shape, 2.0, 4.0))
            elif attr == "weight" and module in binarized:
                alpha = _uniform(generator, tensor.shape[:1], 0.05, 0.5)
                signs = torch.where(torch.rand(tensor.shape, generator=generator) < 0.5, -1.0, 1.0)
                tensor.copy_(alpha.view(-1, *([1] * (tensor.dim() - 1))) * signs)
            elif attr == "weight" and module in precisions:
                tensor.copy_(_quantized(generator, tensor.shape, precisions[module]))
            else:
                tensor.copy_(_uniform(generator, tensor.shape, -0.5, 0.5))
            if kwargs.get("float_kind") == "float16" and module not in binarized:
                tensor.copy_(tensor.half().float())  # exactly representable, so the file reads back bit-exactly
    binarize_(model, binarized)
    set_precision_(model, precisions)
    return model.eval(), kwargs


def golden_bytes(name: str) -> bytes:
    """The container bytes of golden case ``name``."""
    model, kwargs = build(name)
    return container_bytes(model, **kwargs)


def fixed_inputs() -> torch.Tensor:
    """Four fixed 8x8 images in ``[0, 1]``."""
    return torch.rand((4, 1, 8, 8), generator=torch.Generator().manual_seed(7))


def main() -> None:
    """Write every golden file and the reference logits of its model on :func:`fixed_inputs`."""
    outputs = {}
    for name in CASES:
        model, kwargs = build(name)
        atomic_write_bytes(GOLDEN_DIR / f"{name}.albsnn", container_bytes(model, **kwargs))
        with torch.no_grad():
            outputs[name] = model(fixed_inputs()).tolist()
    atomic_write_text(EXPECTED_OUTPUTS, json.dumps(outputs, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
