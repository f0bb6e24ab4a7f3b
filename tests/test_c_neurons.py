"""C export of every neuron variant of the spiking core: each reset rule, IF, no input decay, strict thresholds,
any ``v_reset`` and per-channel ``tau``/``v_threshold`` compile with -Werror, run under ASan/UBSan, and give
PyTorch's spikes on the digits test images.

The rule for agreement is ``tests/test_c_export.py``'s: every neuron's traced spike equals PyTorch's, except
where a float sum in another order moves a membrane within rounding of the threshold (a tie, shown by
:func:`~albsnn_compress.formats.c.trace.first_flip`); where the arithmetic is the same on both sides (neurons
on the normalized input) the spikes are identical, ties on the threshold included."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from albsnn_compress.binarize import binarize_, candidate_layers
from albsnn_compress.data import load_split
from albsnn_compress.errors import ExportError
from albsnn_compress.formats.c.export import build_c_sources
from albsnn_compress.formats.c.plan import CHARGE_C, RESET_C, plan_model
from albsnn_compress.formats.c.source import render_files
from albsnn_compress.formats.c.trace import TRACE_RECORD, element_thresholds, first_flip, read_trace
from albsnn_compress.snn.neurons import LIF, RESET_MODES
from albsnn_compress.snn.spec import SpikingNet
from tests.test_c_export import SANITIZE, STRICT, TEMPLATE_DIR, TIE_MARGIN, _compile, _run

pytestmark = [
    pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler (cc) on PATH"),
    pytest.mark.subprocess,  # compiles and runs C, sanitizers included
]

# name -> (spec neuron settings, per-channel settings of every lif layer): each variant of the spiking core
VARIANTS: dict[str, tuple[dict[str, Any], list[str]]] = {
    "hard-v_reset": ({"reset": "hard", "v_reset": -0.25, "tau": 1.5}, []),
    "soft": ({"reset": "soft"}, []),
    "soft_deferred": ({"reset": "soft_deferred", "tau": 1.5}, []),
    "none": ({"reset": "none", "v_threshold": 1.5}, []),
    "if": ({"leak": False, "reset": "soft", "v_threshold": 1.5}, []),
    "no-decay-input": ({"decay_input": False, "tau": 3.0, "v_reset": 0.125}, []),
    "strict": ({"strict_threshold": True, "tau": 4.0}, []),
    "per-channel": ({"reset": "soft"}, ["tau", "v_threshold"]),
    "snntorch": ({"reset": "soft_deferred", "decay_input": False, "strict_threshold": True}, ["tau", "v_threshold"]),
}

# (weights, kernels): between them every kernel that runs neurons over several steps
BUILDS = [("packed", "events"), ("float", "dense")]
ALL_BUILDS = [("packed", "events"), ("packed", "dense"), ("float", "events"), ("float", "dense")]


@pytest.fixture(scope="module")
def digits() -> dict[str, torch.Tensor]:
    """Half the digits test split, and training images for batch-norm statistics."""
    return {
        "test": load_split("digits", None, "test").as_float()[:160],
        "train": load_split("digits", None, "train").as_float()[:192],
    }


def _spec(neuron: dict[str, Any], per_channel: list[str]) -> dict[str, Any]:
    """A conv over the image, a binarized conv over spikes, an average pool and a lone batch norm before a lone
    neuron layer, a linear head: each place a neuron runs in C (fused into each kernel, and on its own)."""
    lif = {"type": "lif", "per_channel": per_channel}
    return {
        "name": "variants",
        "input": {"shape": [1, 8, 8], "mean": [0.5], "std": [0.25]},
        "num_classes": 10,
        "neuron": neuron,
        "layers": [
            {"type": "conv", "out_channels": 8, "kernel_size": 3, "padding": 1},
            {"type": "bn"},
            lif,
            {"type": "conv", "out_channels": 16, "kernel_size": 3, "padding": 1},
            {"type": "bn"},
            lif,
            {"type": "avgpool", "kernel_size": 2},
            {"type": "bn"},
            lif,
            {"type": "flatten"},
            {"type": "linear", "out_features": 10},
        ],
    }


def _per_channel_values(model: SpikingNet) -> None:
    """Distinct values per channel: powers of two and others for ``tau`` (both division paths), thresholds
    around 1."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for neuron in model.modules():
            if not isinstance(neuron, LIF):
                continue
            if isinstance(neuron.tau, torch.Tensor):
                choices = torch.tensor([1.0, 1.5, 2.0, 3.0, 4.0, 6.5])
                picks = torch.randint(len(choices), (neuron.tau.numel(),), generator=generator)
                neuron.tau.copy_(choices[picks].view_as(neuron.tau))
            if isinstance(neuron.v_threshold, torch.Tensor):
                values = 0.6 + 0.8 * torch.rand(neuron.v_threshold.numel(), generator=generator)
                neuron.v_threshold.copy_(values.view_as(neuron.v_threshold))


def lively(spec: dict[str, Any], timesteps: int, images: torch.Tensor) -> SpikingNet:
    """A random network whose neurons fire often: every conv and linear layer binarized, batch-norm statistics
    from real images (the planner folds them), per-channel settings of distinct values."""
    torch.manual_seed(0)
    model = SpikingNet(spec, timesteps)
    _per_channel_values(model)
    with torch.no_grad():
        for norm in (m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)):
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(0.5, 1.5)
            norm.momentum = None  # the running statistics are the plain average over the batches below
    binarize_(model, candidate_layers(model, include_first_last=True))
    model.train()
    with torch.no_grad():
        for batch in torch.split(images, 64):
            model(batch)
    return model.eval()


def reference_spikes(model: SpikingNet, images: torch.Tensor) -> list[np.ndarray]:
    """Every LIF layer's spikes ``[B, T, elements]`` (bool) from PyTorch's forward pass over ``images``."""
    spikes: list[torch.Tensor] = []
    handles = [
        m.register_forward_hook(lambda _m, _i, out: spikes.append(out.transpose(0, 1).clone()))
        for m in model.modules()
        if isinstance(m, LIF)
    ]
    try:
        with torch.inference_mode():
            model(images)
    finally:
        for handle in handles:
            handle.remove()
    return [s.reshape(s.shape[0], s.shape[1], -1).numpy() > 0 for s in spikes]


def run_c(
    model: SpikingNet, images: torch.Tensor, work: Path, weights: str = "packed", kernels: str = "events"
) -> tuple[np.ndarray, bytes, dict[str, str]]:
    """Logits, the trace of every image (one after another) and the files of ``model``'s C export, compiled with
    -Werror and ``-DALBSNN_TRACE``."""
    folder = work / f"{weights}-{kernels}"
    files = render_files(model, plan_model(model, weights=weights, kernels=kernels), weights)
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    binary = _compile(folder, STRICT, work / f"{weights}-{kernels}.bin", ("-DALBSNN_TRACE",))
    logits, _ = _run(binary, images, work, str(work / "trace.bin"))
    return logits, (work / "trace.bin").read_bytes(), files


def assert_agrees(
    model: SpikingNet, images: torch.Tensor, logits: np.ndarray, trace: bytes, *, exact_layers: int = 0
) -> list[int]:
    """The C run of ``images`` against PyTorch, image by image: identical spikes in every neuron layer, step
    and element, and then logits within 1e-4; or a first differing spike that is a tie (at most 2 % of the
    images). The first ``exact_layers`` neuron layers compute exactly what PyTorch computes: no tie there.

    Returns:
        how many spikes the C run fired in each neuron layer (so a caller can tell variants apart).
    """
    reference = reference_spikes(model, images)
    shapes = [layer.shape[1:] for layer in reference]
    per_image = len(trace) // len(images)
    assert per_image == sum(t * e for t, e in shapes) * TRACE_RECORD.itemsize
    with torch.inference_mode():
        expected = model(images).numpy()
    tolerance = 1e-4 * max(1.0, float(np.abs(expected).max()))
    fired, ties = [0] * len(shapes), 0
    for row in range(len(images)):
        layers = read_trace(trace[row * per_image : (row + 1) * per_image], shapes)
        fired = [count + int(spike.sum()) for count, (_, spike) in zip(fired, layers)]
        if all(np.array_equal(spike, reference[i][row]) for i, (_, spike) in enumerate(layers)):
            np.testing.assert_allclose(logits[row], expected[row], rtol=0, atol=tolerance, err_msg=f"image {row}")
            continue
        flip = first_flip(model, images[row], trace[row * per_image : (row + 1) * per_image], batch=images, row=row)
        assert flip is not None and flip.layer >= exact_layers, f"image {row}: {flip}"
        assert flip.margin <= TIE_MARGIN, f"image {row}: a spike flips {flip.margin:.3g} away from the threshold"
        ties += 1
    assert ties <= 0.02 * len(images), f"{ties} of {len(images)} images hold a tie"
    assert all(count > 0 for count in fired), f"a neuron layer never fires: {fired}"
    return fired


@pytest.mark.parametrize("variant", VARIANTS, ids=list(VARIANTS))
def test_each_variant_gives_pytorchs_spikes_over_several_steps(
    variant: str, digits: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    """T = 4: the charge, fire and reset of each variant in every kernel that runs neurons over several steps;
    the variant changes PyTorch's output (so the test is not vacuous) and the C follows it."""
    neuron, per_channel = VARIANTS[variant]
    model = lively(_spec(neuron, per_channel), 4, digits["train"])
    default = lively(_spec({}, []), 4, digits["train"])
    images = digits["test"]
    with torch.inference_mode():
        assert not torch.equal(model(images), default(images)), "the variant computes what the default does"
    for weights, kernels in ALL_BUILDS if per_channel else BUILDS:
        logits, trace, files = run_c(model, images, tmp_path, weights, kernels)
        assert_agrees(model, images, logits, trace)
    source = files["albsnn_model.c"]
    assert RESET_C[model.layers.lif1.reset] in source
    assert ("_thresholds[" in source) == ("v_threshold" in per_channel)


STEP_ZERO = ["hard-v_reset", "if", "no-decay-input", "strict", "per-channel", "snntorch"]
"""The variants that change the first step (its charge from rest or the spike decision)."""


@pytest.mark.parametrize("variant", STEP_ZERO, ids=STEP_ZERO)
def test_each_variant_gives_pytorchs_spikes_in_one_step(
    variant: str, digits: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    """T = 1: the one-step paths (vectorized charge rows, float events, integer firing ranges of the 1-bit
    kernels) follow the charge rule, the strict threshold and the per-channel constants."""
    neuron, per_channel = VARIANTS[variant]
    model = lively(_spec(neuron, per_channel), 1, digits["train"])
    images = digits["test"]
    for weights, kernels in ALL_BUILDS:
        logits, trace, files = run_c(model, images, tmp_path, weights, kernels)
        assert_agrees(model, images, logits, trace)
        assert ("_fires[" in files["albsnn_model.c"]) == (weights == "packed")


def _tie_spec(strict: bool, reset: str) -> dict[str, Any]:
    """IF neurons on the raw features (multiples of 1/16) with threshold 0.5: every sum is exact, and many
    membranes sit exactly on the threshold."""
    return {
        "name": "ties",
        "input": {"shape": [64], "mean": [0.0], "std": [1.0]},
        "num_classes": 10,
        "neuron": {"leak": False, "v_threshold": 0.5, "strict_threshold": strict, "reset": reset},
        "layers": [
            {"type": "lif"},
            {"type": "linear", "out_features": 24},
            {"type": "bn"},
            {"type": "lif", "neuron": {"leak": True, "tau": 2.0}, "per_channel": ["v_threshold"]},
            {"type": "linear", "out_features": 10},
        ],
    }


@pytest.mark.parametrize("reset", ["soft_deferred", "hard"])
def test_strict_thresholds_decide_exact_ties_as_pytorch(
    reset: str, digits: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    """Where both sides compute the same floats the spikes are identical, and ``strict_threshold`` decides the
    membranes exactly on the threshold (many, here) the way PyTorch does."""
    images = digits["test"].flatten(1)
    fired = {}
    for strict in (False, True):
        model = lively(_tie_spec(strict, reset), 3, images)
        logits, trace, _ = run_c(model, images, tmp_path, "float", "dense")
        fired[strict] = assert_agrees(model, images, logits, trace, exact_layers=1)
    assert fired[True][0] < fired[False][0]  # the first layer's ties on the threshold fire only when not strict


def test_a_sanitized_build_of_every_variant_runs_clean(digits: dict[str, torch.Tensor], tmp_path: Path) -> None:
    """ASan and UBSan over the per-channel arrays, the deferred reset and the other charge rules."""
    images = digits["test"][:8]
    for variant in ("snntorch", "if", "none"):
        neuron, per_channel = VARIANTS[variant]
        model = lively(_spec(neuron, per_channel), 3, digits["train"])
        folder = tmp_path / variant
        files = build_c_sources(model).files
        folder.mkdir()
        for name, text in files.items():
            (folder / name).write_text(text)
        logits, stderr = _run(_compile(folder, SANITIZE, tmp_path / f"{variant}.bin"), images, tmp_path)
        assert stderr == ""
        with torch.inference_mode():
            np.testing.assert_allclose(logits, model(images).numpy(), rtol=0, atol=1e-4)


def test_every_charge_rule_has_its_constant_and_case_in_the_templates() -> None:
    header = (TEMPLATE_DIR / "albsnn_kernels.h").read_text()
    kernels = (TEMPLATE_DIR / "albsnn_kernels.c").read_text()
    constants = {name: int(value) for name, value in re.findall(r"#define (ALBSNN_CHARGE_\w+) (\d+)u", header)}
    assert constants.pop("ALBSNN_CHARGE_RULES") == len(CHARGE_C)
    assert set(constants) == set(CHARGE_C.values()) and sorted(constants.values()) == list(range(len(CHARGE_C)))
    assert sorted(re.findall(r"case (ALBSNN_CHARGE_\w+):", kernels)) == sorted(CHARGE_C.values())
    assert set(RESET_C) == set(RESET_MODES)  # every reset rule of the core has a C form


def test_per_channel_settings_are_stored_once_and_equal_values_stay_scalar(digits: dict[str, torch.Tensor]) -> None:
    """One tau array, its reciprocals and one threshold array per neuron layer; a per-channel buffer whose values
    are all equal is the scalar form (the same arithmetic, no arrays)."""
    neuron, per_channel = VARIANTS["per-channel"]
    model = lively(_spec(neuron, per_channel), 2, digits["train"][:64])
    names = re.findall(r"static const float (\w+)\[", build_c_sources(model).files["albsnn_model.c"])
    assert sum(name.endswith("_inv_taus") for name in names) == 3
    assert sum(name.endswith("_taus") and not name.endswith("_inv_taus") for name in names) == 3
    assert sum(name.endswith("_thresholds") for name in names) == 3
    taus = {float(t) for m in model.modules() if isinstance(m, LIF) for t in m.tau.flatten()}  # type: ignore[union-attr]
    assert taus & {1.0, 2.0, 4.0} and taus - {1.0, 2.0, 4.0}  # both division paths of the kernels run
    uniform = SpikingNet(_spec(neuron, per_channel), 2).eval()  # fresh buffers: every channel the same
    assert "_taus[" not in build_c_sources(uniform).files["albsnn_model.c"]
    thresholds = element_thresholds(model.layers.lif1, 8 * 64)  # type: ignore[arg-type]
    assert thresholds.shape == (8 * 64,) and len(set(thresholds[::64].tolist())) > 1


def test_per_channel_settings_that_do_not_fit_are_refused_in_one_line() -> None:
    """Per-channel settings that are not finite or do not fit the layer's channels (a hand-edited model) are
    refused with the layer named (a reset rule without a C form: ``tests/test_c_export.py``)."""
    model = SpikingNet(_spec({}, ["v_threshold"]), 2).eval()
    with torch.no_grad():
        model.layers.lif2.v_threshold[3] = float("nan")  # type: ignore[index]
    with pytest.raises(
        ExportError, match=r"^layer lif2: neuron setting v_threshold holds NaN or infinity; retrain"
    ) as caught:
        plan_model(model)
    assert "\n" not in str(caught.value)
    model = SpikingNet(_spec({}, ["tau"]), 2).eval()
    model.layers.lif1.tau = torch.full((5, 1, 1), 2.0)
    with pytest.raises(
        ExportError, match=r"^layer lif1: neuron setting tau is \[5, 1, 1\], not one number or one per channel of 8; "
    ):
        plan_model(model)
