"""Check that an object implements a Protocol member by member: attributes present, methods with its parameters."""

from __future__ import annotations

import inspect
from typing import Any


def protocol_members(protocol: type) -> tuple[list[str], dict[str, Any]]:
    """The attribute names a Protocol declares and its methods by name (its own body, no dunders)."""
    attributes = [name for name in getattr(protocol, "__annotations__", {}) if not name.startswith("_")]
    methods = {
        name: value for name, value in vars(protocol).items() if inspect.isfunction(value) and not name.startswith("_")
    }
    return attributes, methods


def assert_implements(obj: object, protocol: type) -> None:
    """Fail naming the first member of ``protocol`` that ``obj`` lacks or whose parameters differ."""
    attributes, methods = protocol_members(protocol)
    missing = [name for name in [*attributes, *methods] if not hasattr(obj, name)]
    assert not missing, f"{type(obj).__name__} lacks {missing} of {protocol.__name__}"
    for name, method in methods.items():
        want = [(p.name, p.kind) for p in list(inspect.signature(method).parameters.values())[1:]]
        got = [(p.name, p.kind) for p in inspect.signature(getattr(obj, name)).parameters.values()]
        assert got == want, f"{type(obj).__name__}.{name} takes {got}, {protocol.__name__} says {want}"
    assert isinstance(obj, protocol)
