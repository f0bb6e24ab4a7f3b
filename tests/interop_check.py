"""Shared checks of the interop tests: lively random networks, and imported-vs-source equivalence with ties traced.

``assert_equivalent`` is the issue's proof for one network and one T: on real
images the imported model's logits equal the source's within ``1e-5`` and the
predictions agree on >= 99.9 %; every image whose logits differ more is traced to
its first differing spike, which must sit on a threshold tie.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from albsnn_compress.snn.neurons import LIF, RESET_MODES
from albsnn_compress.snn.spec import SpikingNet

LOGIT_TOLERANCE = 1e-5
TIE_TOLERANCE = 1e-4  # membranes computed in another order differ by float rounding only

SourceRun = Callable[[torch.Tensor], tuple[torch.Tensor, list[torch.Tensor]]]
"""``images -> (logits [B, K], spikes [T, B, ...] of each neuron layer in order)``, run in the source framework."""


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
    charged, spikes = [], []
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


def our_traces(
    model: SpikingNet, images: torch.Tensor
) -> tuple[torch.Tensor, list[tuple[LIF, torch.Tensor, torch.Tensor]]]:
    """Logits and ``(neuron, H, spikes)`` of every LIF layer; the traced spikes are checked against the real forward."""
    inputs: list[tuple[LIF, torch.Tensor, torch.Tensor]] = []
    hooks = [
        m.register_forward_hook(lambda m, i, o: inputs.append((m, i[0], o)))
        for m in model.modules()
        if isinstance(m, LIF)
    ]
    try:
        with torch.no_grad():
            logits = model(images)
    finally:
        for hook in hooks:
            hook.remove()
    traces = []
    with torch.no_grad():
        for lif, x, out in inputs:
            h, spikes = lif_trace(lif, x)
            assert torch.equal(spikes, out), "lif_trace no longer mirrors LIF.forward"
            traces.append((lif, h, spikes))
    return logits, traces


def _tie(lif: LIF, h: torch.Tensor, differ: torch.Tensor) -> float:
    threshold = lif.v_threshold if isinstance(lif.v_threshold, torch.Tensor) else torch.tensor(lif.v_threshold)
    margin = (h - threshold).abs()
    return float(margin[differ].max())


def assert_equivalent(model: SpikingNet, run_source: SourceRun, images: torch.Tensor) -> dict[str, float]:
    """The imported ``model`` computes what the source computes on ``images``; returns the measured numbers.

    Raises:
        AssertionError: predictions agree on < 99.9 %, or an image's logits differ by more than
            :data:`LOGIT_TOLERANCE` without its first differing spike being a threshold tie.
    """
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
            raise AssertionError(
                f"image {row}: logits differ by {(logits[row] - reference[row]).abs().max():.3g} although every spike agrees"
            )
    agree = float((logits.argmax(1) == reference.argmax(1)).float().mean())
    assert agree >= 0.999, f"predictions agree on {agree:.2%}"
    rates = [float(spikes.mean()) for _, _, spikes in traces]
    return {
        "max_difference": float((logits - reference).abs().max()),
        "agreement": agree,
        "ties": len(off),
        "min_rate": min(rates, default=1.0),
    }


def assert_lively(numbers: dict[str, float], logits: torch.Tensor) -> None:
    """The test network is not degenerate: every neuron layer fires somewhat and the output depends on the image."""
    assert numbers["min_rate"] > 0.005, f"a neuron layer almost never fires (rate {numbers['min_rate']:.4f})"
    assert bool((logits != logits[:1]).any()), "every image gets the same logits"
