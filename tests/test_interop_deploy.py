"""The tutorials' networks, as their tutorials write them, all the way to deployment (issue 31).

snnTorch's tutorial 5 (an MLP fed flattened images), tutorial 6 (a conv net, ``Net``) and tutorial 7 (its
``nn.Sequential`` conv net, looped by its ``forward_pass``) and SpikingJelly's ``conv_fashion_mnist`` CSNN, defined
and trained on real FashionMNIST by ``tests/test_interop_classes.py`` (the same classes, seeds and loops, so the
same networks as its slow tests), are imported, compressed and exported. Tutorial 7 is written for Tonic's NMNIST
(2 polarities of 34 x 34 pixels, frames over time), which is not available here: only its input is adapted, each
FashionMNIST image zero-padded by 3 pixels to 34 x 34 (pixel values unchanged), given as both polarity channels and
repeated over T = 5 steps; the network, loop, loss (``SF.mse_count_loss``) and prediction (the output neuron with
most spikes, ``SF.accuracy_rate``'s) are the tutorial's:

* **import**: the imported network's logits equal the class's own ``forward()`` in its framework on the test
  split (within 1e-5; a chunk that differs more is traced to threshold ties by ``tests/interop_check.py``);
* **compress**: ``compress(..., config=SearchConfig(strategy="all", epochs=0.05))`` on 5,000 training images
  (two finetuning batches), so each network gets 1-bit layers (tutorial 5: ``linear2``, its only layer over
  spikes; the conv nets: every layer but the first and the last);
* **C**: the imported network's folder (``export_c``), compiled with ``-Werror`` and run on the test split,
  against the *source framework's* ``forward()``; the compressed network's folder against the compressed PyTorch
  model. Agreement follows ``tests/test_c_export.py``: logits within 1e-4, and every image that differs more
  traced (the ``-DALBSNN_TRACE`` build, :func:`~albsnn_compress.formats.c.trace.first_flip`) to a spike whose
  membrane sits within 1e-4 of its threshold (a float-rounding tie), at most 1 % of the images, predictions
  agreeing on at least 99.9 %;
* **NIR**: none of the four can be written as NIR, each refused in one line naming the layer, the reason and
  the alternative (checked here, so a writer or ``nir`` release that changes it makes these tests fail):
  tutorial 5's neurons use snnTorch's default ``subtract`` reset (``soft_deferred``), which no NIR neuron
  computes; tutorials 6 and 7 and the CSNN max-pool, and NIR (nir 1.0.8) has no max-pooling node (the two
  tutorials' neurons would be refused for their reset too; the CSNN's ``IFNode`` hard reset has a NIR form).

``python -m pytest tests/test_interop_deploy.py -m slow -s`` prints the measured numbers (docs/interop.md).
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from albsnn_compress.binarize import binarized_layers
from albsnn_compress.errors import ExportError
from albsnn_compress.formats.c.export import CExport, export_c
from albsnn_compress.formats.c.trace import first_flip
from albsnn_compress.search import SearchConfig, compress
from albsnn_compress.snn.neurons import LIF
from albsnn_compress.snn.spec import SpikingNet
from tests.interop_check import LOGIT_TOLERANCE, SourceRun, assert_equivalent
from tests.test_c_export import STRICT, TIE_MARGIN, _compile
from tests.test_interop_classes import (
    HAS_SNNTORCH,
    HAS_SPIKINGJELLY,
    _fashion,
    batch_size,
    forward_pass7,
    nmnist_frames,
    nmnist_steps,
    num_steps7,
    snntorch_run,
    spikingjelly_run,
    train_csnn,
    train_tutorial_5,
    train_tutorial_6,
    train_tutorial_7,
    tutorial_7_run,
)

HAS_NIR = importlib.util.find_spec("nir") is not None
pytestmark = [
    pytest.mark.slow,
    pytest.mark.subprocess,  # compiles and runs C
    pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler (cc) on PATH"),
    pytest.mark.skipif(not HAS_NIR, reason="nir is not installed"),
]
needs_snntorch = pytest.mark.skipif(not HAS_SNNTORCH, reason="snntorch is not installed")
needs_spikingjelly = pytest.mark.skipif(not HAS_SPIKINGJELLY, reason="spikingjelly is not installed")

if HAS_SNNTORCH:
    import snntorch.functional as SF

    from albsnn_compress.interop import from_snntorch
if HAS_SPIKINGJELLY:
    from albsnn_compress.interop import from_spikingjelly
if HAS_NIR:
    from albsnn_compress import export_nir
    from albsnn_compress.formats.nir.mapping import RESET_REFUSALS, check_neuron

CHUNK = 4 * batch_size
"""Images per PyTorch batch (a multiple of the 128 tutorial 6's ``forward()`` hard-codes); a tie is traced in the
batch its reference logits came from."""
Fashion = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
"""FashionMNIST's training images and labels, test images and labels (``_fashion``)."""
TRAIN_IMAGES, VAL_IMAGES = 5_000, 1_000
"""Compression's finetuning images (the first of the training split) and its validation images (its last)."""
RESET_ALTERNATIVE = (
    "export ONNX or C, which keep every reset rule, or retrain with reset 'hard' (snnTorch: reset_mechanism='zero') "
    "to export NIR"
)
MAXPOOL_REFUSAL = (
    "layer maxpool1 (maxpool): no NIR node for this layer; NIR has no max pooling node; use avgpool in the spec "
    "(or export ONNX or C)"
)


@dataclass
class Tutorial:
    """One tutorial network: the source, how its framework runs it, its import and how to compress it."""

    name: str
    net: nn.Module
    run: SourceRun
    model: SpikingNet
    layers: list[str] | None  # SearchConfig.layers (None: every layer but the first and the last)
    train_seconds: float
    images: int = 10_000  # test images its forward() runs


def _logits(forward: Any, images: torch.Tensor) -> torch.Tensor:
    """``forward`` (a model, or a source run's logits) on ``images`` in batches of :data:`CHUNK`."""
    with torch.no_grad():
        return torch.cat([forward(part) for part in images.split(CHUNK)])


def _source_ties(tutorial: Tutorial, images: torch.Tensor, source: torch.Tensor, ours: torch.Tensor) -> set[int]:
    """The images whose imported logits differ from the source's by more than 1e-5: each batch holding one is run
    through ``assert_equivalent`` (every such image traced to a threshold tie)."""
    off = torch.nonzero((ours - source).abs().amax(dim=1) > LOGIT_TOLERANCE).flatten().tolist()
    for start in sorted({row // CHUNK * CHUNK for row in off}):
        assert_equivalent(tutorial.model, tutorial.run, images[start : start + CHUNK])
    assert len(off) <= 0.001 * len(images), f"{len(off)} images differ from the source"
    return set(off)


def _run_c(binary: Path, images: torch.Tensor, work: Path, *trace: str) -> np.ndarray:
    """The compiled harness (``tests/test_c_export.py``'s) on ``images``: its float32 logits."""
    images.numpy().astype(np.float32).tofile(work / "images.f32")
    done = subprocess.run(
        [str(binary), str(work / "images.f32"), str(work / "logits.f32"), *trace],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr}"
    return np.fromfile(work / "logits.f32", dtype=np.float32).reshape(len(images), -1)


def _c_build(model: SpikingNet, images: torch.Tensor, work: Path) -> tuple[CExport, np.ndarray]:
    """``export_c`` of ``model`` into ``work/model_c``, compiled with -Werror and run on ``images``."""
    work.mkdir()
    export = export_c(model, work / "model_c")
    return export, _run_c(_compile(work / "model_c", STRICT, work / "model"), images, work)


def _c_ties(
    model: SpikingNet, c_logits: np.ndarray, reference: torch.Tensor, images: torch.Tensor, work: Path
) -> set[int]:
    """The images whose C logits differ from ``model``'s (``reference``, computed in batches of :data:`CHUNK`) by
    more than 1e-4, each traced to its first differing spike, which must be a tie."""
    expected = reference.numpy()
    tolerance = 1e-4 * max(1.0, float(np.abs(expected).max()))
    off = np.flatnonzero(np.abs(c_logits - expected).max(axis=1) > tolerance)
    assert len(off) <= 0.01 * len(images), f"C logits differ on {len(off)} of {len(images)} images"
    if len(off):
        traced = _compile(work / "model_c", STRICT, work / "traced", ("-DALBSNN_TRACE",))
    for row in off.tolist():
        _run_c(traced, images[row : row + 1], work, str(work / "trace.bin"))
        start = row // CHUNK * CHUNK
        batch = images[start : start + CHUNK]
        flip = first_flip(model, images[row], (work / "trace.bin").read_bytes(), batch=batch, row=row - start)
        assert flip is not None, f"image {row}: logits differ although every spike agrees"
        assert flip.margin <= TIE_MARGIN, (
            f"image {row}: spike flip {flip.margin:.3g} away from the threshold (layer {flip.layer}, step {flip.step})"
        )
    return set(off.tolist())


def _agreement(c_logits: np.ndarray, reference: torch.Tensor, explained: set[int]) -> dict[str, float]:
    """C against ``reference``: every image off by more than 1e-4 (+ 1e-5) is among the ``explained`` ties;
    predictions agree on >= 99.9 % and the model is not degenerate."""
    expected = reference.numpy()
    difference = np.abs(c_logits - expected).max(axis=1)
    tolerance = 1e-4 * max(1.0, float(np.abs(expected).max())) + LOGIT_TOLERANCE
    unexplained = set(np.flatnonzero(difference > tolerance).tolist()) - explained
    assert not unexplained, f"images {sorted(unexplained)[:10]} differ with no tie to explain them"
    agree = float((c_logits.argmax(axis=1) == expected.argmax(axis=1)).mean())
    assert agree >= 0.999, f"predictions agree on {agree:.2%}"
    assert len(np.unique(expected.argmax(axis=1))) > 2, "degenerate: (nearly) every image gets the same class"
    return {"images": len(expected), "agreement": agree, "max_difference": float(difference.max())}


def _nir_refusal(model: SpikingNet, path: Path, expected: str) -> None:
    """``export_nir(model)`` is refused in one line, with exactly ``expected``, and writes nothing."""
    path.parent.mkdir(exist_ok=True)
    with pytest.raises(ExportError) as info:
        export_nir(model, path)
    assert str(info.value) == expected and "\n" not in expected
    assert not path.exists() and not list(path.parent.glob("*.nir"))


def _reset_refusal(name: str, reset: str) -> str:
    return f"layer {name}: reset {reset!r} cannot be written to NIR: {RESET_REFUSALS[reset]}; {RESET_ALTERNATIVE}"


def _neurons(model: SpikingNet) -> list[tuple[str, LIF]]:
    return [(name.rsplit(".", 1)[-1], module) for name, module in model.named_modules() if isinstance(module, LIF)]


def _deploy(tutorial: Tutorial, data: Fashion, work: Path) -> dict[str, Any]:
    """Import check, compression, both C builds; returns what was measured and the compressed model."""
    train_x, train_y, test_x, _ = data
    images = test_x[: tutorial.images]
    start = time.perf_counter()
    source = _logits(lambda part: tutorial.run(part)[0], images)
    ours = _logits(tutorial.model, images)
    source_ties = _source_ties(tutorial, images, source, ours)
    seconds = {"source": time.perf_counter() - start}

    start = time.perf_counter()
    result = compress(
        tutorial.model,
        (train_x[:TRAIN_IMAGES], train_y[:TRAIN_IMAGES]),
        (train_x[-VAL_IMAGES:], train_y[-VAL_IMAGES:]),
        1.0,  # strategy "all" binarizes every candidate whatever the budget
        config=SearchConfig(strategy="all", epochs=0.05, layers=tutorial.layers, seed=0),
    )
    compressed = result.model.eval()
    assert result.binarized and binarized_layers(compressed) == result.binarized
    seconds["compress"] = time.perf_counter() - start

    start = time.perf_counter()
    export, c_logits = _c_build(tutorial.model, images, work / "imported")
    ties = _c_ties(tutorial.model, c_logits, ours, images, work / "imported")
    imported = {**_agreement(c_logits, source, source_ties | ties), "ties": len(ties), "source_ties": len(source_ties)}
    packed, c_compressed = _c_build(compressed, images, work / "compressed")
    reference = _logits(compressed, images)
    ties = _c_ties(compressed, c_compressed, reference, images, work / "compressed")
    numbers = {**_agreement(c_compressed, reference, ties), "ties": len(ties)}
    assert packed.weight_bytes < export.weight_bytes  # the binarized layers are stored at 1 bit
    seconds["c"] = time.perf_counter() - start
    binarized = ", ".join(name.rsplit(".", 1)[-1] for name in result.binarized)
    print(
        f"\n{tutorial.name}: test images {imported['images']}; C of the import vs the source framework: predictions "
        f"agree {imported['agreement']:.4%}, largest logit difference {imported['max_difference']:.3g}, ties "
        f"{imported['ties']} (import vs source: {imported['source_ties']}); compressed (binarized {binarized}, "
        f"C weights {export.weight_bytes:,} -> {packed.weight_bytes:,} bytes) C vs PyTorch: predictions agree "
        f"{numbers['agreement']:.4%}, largest logit difference {numbers['max_difference']:.3g}, ties "
        f"{numbers['ties']}; seconds: train "
        f"{tutorial.train_seconds:.0f}, source check {seconds['source']:.0f}, compress {seconds['compress']:.0f}, "
        f"C {seconds['c']:.0f}"
    )
    return {
        "compressed": compressed,
        "imported": imported,
        "c_compressed": numbers,
        "ours": ours,
        "source_ties": source_ties,
    }


@needs_snntorch
def test_snntorch_tutorial_5_compresses_and_runs_in_c(datasets_root: Path, tmp_path: Path) -> None:
    data = _fashion(datasets_root)
    train_x, train_y = data[0], data[1]
    net, seconds = train_tutorial_5(train_x, train_y)
    model = from_snntorch(net, (1, 28, 28))
    assert model.spec["input"]["shape"] == [784]  # fed data.view(batch_size, -1): a flat input, as in C
    tutorial = Tutorial("tutorial 5", net, snntorch_run(net, flat=True), model, ["linear2"], seconds)
    measured = _deploy(tutorial, data, tmp_path)
    assert measured["imported"]["images"] == 10_000
    # NIR: the subtract reset (soft_deferred) has no NIR neuron, the import and its compression alike
    for candidate in (model, measured["compressed"]):
        _nir_refusal(candidate, tmp_path / "nir" / "model.nir", _reset_refusal("lif1", "soft_deferred"))


@needs_snntorch
def test_snntorch_tutorial_6_compresses_and_runs_in_c(datasets_root: Path, tmp_path: Path) -> None:
    data = _fashion(datasets_root)
    train_x, train_y = data[0], data[1]
    net, seconds = train_tutorial_6(train_x, train_y, "class")
    model = from_snntorch(net, (1, 28, 28), trace_batch=batch_size)  # forward() hard-codes batch_size
    # its forward() runs batches of 128 only: 9,984 test images (the tutorial's test loader drops the rest)
    tutorial = Tutorial("tutorial 6", net, snntorch_run(net, batch=batch_size), model, None, seconds, 9_984)
    measured = _deploy(tutorial, data, tmp_path)
    # NIR: F.max_pool2d has no NIR node (the first layer refused), and every neuron's subtract reset has none either
    for candidate in (model, measured["compressed"]):
        _nir_refusal(candidate, tmp_path / "nir" / "model.nir", MAXPOOL_REFUSAL)
        for name, neuron in _neurons(candidate):
            with pytest.raises(ExportError) as info:
                check_neuron(name, neuron)
            assert str(info.value) == _reset_refusal(name, "soft_deferred")


@needs_snntorch
def test_snntorch_tutorial_7_compresses_and_runs_in_c(datasets_root: Path, tmp_path: Path) -> None:
    """Tutorial 7's ``nn.Sequential`` as the tutorial writes it, trained by its loop (``forward_pass``,
    ``SF.mse_count_loss(correct_rate=0.8, incorrect_rate=0.2)``), its input adapted: no Tonic or NMNIST here, so
    each FashionMNIST image is zero-padded to NMNIST's 34 x 34 (pixel values unchanged), given as both polarity
    channels and repeated over T = 5 steps ([T, B, 2, 34, 34], :func:`nmnist_frames`, :func:`nmnist_steps`)."""
    train_x, train_y, test_x, test_y = _fashion(datasets_root)
    data = (nmnist_frames(train_x), train_y, nmnist_frames(test_x), test_y)  # what the C harness reads too
    net, seconds = train_tutorial_7(data[0], train_y)
    model = from_snntorch(net, (2, 34, 34), num_steps7)  # NMNIST's sensor: 2 polarities of 34 x 34
    layers = ["conv", "maxpool", "lif", "conv", "maxpool", "lif", "flatten", "linear", "lif"]
    assert [layer["type"] for layer in model.spec["layers"]] == layers and model.timesteps == num_steps7
    tutorial = Tutorial("tutorial 7", net, tutorial_7_run(net), model, None, seconds)
    measured = _deploy(tutorial, data, tmp_path)
    assert measured["imported"]["images"] == 10_000
    # the tutorial's prediction, the output neuron with most spikes (SF.accuracy_rate's), is the import's argmax
    # (its logits are the output spike counts / T) on every test image but a traced tie
    with torch.no_grad():
        spk_rec = torch.cat([forward_pass7(net, nmnist_steps(part)) for part in data[2].split(CHUNK)], dim=1)
    _, idx = spk_rec.sum(dim=0).max(1)
    differ = set(torch.nonzero(idx != measured["ours"].argmax(1)).flatten().tolist())
    assert differ <= measured["source_ties"], f"images {sorted(differ)[:10]} predicted otherwise, no tie"
    accuracy = float(SF.accuracy_rate(spk_rec, test_y))
    print(f"tutorial 7: SF.accuracy_rate on the test split {accuracy:.2%}, predictions differing {len(differ)}")
    assert accuracy > 0.5  # trained: chance is 0.1
    # NIR: nn.MaxPool2d has no NIR node (the first layer refused), and every neuron's subtract reset has none either
    for candidate in (model, measured["compressed"]):
        _nir_refusal(candidate, tmp_path / "nir" / "model.nir", MAXPOOL_REFUSAL)
        for name, neuron in _neurons(candidate):
            with pytest.raises(ExportError) as info:
                check_neuron(name, neuron)
            assert str(info.value) == _reset_refusal(name, "soft_deferred")


@needs_spikingjelly
def test_spikingjelly_csnn_compresses_and_runs_in_c(datasets_root: Path, tmp_path: Path) -> None:
    import nir

    data = _fashion(datasets_root)
    train_x, train_y = data[0], data[1]
    net, seconds = train_csnn(train_x, train_y)
    model = from_spikingjelly(net, (1, 28, 28))
    tutorial = Tutorial("SpikingJelly CSNN", net, spikingjelly_run(net), model, None, seconds)
    measured = _deploy(tutorial, data, tmp_path)
    assert measured["imported"]["images"] == 10_000
    # NIR: the IFNode's hard reset has a NIR node (nir.IF), but layer.MaxPool2d has none
    assert not [name for name in dir(nir) if "max" in name.lower()]  # nir 1.0.8: AvgPool2d and SumPool2d only
    for candidate in (model, measured["compressed"]):
        for name, neuron in _neurons(candidate):
            assert neuron.reset == "hard" and not neuron.leak
            check_neuron(name, neuron)  # no refusal
        _nir_refusal(candidate, tmp_path / "nir" / "model.nir", MAXPOOL_REFUSAL)
