"""What a NIR read produces, decided once: the caller's arguments and the file's own record, resolved and checked.

:func:`resolve_options` turns ``read_nir``'s arguments and the graph (its metadata, its Input
node and, in our own files, the ``input_norm`` node after it) into one :class:`ReadOptions`:

=====================  ==========================================  ===========================================
option                 our files (graph metadata ``albsnn_format``)  other files
=====================  ==========================================  ===========================================
``timesteps``          the argument, else ``albsnn_timesteps``       the argument (required)
``dt``                 the argument, else ``albsnn_dt``              the argument, else 1e-4 s (:data:`.mapping.DT`)
``mean``, ``std``      the ``input_norm`` node (arguments refused)   the arguments, else 0 and 1
``name``               the argument, else ``albsnn_model``           the argument, else the file's stem
``neuron``             ``albsnn_neuron`` (the spec's settings)       ``{}``
=====================  ==========================================  ===========================================

Every value is checked here, each refusal one line naming the file (and the node or metadata key),
so the translation of the nodes (:mod:`.translate`) starts from settled options.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nir
import numpy as np

from albsnn_compress.errors import AlbsnnError, NirError, StrictJSONError, one_line
from albsnn_compress.files.model_cost import MAX_ACTIVATION, MAX_TIMESTEPS
from albsnn_compress.files.strict_json import strict_loads
from albsnn_compress.formats.nir.chain import Chain
from albsnn_compress.formats.nir.graph_file import checked_name, graph_metadata, written_by_us
from albsnn_compress.formats.nir.mapping import DT
from albsnn_compress.formats.nir.params import (
    as_array,
    finite_floats,
    int_pair,
    integer,
    metadata_flag,
    metadata_of,
    metadata_scalar,
    node_where,
)
from albsnn_compress.limits import check_text, element_count
from albsnn_compress.snn.neurons import normalize_neuron
from albsnn_compress.snn.spec import INPUT_RANKS

__all__ = ["NEURON_JSON_CONTAINERS", "NEURON_JSON_DEPTH", "ReadOptions", "parse_neuron", "resolve_options"]

NEURON_JSON_DEPTH = 8
"""Nesting levels of the neuron settings JSON our writer records (it writes 3: settings, surrogate, values)."""
NEURON_JSON_CONTAINERS = 64
"""Objects and arrays in one neuron settings text (ours holds 2: the settings and the surrogate)."""
_MAX_INT_DIGITS = 20
"""Digits of an integer in that JSON (a 64-bit integer has at most 20; the container header's rule)."""


@dataclass(frozen=True)
class ReadOptions:
    """A NIR read's settings, resolved and checked (see the module docs).

    Attributes:
        path: the file (messages name it).
        ours: our writer made the file: its node metadata (layer names, binary layers, exact ``tau``) is trusted.
        timesteps: steps per image the model runs.
        dt: seconds per step the neuron parameters were written for.
        strict_threshold: the caller's threshold rule; ``None``: each node's recorded rule, else NIR's ``>``.
        input_shape: ``[C, H, W]`` or ``[F]`` of the Input node.
        mean, std: the input normalization ``(x - mean) / std``: one value per channel; a flat input: one value
            for every feature, or one per feature.
        normalization_node: the node holding that normalization (our ``input_norm``), which the translation skips.
        name: the architecture's name in the spec.
        neuron: the spec's neuron settings our writer recorded (``{}`` for other files).
    """

    path: Path
    ours: bool
    timesteps: int
    dt: float
    strict_threshold: bool | None
    input_shape: tuple[int, ...]
    mean: list[float]
    std: list[float]
    normalization_node: str | None
    name: str
    neuron: dict[str, Any] = field(default_factory=dict)


def resolve_options(
    path: Path,
    graph: nir.NIRGraph,
    chain: Chain,
    *,
    timesteps: int | None = None,
    dt: float | None = None,
    strict_threshold: bool | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    name: str | None = None,
) -> ReadOptions:
    """The :class:`ReadOptions` of reading ``graph`` (the ``chain`` :func:`~.chain.chain_of` found in it).

    The keyword arguments are ``read_nir``'s (``None``: what the file records, else the default).

    Raises:
        NirError: one line naming the file and the argument, metadata key or node whose value does not do.
    """
    ours = written_by_us(graph)
    metadata = graph_metadata(graph) if ours else {}
    resolved_timesteps = _timesteps(path, metadata, timesteps)
    resolved_dt = _dt(path, metadata, dt)
    if strict_threshold is not None and not isinstance(strict_threshold, bool):
        raise NirError(f"{path}: strict_threshold must be True, False or None, got {strict_threshold!r}")
    neuron = parse_neuron(f"{path}: graph metadata albsnn_neuron", metadata.get("albsnn_neuron", "{}")) if ours else {}
    input_shape = _input_shape(path, *chain[0])
    resolved_mean, resolved_std, normalization_node = _normalization(path, chain, input_shape, ours, mean, std)
    return ReadOptions(
        path=path,
        ours=ours,
        timesteps=resolved_timesteps,
        dt=resolved_dt,
        strict_threshold=strict_threshold,
        input_shape=input_shape,
        mean=resolved_mean,
        std=resolved_std,
        normalization_node=normalization_node,
        name=_name(path, metadata, name),
        neuron=neuron,
    )


def _recorded_number(path: Path, metadata: Mapping[str, Any], key: str) -> int | float | None:
    """A number of our writer's graph metadata; ``None`` if absent."""
    if key not in metadata:
        return None
    value = metadata_scalar(metadata, key)
    if not isinstance(value, (int, float)):
        raise NirError(f"{path}: graph metadata {key} must be one number, got {one_line(metadata[key], 80)}")
    return value


def _timesteps(path: Path, metadata: Mapping[str, Any], requested: int | None) -> int:
    label = "timesteps" if requested is not None else "graph metadata albsnn_timesteps"
    timesteps = requested if requested is not None else _recorded_number(path, metadata, "albsnn_timesteps")
    if timesteps is None:
        raise NirError(f"{path}: the file does not say how many time steps it runs; pass timesteps")
    if type(timesteps) is not int or not 1 <= timesteps <= MAX_TIMESTEPS:
        raise NirError(f"{path}: {label} must be an integer in [1, {MAX_TIMESTEPS}], got {timesteps!r}")
    return timesteps


def _dt(path: Path, metadata: Mapping[str, Any], requested: float | None) -> float:
    label = "dt" if requested is not None else "graph metadata albsnn_dt"
    dt = requested if requested is not None else _recorded_number(path, metadata, "albsnn_dt")
    dt = DT if dt is None else dt
    if type(dt) not in (int, float) or not (math.isfinite(dt) and dt > 0):
        raise NirError(f"{path}: {label} must be a positive number of seconds, got {dt!r}")
    return float(dt)


def _name(path: Path, metadata: Mapping[str, Any], requested: str | None) -> str:
    """The argument, else what our writer recorded, else the file's stem; each a name (``check_name``)."""
    if requested:
        return checked_name(requested, f"{path}: name")
    recorded = metadata.get("albsnn_model")
    if recorded is None or (isinstance(recorded, str) and not recorded):
        return checked_name(path.stem or "nir", f"{path}: the file's name")
    if not isinstance(recorded, str):
        raise NirError(f"{path}: graph metadata albsnn_model must be a string, got {one_line(recorded, 80)}")
    return checked_name(recorded, f"{path}: graph metadata albsnn_model")


def parse_neuron(where: str, text: Any, partial: bool = False) -> dict[str, Any]:
    """Neuron settings our writer recorded as JSON (graph: the spec's ``neuron``; ``partial``: a layer's overrides).

    The text takes the container header's strict path: at most ``MAX_TEXT_CHARS`` characters, then
    :func:`~albsnn_compress.files.strict_json.strict_loads` with :data:`NEURON_JSON_DEPTH` levels, at most
    :data:`NEURON_JSON_CONTAINERS` objects and arrays and 20-digit integers (no NaN, no duplicate keys).
    """
    if not isinstance(text, str):
        raise NirError(f"{where}: our writer's neuron settings must be JSON text, got {one_line(text, 80)}")
    check_text(text, where, NirError)
    try:
        settings = strict_loads(
            text, max_depth=NEURON_JSON_DEPTH, max_int_digits=_MAX_INT_DIGITS, max_containers=NEURON_JSON_CONTAINERS
        )
    except StrictJSONError as exc:
        raise NirError(f"{where}: our writer's neuron settings are not JSON we accept ({one_line(exc, 120)})") from exc
    if not isinstance(settings, dict):
        raise NirError(f"{where}: our writer's neuron settings must be a JSON object, got {one_line(text, 80)}")
    try:
        return normalize_neuron(settings, "neuron", partial=partial)
    except AlbsnnError as exc:  # normalize_neuron's SpecError: a setting out of range, an unknown key
        raise NirError(f"{where}: our writer's neuron settings do not parse: {one_line(exc, 200)}") from exc


def _input_shape(path: Path, name: str, node: Any) -> tuple[int, ...]:
    """The Input node's per-sample shape: ``[C, H, W]`` images or ``[F]`` feature vectors (an MLP's input)."""
    where = node_where(path, name, node)
    types = node.input_type if isinstance(node.input_type, Mapping) else {}
    shape = as_array(types.get("input"), where, "input shape")
    if shape.ndim != 1 or shape.dtype.kind not in "iu" or len(shape) not in INPUT_RANKS or (shape < 1).any():
        raise NirError(
            f"{where}: input shape {one_line(shape.tolist(), 80)} is neither [C, H, W] (images) nor [F] (feature "
            "vectors); a network of ours takes one of these"
        )
    sizes = tuple(int(size) for size in shape)
    element_count(list(sizes), f"{where}: input shape", NirError, MAX_ACTIVATION)
    return sizes


def _normalization(
    path: Path,
    chain: Chain,
    shape: tuple[int, ...],
    ours: bool,
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
) -> tuple[list[float], list[float], str | None]:
    """``(mean, std, node)``: our writer's ``input_norm`` node if the file has one, else the caller's (or 0 and 1)."""
    recorded = _recorded_normalization(path, chain, shape) if ours else None
    if recorded is None:
        return (*_requested_normalization(path, shape, mean, std), None)
    if mean is not None or std is not None:
        raise NirError(
            f"{path}: the graph normalizes its input itself (node {recorded[2]!r}); leave mean and std unset"
        )
    return recorded


def _stat_counts(shape: tuple[int, ...]) -> tuple[int, ...]:
    """How many values ``mean`` and ``std`` may hold: one per channel; a flat input: 1, or one per feature."""
    return (shape[0],) if len(shape) == 3 else (1, shape[0])


def _requested_normalization(
    path: Path, shape: tuple[int, ...], mean: Sequence[float] | None, std: Sequence[float] | None
) -> tuple[list[float], list[float]]:
    """The caller's mean and std (each checked to hold one value per channel, or for a flat input one value or one
    per feature), default 0 and 1."""
    counts = _stat_counts(shape)
    wanted = (
        f"list {shape[0]} numbers (one per input channel)"
        if len(shape) == 3
        else f"list 1 number (for every feature) or {shape[0]} (one per feature)"
    )
    resolved = []
    for label, values, default in (("mean", mean, 0.0), ("std", std, 1.0)):
        if values is None:
            resolved.append([default] * counts[0])
        elif not isinstance(values, (list, tuple)) or len(values) not in counts:
            raise NirError(f"{path}: {label} must {wanted}, got {one_line(repr(values), 80)}")
        else:
            resolved.append(list(values))  # normalize_spec checks each is a finite number (std > 0)
    return resolved[0], resolved[1]


def _recorded_normalization(
    path: Path, chain: Chain, shape: tuple[int, ...]
) -> tuple[list[float], list[float], str] | None:
    """``(mean, std, node name)`` of our writer's ``input_norm`` node (right after Input), ``None`` if it has none.

    For images the node is a 1x1 Conv2d, for a flat input a diagonal Affine; its weights must be exactly what its
    metadata ``albsnn_mean`` and ``albsnn_std`` say: ``1/std`` on the diagonal, bias ``-mean/std``.
    """
    flat = len(shape) == 1
    if len(chain) < 2 or not isinstance(chain[1][1], nir.Affine if flat else nir.Conv2d):
        return None
    name, node = chain[1]
    metadata = metadata_of(node, True)
    if metadata_flag(metadata, "albsnn_role") != "input_normalization":
        return None
    where = node_where(path, name, node)
    mean = finite_floats(metadata.get("albsnn_mean"), where, "metadata albsnn_mean").reshape(-1)
    std = finite_floats(metadata.get("albsnn_std"), where, "metadata albsnn_std").reshape(-1)
    counts = _stat_counts(shape)
    fits = len(mean) in counts and len(std) in counts and bool((std > 0).all())
    if not (fits and (_is_flat_normalization if flat else _is_normalization)(node, where, mean, std, shape[0])):
        raise NirError(f"{where}: the input normalization's weights disagree with its metadata albsnn_mean/albsnn_std")
    return mean.tolist(), std.tolist(), name


def _is_normalization(node: Any, where: str, mean: np.ndarray, std: np.ndarray, channels: int) -> bool:
    """Whether the Conv2d computes ``(x - mean) / std`` exactly as our writer writes it.

    The weight is compared as the file holds it (``[C, C, 1, 1]``, ``1/std`` on the diagonal, zeros elsewhere):
    no ``C x C`` array is made, so metadata that claims millions of channels costs nothing."""
    plain = all(
        int_pair(getattr(node, key), where, key) == value
        for key, value in (("stride", (1, 1)), ("padding", (0, 0)), ("dilation", (1, 1)))
    )
    weight, bias = as_array(node.weight, where, "weight"), as_array(node.bias, where, "bias")
    if not (plain and integer(node.groups, where, "groups") == 1 and weight.shape == (channels, channels, 1, 1)):
        return False
    return _diagonal_is(weight.reshape(channels, channels), bias, mean, std)


def _is_flat_normalization(node: Any, where: str, mean: np.ndarray, std: np.ndarray, features: int) -> bool:
    """Whether the Affine computes a flat input's ``(x - mean) / std`` exactly as our writer writes it (``F x F``,
    ``1/std`` on the diagonal, zeros elsewhere; the file's own arrays, already bounded by the read)."""
    weight, bias = as_array(node.weight, where, "weight"), as_array(node.bias, where, "bias")
    return weight.shape == (features, features) and _diagonal_is(weight, bias, mean, std)


def _diagonal_is(square: np.ndarray, bias: np.ndarray, mean: np.ndarray, std: np.ndarray) -> bool:
    """``square`` holds ``1/std`` on its diagonal and zeros elsewhere, ``bias`` is ``-mean/std`` (each rounded once
    to float32 from float64, ``mean``/``std`` broadcast over the diagonal)."""
    size = square.shape[0]
    diagonal = np.diagonal(square)
    return (
        bias.shape == (size,)
        and bool(np.array_equal(diagonal, np.broadcast_to(1.0 / std, (size,)).astype(np.float32)))
        and int(np.count_nonzero(square)) == int(np.count_nonzero(diagonal))
        and bool(np.array_equal(bias, np.broadcast_to(-mean / std, (size,)).astype(np.float32)))
    )
