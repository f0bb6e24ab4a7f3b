"""The range of a run's seed, checked where a seed enters (``SearchConfig``, ``TrainConfig``, ``--seed``).

torch takes seeds up to 2^64 - 1 and raises a bare ``ValueError`` ("Overflow when
unpacking long long") past it, but our runs derive further seeds from the one
given: the data loader seeds each epoch with ``seed * 1_000_003 + epoch * 101 +
rank``, the search each finetuning slice with ``seed + slice``. So a seed a user
sets (``--seed``, ``SearchConfig.seed``, ``TrainConfig.seed``) is an integer from
0 to :data:`MAX_SEED` = 2^32 - 1. ``TrainConfig`` also takes the seeds the search
derives from it, so it accepts up to :data:`MAX_DERIVED_SEED` = 2^40 - 1, still
far from where the loader's arithmetic would overflow torch (about 2^44).
"""

from __future__ import annotations

import operator
from typing import Any

from albsnn_compress.errors import SeedError

__all__ = ["MAX_SEED", "MAX_DERIVED_SEED", "check_seed"]

MAX_SEED = 2**32 - 1
MAX_DERIVED_SEED = 2**40 - 1


def check_seed(seed: Any, field: str = "seed", maximum: int = MAX_SEED) -> int:
    """``seed`` as an ``int`` from 0 to ``maximum``.

    Args:
        seed: an integer (``bool`` and floats are refused: ``True`` or ``1.5`` is a mistake).
        field: the setting's name, for the message (``SearchConfig.seed``).
        maximum: the largest seed accepted; :data:`MAX_SEED` unless the caller derives seeds itself.

    Raises:
        SeedError: naming the field, the value and the range.

    Example:
        >>> check_seed(7)
        7
    """
    if isinstance(seed, bool):
        raise SeedError(f"{field}: {seed!r} is not an integer seed; pass an integer from 0 to {MAX_SEED}")
    try:
        value = operator.index(seed)
    except TypeError as exc:
        raise SeedError(f"{field}: {seed!r} is not an integer seed; pass an integer from 0 to {MAX_SEED}") from exc
    if not 0 <= value <= maximum:
        shown = str(value) if value.bit_length() <= 128 else f"an integer of {value.bit_length()} bits"
        raise SeedError(f"{field}: {shown} is outside 0..{maximum}; pass a seed from 0 to {maximum}")
    return value
