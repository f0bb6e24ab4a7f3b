"""The one registry type behind estimators and strategies: names, duplicates, unknown names, temporary entries."""

from __future__ import annotations

import pytest

from albsnn_compress.errors import CompressionError, SpecError
from albsnn_compress.registry import Registry
from albsnn_compress.search.estimators import ESTIMATORS
from albsnn_compress.search.strategies import STRATEGIES


def test_entries_read_like_a_dict_in_registration_order() -> None:
    shapes: Registry[int] = Registry("shape", SpecError)
    shapes.register("square", 4)
    shapes.register("triangle", 3)
    assert list(shapes) == ["square", "triangle"]
    assert dict(shapes) == {"square": 4, "triangle": 3}
    assert shapes.lookup("triangle") == 3
    assert "square" in shapes and "circle" not in shapes
    assert len(shapes) == 2


def test_a_taken_or_empty_name_is_refused_with_the_registry_error() -> None:
    shapes: Registry[int] = Registry("shape", SpecError)
    shapes.register("square", 4)
    with pytest.raises(SpecError, match="shape name 'square' is already registered; register yours under another name"):
        shapes.register("square", 5)
    assert shapes.lookup("square") == 4
    for bad in ("", None, 3):
        with pytest.raises(SpecError, match="a shape name must be a non-empty string"):
            shapes.register(bad, 1)  # type: ignore[arg-type]


def test_an_unknown_name_lists_the_known_ones_and_the_alternative() -> None:
    shapes: Registry[int] = Registry("shape", CompressionError, "or pass a number of sides")
    shapes.register("square", 4)
    with pytest.raises(CompressionError, match=r"unknown shape 'circle'; choose one of \['square'\] or pass a number"):
        shapes.lookup("circle")


def test_registered_lasts_for_the_block_only_even_when_it_raises() -> None:
    shapes: Registry[int] = Registry("shape", SpecError)
    with pytest.raises(RuntimeError), shapes.registered("hexagon", 6) as entry:
        assert entry == 6 and shapes.lookup("hexagon") == 6
        raise RuntimeError("inside the block")
    assert "hexagon" not in shapes
    shapes.unregister("hexagon")  # unknown: nothing happens


def test_name_of_finds_an_entry_by_identity() -> None:
    first, second = object(), object()
    things: Registry[object] = Registry("thing", SpecError)
    things.register("first", first)
    assert things.name_of(first) == "first"
    assert things.name_of(second) is None


def test_estimators_and_strategies_are_registries() -> None:
    assert isinstance(ESTIMATORS, Registry) and ESTIMATORS.kind == "estimator"
    assert isinstance(STRATEGIES, Registry) and STRATEGIES.kind == "strategy"
    assert list(STRATEGIES) == ["recover", "adaptive", "oracle", "all", "none"]
