"""Shared checks of the interop tests: lively random networks, and imported-vs-source equivalence with ties traced.

``assert_equivalent`` is the issue's proof for one network and one T: on real
images the imported model's logits equal the source's within ``1e-5`` and the
predictions agree on >= 99.9 %; every image whose logits differ more is traced to
its first differing spike, which must sit on a threshold tie.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from albsnn_compress.data import load_split
from albsnn_compress.snn.neurons import LIF, RESET_MODES
from albsnn_compress.snn.recording import lif_modules, record_outputs
from albsnn_compress.snn.spec import SpikingNet

LOGIT_TOLERANCE = 1e-5
TIE_TOLERANCE = 1e-4  # membranes computed in another order differ by float rounding only

SHAPE = (1, 8, 8)
"""The input shape of the test networks: the bundled 8x8 digits."""
IMAGES = 256

SourceRun = Callable[[torch.Tensor], tuple[torch.Tensor, list[torch.Tensor]]]
"""``images -> (logits [B, K], spikes [T, B, ...] of each neuron layer in order)``, run in the source framework."""


def digit_images() -> torch.Tensor:
    """256 real test images (the bundled digits, 8x8) in [0, 1], the same ones for every test."""
    data = load_split("digits", None, "test")
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))[:IMAGES]
    return data.as_float(order)


@contextmanager
def one_thread() -> Iterator[None]:
    """Torch on one thread within the block (the machine is shared), the previous count restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def lively_source(
    factory: Callable[[], nn.Sequential], run: Callable[[nn.Module, int], SourceRun], images: torch.Tensor
) -> nn.Sequential:
    """``factory()``'s network (seed 0) with :func:`lively_batch_norms` gathered by its own loop ``run(net, 4)``."""
    torch.manual_seed(0)
    net = factory()
    lively_batch_norms(net, run(net, 4), images)
    return net


def lively_batch_norms(net: nn.Module, run: Callable[[torch.Tensor], object], images: torch.Tensor) -> None:
    """Random batch-norm affine parameters and running statistics from ``images`` in train mode, so neurons fire."""
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        for norm in norms:
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(0.5, 1.5)
            norm.momentum = None  # running statistics = the plain average over the batches below
        net.train()
        for batch in images[:128].split(64):
            run(batch)
    for norm in norms:
        norm.momentum = 0.1
    net.eval()


def lif_trace(lif: LIF, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(charged membranes H, spikes)``, both ``[T, B, ...]``: ``LIF.forward`` step by step, the membrane kept."""
    deferred = RESET_MODES[lif.reset].deferred
    charged: list[torch.Tensor] = []
    spikes: list[torch.Tensor] = []
    v = None
    for t in range(x.shape[0]):
        h = lif.charge(v, x[t])
        if deferred and spikes:
            h = lif.reset_membrane(h, spikes[-1])
        spike = lif.fire(h)
        v = h if deferred else lif.reset_membrane(h, spike)
        charged.append(h)
        spikes.append(spike)
    return torch.stack(charged), torch.stack(spikes)


def _input_and_output(_module: nn.Module, inputs: tuple[Any, ...], output: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """What :func:`our_traces` keeps of a neuron's call: its input ``[T, B, ...]`` and its spikes."""
    return inputs[0], output


def our_traces(
    model: SpikingNet, images: torch.Tensor
) -> tuple[torch.Tensor, list[tuple[LIF, torch.Tensor, torch.Tensor]]]:
    """Logits and ``(neuron, H, spikes)`` of every LIF layer; the traced spikes are checked against the real forward."""
    lifs = lif_modules(model)
    with torch.no_grad(), record_outputs(lifs, keep=_input_and_output) as calls:
        logits = model(images)
    traces = []
    with torch.no_grad():
        for lif, lif_calls in zip(lifs, calls):
            for x, out in lif_calls:
                h, spikes = lif_trace(lif, x)
                assert torch.equal(spikes, out), "lif_trace no longer mirrors LIF.forward"
                traces.append((lif, h, spikes))
    return logits, traces


def _tie(lif: LIF, h: torch.Tensor, differ: torch.Tensor) -> float:
    threshold = lif.v_threshold if isinstance(lif.v_threshold, torch.Tensor) else torch.tensor(lif.v_threshold)
    margin = (h - threshold).abs()
    return float(margin[differ].max())


def _compare(model: SpikingNet, run_source: SourceRun, images: torch.Tensor) -> dict[str, float]:
    """One batch of :func:`assert_equivalent`: every off image traced to a tie; the counts, not yet judged."""
    with torch.no_grad():
        reference, source_spikes = run_source(images)
    logits, traces = our_traces(model, images)
    assert len(source_spikes) == len(traces), f"{len(source_spikes)} source neuron layers, {len(traces)} imported"
    off = torch.nonzero((logits - reference).abs().amax(dim=1) > LOGIT_TOLERANCE).flatten().tolist()
    for row in off:
        for layer, ((lif, h, spikes), theirs) in enumerate(zip(traces, source_spikes)):
            differ = spikes[:, row] != theirs[:, row].to(spikes.dtype)
            if bool(differ.any()):  # the first differing (layer, step): everything it depends on agrees
                step = int(torch.nonzero(differ.flatten(1).any(dim=1))[0])
                margin = _tie(lif, h[step, row], differ[step])
                assert margin <= TIE_TOLERANCE, (
                    f"image {row}: spike flip {margin:.3g} away from the threshold (neuron layer {layer}, step {step})"
                )
                break
        else:
            difference = float((logits[row] - reference[row]).abs().max())
            raise AssertionError(f"image {row}: logits differ by {difference:.3g} although every spike agrees")
    return {
        "max_difference": float((logits - reference).abs().max()),
        "agreeing": float((logits.argmax(1) == reference.argmax(1)).sum()),
        "images": float(len(images)),
        "ties": float(len(off)),
        "min_rate": min((float(spikes.mean()) for _, _, spikes in traces), default=1.0),
    }


def assert_equivalent(
    model: SpikingNet, run_source: SourceRun, images: torch.Tensor, chunk: int | None = None
) -> dict[str, float]:
    """The imported ``model`` computes what the source computes on ``images``; returns the measured numbers.

    ``chunk`` splits the images into batches of that many (a whole test split), each traced on its own.

    Raises:
        AssertionError: predictions agree on < 99.9 %, or an image's logits differ by more than
            :data:`LOGIT_TOLERANCE` without its first differing spike being a threshold tie.
    """
    parts = [_compare(model, run_source, part) for part in images.split(chunk or len(images))]
    agree = sum(part["agreeing"] for part in parts) / len(images)
    assert agree >= 0.999, f"predictions agree on {agree:.2%}"
    return {
        "max_difference": max(part["max_difference"] for part in parts),
        "agreement": agree,
        "ties": sum(part["ties"] for part in parts),
        "min_rate": min(part["min_rate"] for part in parts),
        "images": float(len(images)),
    }


def assert_imports_exactly(
    net: nn.Module,
    convert: Callable[[nn.Module, tuple[int, ...], int], SpikingNet],
    run: Callable[[nn.Module, int], SourceRun],
    timesteps: int,
    images: torch.Tensor,
) -> None:
    """``convert(net, SHAPE, timesteps)`` (an importer) computes what ``net`` computes in its own loop ``run``
    (:func:`assert_equivalent`), is not degenerate (:func:`assert_lively`) and leaves ``net`` unchanged."""
    before = {k: v.clone() for k, v in net.state_dict().items()}
    model = convert(net, SHAPE, timesteps)
    numbers = assert_equivalent(model, run(net, timesteps), images)
    assert_lively(numbers, model(images))
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items()), "the source network was modified"


def assert_lively(numbers: dict[str, float], logits: torch.Tensor) -> None:
    """The test network is not degenerate: every neuron layer fires somewhat and the output depends on the image."""
    assert numbers["min_rate"] > 0.005, f"a neuron layer almost never fires (rate {numbers['min_rate']:.4f})"
    assert bool((logits != logits[:1]).any()), "every image gets the same logits"
