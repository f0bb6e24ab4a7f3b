"""C export of networks of flat input ``[F]`` (MLPs: linear, batch norm and neuron layers only): the input is
``ALBSNN_INPUT_C = F`` features of ``1 x 1``, normalized by one number or one per feature, and the compiled
folder gives PyTorch's spikes on the digits test images flattened (the agreement rule of
``tests/test_c_neurons.py``)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from albsnn_compress.data import load_split
from albsnn_compress.formats.c.export import build_c_sources
from albsnn_compress.formats.c.ops import LifOp, NormalizeOp
from albsnn_compress.formats.c.plan import plan_model
from albsnn_compress.snn.spec import SpikingNet
from tests.test_c_export import SANITIZE, _compile, _run
from tests.test_c_neurons import assert_agrees, lively, run_c

pytestmark = [
    pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler (cc) on PATH"),
    pytest.mark.subprocess,  # compiles and runs C, sanitizers included
]

FEATURES = 64


@pytest.fixture(scope="module")
def digits() -> dict[str, torch.Tensor]:
    """Half the digits test split and training images for batch-norm statistics, flattened to 64 features."""
    return {
        "test": load_split("digits", None, "test").as_float()[:160].flatten(1),
        "train": load_split("digits", None, "train").as_float()[:192].flatten(1),
    }


def mlp_spec(mean: list[float], std: list[float], neuron: dict[str, Any] | None = None) -> dict[str, Any]:
    """A 64-32-16-10 MLP with batch norms, a leading (no-op) flatten and soft resets."""
    return {
        "name": "mlp",
        "input": {"shape": [FEATURES], "mean": mean, "std": std},
        "num_classes": 10,
        "neuron": neuron or {"reset": "soft", "tau": 1.5},
        "layers": [
            {"type": "flatten"},
            {"type": "linear", "out_features": 32},
            {"type": "bn"},
            {"type": "lif"},
            {"type": "linear", "out_features": 16, "bias": False},
            {"type": "bn"},
            {"type": "lif", "per_channel": ["v_threshold"]},
            {"type": "linear", "out_features": 10},
        ],
    }


PER_FEATURE = [0.05 + 0.01 * i for i in range(FEATURES)]

# name -> (mean, std): one number for every feature, one per feature, and one of each kind
STATISTICS = {
    "one-number": ([0.3], [0.4]),
    "per-feature": (PER_FEATURE, [0.2 + 0.005 * i for i in range(FEATURES)]),
    "mixed": ([0.25], PER_FEATURE),
}


@pytest.mark.parametrize("statistics", STATISTICS, ids=list(STATISTICS))
def test_an_mlp_gives_pytorchs_spikes(statistics: str, digits: dict[str, torch.Tensor], tmp_path: Path) -> None:
    """T = 3 over 1-bit and float weights, event-driven and dense: the normalization (one channel of 64
    values for one number, else 64 channels of one) and every layer after it as PyTorch computes them."""
    mean, std = STATISTICS[statistics]
    model = lively(mlp_spec(mean, std), 3, digits["train"])
    norm = plan_model(model).ops[0]
    assert isinstance(norm, NormalizeOp) and norm.mean.size == (1 if statistics == "one-number" else FEATURES)
    for weights, kernels in (("packed", "events"), ("float", "dense")):
        logits, trace, _ = run_c(model, digits["test"], tmp_path, weights, kernels)
        assert_agrees(model, digits["test"], logits, trace)
    with torch.inference_mode():  # PyTorch takes the images as they are, flattening them: the same logits
        assert torch.equal(model(digits["test"].view(-1, 1, 8, 8)), model(digits["test"]))


def test_an_mlp_in_one_step_and_a_neuron_on_the_input(digits: dict[str, torch.Tensor], tmp_path: Path) -> None:
    """T = 1 (the one-step paths, the integer firing ranges of 1-bit layers) with snnTorch's neuron, and a
    neuron layer straight on the normalized features (its own kernel over floats)."""
    spec = mlp_spec([0.3], [0.4], {"reset": "soft_deferred", "decay_input": False, "strict_threshold": True})
    spec["layers"].insert(1, {"type": "lif", "neuron": {"v_threshold": 0.5}})
    model = lively(spec, 1, digits["train"])
    assert any(isinstance(op, LifOp) for op in plan_model(model).ops)
    for weights, kernels in (("packed", "events"), ("packed", "dense"), ("float", "events")):
        logits, trace, files = run_c(model, digits["test"], tmp_path, weights, kernels)
        assert_agrees(model, digits["test"], logits, trace)
        assert ("_fires[" in files["albsnn_model.c"]) == (weights == "packed")


def test_the_header_and_readme_describe_the_features(digits: dict[str, torch.Tensor], tmp_path: Path) -> None:
    """``ALBSNN_INPUT_C`` is F, ``_H`` and ``_W`` are 1, and the README says so; a sanitized build runs clean."""
    model = lively(mlp_spec([0.3], [0.4]), 2, digits["train"])
    export = build_c_sources(model)
    header = export.files["albsnn_model.h"]
    macros = {k: int(v) for k, v in re.findall(r"#define (ALBSNN_INPUT_\w) (\d+)", header)}
    assert macros == {"ALBSNN_INPUT_C": FEATURES, "ALBSNN_INPUT_H": 1, "ALBSNN_INPUT_W": 1}
    assert "the model's flat input, ALBSNN_INPUT_C features" in header
    assert f"Input [{FEATURES}] (features: `ALBSNN_INPUT_C` = {FEATURES}" in export.files["README.md"]
    folder = tmp_path / "model_c"
    folder.mkdir()
    for name, text in export.files.items():
        (folder / name).write_text(text)
    images = digits["test"][:8]
    logits, stderr = _run(_compile(folder, SANITIZE, tmp_path / "sanitized"), images, tmp_path)
    assert stderr == ""
    with torch.inference_mode():
        np.testing.assert_allclose(logits, model(images).numpy(), rtol=0, atol=1e-4)


def test_a_flat_model_without_neurons(digits: dict[str, torch.Tensor], tmp_path: Path) -> None:
    """A linear classifier on the features: the normalization and one float layer, the logits as PyTorch's."""
    spec = {
        "name": "linear",
        "input": {"shape": [FEATURES], "mean": PER_FEATURE, "std": [0.5]},
        "num_classes": 10,
        "layers": [{"type": "linear", "out_features": 10}],
    }
    torch.manual_seed(0)
    model = SpikingNet(spec, timesteps=2).eval()
    logits, _, _ = run_c(model, digits["test"], tmp_path, "float", "dense")
    with torch.inference_mode():
        np.testing.assert_allclose(logits, model(digits["test"]).numpy(), rtol=0, atol=1e-5)
