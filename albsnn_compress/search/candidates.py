"""Which layers a search may binarize, and at which precisions: names resolved, first and last left out
(or, with 8 bits allowed, admitted at 8 bits and more only), exclusions applied.

Layer names are accepted in full (``layers.conv3``) or by their last part
(``conv3``, as the command line and the report write them) when that part names
exactly one binarizable layer.
"""

from __future__ import annotations

from torch import nn

from albsnn_compress.binarize import candidate_layers
from albsnn_compress.errors import CompressionError

__all__ = ["FIRST_LAST_MIN_BITS", "resolve_candidates", "resolve_ladders", "resolve_layer_names"]

FIRST_LAST_MIN_BITS = 8
"""The fewest bits the first and last layers may take unless asked otherwise: they see the raw input
and make the logits, where 1 to 4 bits cost the most accuracy for the fewest weights, while 8-bit
weights are close to lossless (docs/method.md, "Precisions")."""


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def resolve_layer_names(names: list[str], available: list[str], what: str) -> list[str]:
    """Full names, in the order given, for ``names`` that are full or short names of ``available`` layers.

    Args:
        names: what the caller wrote (``["conv3", "layers.conv4"]``).
        available: the binarizable layers of the model, full names.
        what: the setting they came from, for messages (``"layers"``, ``"exclude"``).

    Raises:
        CompressionError: a name matches no layer, or a short name matches several.
    """
    resolved = []
    for name in names:
        if name in available:
            resolved.append(name)
            continue
        matches = [full for full in available if _short(full) == name]
        if len(matches) != 1:
            problem = (
                f"names several layers {matches}; write the full name" if matches else "is not a binarizable layer"
            )
            shorts = [_short(full) for full in available]
            choices = shorts if len(set(shorts)) == len(shorts) else available
            raise CompressionError(f"{what}: {name!r} {problem}; choose from {', '.join(choices)}")
        resolved.append(matches[0])
    return resolved


def resolve_candidates(
    model: nn.Module, layers: list[str] | None, exclude: list[str], binarize_first_last: bool
) -> list[str]:
    """The candidate layers of ``model`` in model order (see :class:`~albsnn_compress.search.config.SearchConfig`).

    Raises:
        CompressionError: a name in ``layers`` or ``exclude`` is wrong, or no candidate is left.
    """
    available = candidate_layers(model, include_first_last=True)
    if layers:
        chosen = set(resolve_layer_names(layers, available, "layers"))
        candidates = [name for name in available if name in chosen]
    else:
        candidates = candidate_layers(model, include_first_last=binarize_first_last)
    excluded = set(resolve_layer_names(exclude, available, "exclude"))
    candidates = [name for name in candidates if name not in excluded]
    if not candidates:
        raise CompressionError(
            "no candidate layers to binarize: the model needs binarizable layers besides the first and the "
            "last (or pass binarize_first_last / layers; on the command line --binarize-first-last / --layers)"
        )
    return candidates


def resolve_ladders(
    model: nn.Module,
    layers: list[str] | None,
    exclude: list[str],
    binarize_first_last: bool,
    precisions: tuple[int, ...],
    no_float: str | None = None,
) -> dict[str, tuple[int, ...]]:
    """Each candidate layer with the precisions it may take, fewest bits first (float is above them unless
    ``no_float``).

    Without ``layers`` and ``binarize_first_last``, the first and last layers are candidates only when
    ``precisions`` reaches :data:`FIRST_LAST_MIN_BITS`, and then only for those precisions; every other
    candidate (and every layer named in ``layers``) may take all of ``precisions``. With ``precisions``
    ``(1,)`` these are exactly :func:`resolve_candidates`'s layers.

    ``no_float``: why no layer may stay in float (``"target 'xylo' takes no float layers"``), or ``None``.
    Then every conv and linear layer is a candidate: the first and last at the precisions from
    :data:`FIRST_LAST_MIN_BITS` up, or at all of ``precisions`` when none reaches it.

    Raises:
        CompressionError: a name in ``layers`` or ``exclude`` is wrong, no candidate is left, or (with
            ``no_float``) ``layers`` or ``exclude`` leave a layer out.
    """
    edges_allowed = tuple(bits for bits in precisions if bits >= FIRST_LAST_MIN_BITS)
    if no_float is not None:
        edges_allowed = edges_allowed or precisions
    with_edges = binarize_first_last or (layers is None and bool(edges_allowed))
    candidates = resolve_candidates(model, layers, exclude, with_edges)
    if no_float is not None:
        _check_every_layer(model, candidates, no_float)
    inner = set(candidate_layers(model, include_first_last=False))
    restricted = layers is None and not binarize_first_last
    return {name: edges_allowed if restricted and name not in inner else precisions for name in candidates}


def _check_every_layer(model: nn.Module, candidates: list[str], no_float: str) -> None:
    """Refuse candidates that leave a conv or linear layer of ``model`` out (it would stay in float)."""
    left_out = [name for name in candidate_layers(model, include_first_last=True) if name not in candidates]
    if left_out:
        raise CompressionError(
            f"{no_float}, so every conv and linear layer must be a candidate, but layers/exclude leave out "
            f"{', '.join(left_out)}; name every layer in layers or drop it from exclude (--layers, --exclude)"
        )
