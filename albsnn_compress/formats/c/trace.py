"""Spike-by-spike comparison of a C build with PyTorch, through the kernels' ``ALBSNN_TRACE`` hook.

Built with ``-DALBSNN_TRACE``, the exported kernels call ``albsnn_trace(layer, step,
index, h, spike)`` for every neuron, time step and element. :data:`TRACE_HOOK_C` is a
definition of that hook for a host harness: it appends one 20-byte record per call,
``uint32 layer, uint32 step, uint32 index, float32 h, uint32 spike`` (native byte
order), to the ``FILE *albsnn_trace_file`` the harness opens. :func:`first_flip`
reads such a trace for one image and finds where it first departs from PyTorch.

Why the first departure tells a tie from a bug: neuron layer L at step t depends only
on earlier layers and earlier steps, so at the first (layer, step) where a spike
differs both sides saw the same spikes, and their membranes differ by float rounding
only (sums in another order, batch norm folded). A spike can flip there only if the
membrane sits within rounding of the threshold: a *tie*. A flip far from the threshold
is a bug.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from albsnn_compress.snn.neurons import LIF
from albsnn_compress.snn.spec import SpikingNet

__all__ = ["TRACE_HOOK_C", "TRACE_RECORD", "Flip", "read_trace", "pytorch_spikes", "first_flip", "element_thresholds"]

TRACE_HOOK_C = r"""
#include <stdio.h>
#include <string.h>
#include "albsnn_kernels.h"
FILE *albsnn_trace_file;
void albsnn_trace(uint32_t layer, uint32_t step, uint32_t index, float h, int spike)
{
    uint32_t record[5];
    record[0] = layer;
    record[1] = step;
    record[2] = index;
    memcpy(&record[3], &h, sizeof h);
    record[4] = (uint32_t)spike;
    fwrite(record, sizeof record, 1, albsnn_trace_file);
}
"""
"""A host definition of the trace hook; compile it into a harness built with ``-DALBSNN_TRACE``."""

TRACE_RECORD = np.dtype([("layer", "=u4"), ("step", "=u4"), ("index", "=u4"), ("h", "=f4"), ("spike", "=u4")])


@dataclass(frozen=True)
class Flip:
    """The first (layer, step) where the C spikes differ from PyTorch's.

    Attributes:
        layer: index of the neuron layer (0 = the first LIF).
        step: time step (0-based).
        count: how many elements differ there.
        margin: the largest ``|h - v_threshold|`` of the C membranes among them.
    """

    layer: int
    step: int
    count: int
    margin: float


def read_trace(data: bytes, shapes: list[tuple[int, int]]) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(membrane, spike)`` arrays of shape ``[T, elements]`` per neuron layer from a trace's bytes.

    Raises:
        ValueError: the trace misses an element of a layer, or holds a layer not in ``shapes``.
    """
    records = np.frombuffer(data, dtype=TRACE_RECORD)
    if len(records) and int(records["layer"].max()) >= len(shapes):
        raise ValueError(f"trace: neuron layer {int(records['layer'].max())} but the model has {len(shapes)}")
    layers = []
    for layer, shape in enumerate(shapes):
        rows = records[records["layer"] == layer]
        h, spike = np.full(shape, np.nan, np.float32), np.zeros(shape, bool)
        h[rows["step"], rows["index"]] = rows["h"]
        spike[rows["step"], rows["index"]] = rows["spike"] > 0
        if np.isnan(h).any():
            raise ValueError(
                f"trace: neuron layer {layer} misses {int(np.isnan(h).sum())} of {h.size} (step, element) records"
            )
        layers.append((h, spike))
    return layers


def pytorch_spikes(model: SpikingNet, images: torch.Tensor, row: int = 0) -> list[np.ndarray]:
    """Every LIF layer's spikes ``[T, elements]`` (bool) for image ``row`` of the batch ``images``, in layer order.

    PyTorch's convolutions may sum in another order for another batch, so a membrane on the
    threshold can fire in one batch and not in another: take the spikes from the batch the
    reference logits came from.
    """
    spikes: list[torch.Tensor] = []
    handles = [
        m.register_forward_hook(lambda _m, _i, out: spikes.append(out[:, row].clone()))
        for m in model.modules()
        if isinstance(m, LIF)
    ]
    try:
        with torch.inference_mode():
            model(images)
    finally:
        for handle in handles:
            handle.remove()
    return [s.reshape(s.shape[0], -1).numpy() > 0 for s in spikes]


def first_flip(
    model: SpikingNet, image: torch.Tensor, trace: bytes, *, batch: torch.Tensor | None = None, row: int = 0
) -> Flip | None:
    """The first (layer, step) where the C trace of ``image`` differs from PyTorch's spikes, or ``None``.

    Args:
        model: the network the C was exported from.
        image: the traced image, ``[C, H, W]`` (a flat model: ``[F]``).
        trace: the trace file's bytes (:data:`TRACE_HOOK_C`).
        batch: the batch PyTorch's reference logits came from, holding ``image`` at ``row``
            (default: the image alone).
    """
    reference = pytorch_spikes(model, image.unsqueeze(0) if batch is None else batch, 0 if batch is None else row)
    neurons = [m for m in model.modules() if isinstance(m, LIF)]
    for layer, (h, spike) in enumerate(read_trace(trace, [r.shape for r in reference])):
        steps = np.flatnonzero((spike != reference[layer]).any(axis=1))
        if len(steps):
            step = int(steps[0])
            differ = spike[step] != reference[layer][step]
            thresholds = element_thresholds(neurons[layer], h.shape[1])
            margin = float(np.abs(h[step][differ] - thresholds[differ]).max())
            return Flip(layer, step, int(differ.sum()), margin)
    return None


def element_thresholds(neuron: LIF, elements: int) -> np.ndarray:
    """``neuron``'s float32 ``v_threshold`` of each of its ``elements`` (channel-major: a per-channel value repeats
    over its channel's elements)."""
    value = neuron.v_threshold
    if not isinstance(value, torch.Tensor):
        return np.full(elements, value, np.float32)
    per_channel = value.detach().cpu().to(torch.float32).flatten().numpy()
    return np.repeat(per_channel, elements // per_channel.size)
