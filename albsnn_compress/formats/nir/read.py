"""Read a NIR graph (HDF5) as a :class:`SpikingNet`: chains from snnTorch, SpikingJelly, NIR's own API and our writer.

:func:`read_nir` runs four steps, each its own module:

1. :mod:`.graph_file`: the HDF5 file read with bounds (every object checked from its shape and type
   before it is read; nothing is unpickled);
2. :mod:`.chain`: the graph as one chain ``Input -> ... -> Output`` of node types we read;
3. :mod:`.options`: the caller's arguments and the file's metadata resolved into one
   :class:`~.options.ReadOptions` (time steps, ``dt``, input shape and normalization, name);
4. :mod:`.translate`: the nodes as spec layers and their tensors;

then measures the spec (:func:`~albsnn_compress.files.model_cost.cost_problem`: ``T``, the widest
layer and one image's forward pass against their limits) before it builds the model
(:func:`plan_read` is everything but the build). Everything refused is refused in one line naming
the file and the node or field, before any model is built.

Files our writer made (graph metadata ``albsnn_format``) come back as the model that was exported,
batch norms folded (:func:`~albsnn_compress.formats.nir.write.fold_batch_norm`): layer names,
the input normalization (the ``input_norm`` node), the GAP head, binarized layers (weights
``scale[c] * (+-1)``, re-binarized), the exact ``tau``, the threshold rule and the surrogate.
Other files get NIR's threshold ``v > v_th`` unless ``strict_threshold`` says otherwise, and
an input normalization of mean 0, std 1.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nir
import numpy as np
import torch

from albsnn_compress.binarize import binarize_
from albsnn_compress.errors import AlbsnnError, NirError, one_line
from albsnn_compress.files.model_cost import cost_problem
from albsnn_compress.formats.nir.chain import chain_of
from albsnn_compress.formats.nir.graph_file import read_nir_graph
from albsnn_compress.formats.nir.options import ReadOptions, resolve_options
from albsnn_compress.formats.nir.translate import Translation, translate_chain
from albsnn_compress.snn.spec import SpikingNet, normalize_spec

__all__ = ["ReadPlan", "plan_read", "read_nir"]


def read_nir(
    path: str | os.PathLike[str],
    timesteps: int | None = None,
    *,
    dt: float | None = None,
    strict_threshold: bool | None = None,
    mean: list[float] | None = None,
    std: list[float] | None = None,
    name: str | None = None,
) -> SpikingNet:
    """Read a NIR chain as a :class:`SpikingNet` running ``timesteps`` steps (see the module docs).

    Args:
        path: the ``.nir`` file.
        timesteps: steps per image; ``None``: what our writer recorded (required for other files).
        dt: seconds per step the neuron parameters were written for; ``None``: what our writer
            recorded, else 1e-4 (snnTorch's and SpikingJelly's convention).
        strict_threshold: fire on ``v > v_th`` (NIR's definition, snnTorch) or, ``False``, on
            ``>=`` (SpikingJelly); ``None``: what our writer recorded, else NIR's ``>``.
        mean, std: the per-channel normalization ``(x - mean) / std`` the network expects of
            ``[0, 1]`` pixels before its first node (default 0 and 1); our own files carry theirs
            (the ``input_norm`` node), so these must be left unset for them.
        name: the architecture's name in the spec; default the recorded one or the file's stem.

    Returns:
        The network in eval mode; layers our writer marked binary are binarized again.

    Raises:
        NirError: one line naming the file, the node and what is not supported, before any model is built.

    Example:
        >>> model = read_nir("net.nir", timesteps=4)  # doctest: +SKIP
    """
    path = Path(path)
    plan = plan_read(
        path,
        read_nir_graph(path),
        timesteps=timesteps,
        dt=dt,
        strict_threshold=strict_threshold,
        mean=mean,
        std=std,
        name=name,
    )
    try:
        model = SpikingNet(plan.spec, plan.options.timesteps)
    except AlbsnnError as exc:  # a SpecError of a layer's own check, naming the value
        raise NirError(f"{path}: the graph is no network of ours: {one_line(exc)}") from exc
    _load(model, plan.translation)
    return model.eval()


@dataclass(frozen=True)
class ReadPlan:
    """Everything :func:`read_nir` checks before it builds the model: the options, the layers and tensors, the spec.

    Attributes:
        options: the resolved arguments and file record (:class:`~.options.ReadOptions`).
        translation: the chain as spec layers and their tensors (:class:`~.translate.Translation`).
        spec: the normalized spec, its memory estimate at ``options.timesteps`` within bounds.
    """

    options: ReadOptions
    translation: Translation
    spec: dict[str, Any]


def plan_read(
    path: Path,
    graph: nir.NIRGraph,
    *,
    timesteps: int | None = None,
    dt: float | None = None,
    strict_threshold: bool | None = None,
    mean: list[float] | None = None,
    std: list[float] | None = None,
    name: str | None = None,
) -> ReadPlan:
    """Steps 2 to 4 of :func:`read_nir` on a graph already read, then the spec checked and measured: no model is built.

    ``inspect`` runs it to say whether (and why not) a file can be imported.

    Raises:
        NirError: one line naming the file and the node, argument or metadata key that does not do.
    """
    chain = chain_of(graph, path)
    options = resolve_options(
        path, graph, chain, timesteps=timesteps, dt=dt, strict_threshold=strict_threshold, mean=mean, std=std, name=name
    )
    translation = translate_chain(chain, options)
    return ReadPlan(options, translation, _checked_spec(options, translation))


def _spec(options: ReadOptions, translation: Translation) -> dict[str, Any]:
    """The spec as the translation found it, before :func:`normalize_spec` checks it and fills the defaults."""
    return {
        "name": options.name,
        "input": {"shape": list(options.input_shape), "mean": options.mean, "std": options.std},
        "num_classes": translation.shape[0],
        "neuron": options.neuron,
        "layers": translation.layers,
    }


def _checked_spec(options: ReadOptions, translation: Translation) -> dict[str, Any]:
    """The normalized spec, refused unless its memory estimate (``model_cost.cost_problem``: ``T`` at most
    ``MAX_TIMESTEPS``, every layer's output at most ``MAX_ACTIVATION``, one image's forward pass at most
    ``MAX_INFERENCE_BYTES``) fits: integer arithmetic only, before any model is built."""
    try:
        spec = normalize_spec(_spec(options, translation))
        problem = cost_problem(spec, options.timesteps)
    except AlbsnnError as exc:  # a SpecError of the spec check or of a layer's own check, naming the value
        raise NirError(f"{options.path}: the graph is no network of ours: {one_line(exc)}") from exc
    if problem is not None:
        raise NirError(f"{options.path}: {problem}")
    return spec


def _load(model: SpikingNet, translation: Translation) -> None:
    """The file's tensors into the model, then the layers our writer recorded as binary binarized again."""
    with torch.no_grad():
        for module, tensors in zip(model.layers, translation.tensors):
            for key, value in tensors.items():
                getattr(module, key).copy_(torch.from_numpy(np.ascontiguousarray(value)))
    binarize_(model, [f"layers.{model.spec['layers'][index]['name']}" for index in translation.binary])
