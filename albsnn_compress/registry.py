"""Named entries that users extend: one registry type for estimators, strategies and what comes next.

A registry maps a name to an entry (an estimator factory, a strategy function).
It refuses a name registered twice and answers an unknown name with the names it
knows, both as the registry's own :class:`~albsnn_compress.errors.AlbsnnError`
subclass, so that the command line prints one line and exits with status 2.

Example:
    >>> from albsnn_compress.errors import CompressionError
    >>> colours = Registry("colour", CompressionError, "or pass an RGB tuple")
    >>> colours.register("red", (255, 0, 0))
    >>> colours.lookup("red")
    (255, 0, 0)
    >>> colours.lookup("mauve")
    Traceback (most recent call last):
    ...
    albsnn_compress.errors.CompressionError: unknown colour 'mauve'; choose one of ['red'] or pass an RGB tuple
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Generic, TypeVar

from albsnn_compress.errors import AlbsnnError

__all__ = ["Registry"]

Entry = TypeVar("Entry")


class Registry(Mapping[str, Entry], Generic[Entry]):
    """Entries by name, in registration order; read it like a ``dict``, extend it with :meth:`register`.

    Args:
        kind: what an entry is, for messages ("estimator").
        error: the error class raised for a duplicate or unknown name.
        alternative: what else a caller may pass instead of a name, for the unknown-name message
            ("or pass an estimator object").
    """

    def __init__(self, kind: str, error: type[AlbsnnError], alternative: str = "") -> None:
        self.kind = kind
        self.error = error
        self.alternative = alternative
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, entry: Entry) -> None:
        """Add ``entry`` under ``name``.

        Raises:
            AlbsnnError: (the registry's ``error``) ``name`` is not a non-empty string or is taken.
        """
        if not isinstance(name, str) or not name:
            raise self.error(f"a {self.kind} name must be a non-empty string, got {name!r}")
        if name in self._entries:
            raise self.error(f"{self.kind} name {name!r} is already registered; register yours under another name")
        self._entries[name] = entry

    def unregister(self, name: str) -> None:
        """Remove ``name`` (nothing happens when it is not registered)."""
        self._entries.pop(name, None)

    @contextmanager
    def registered(self, name: str, entry: Entry) -> Iterator[Entry]:
        """``entry`` registered under ``name`` for the block only (tests, experiments)."""
        self.register(name, entry)
        try:
            yield entry
        finally:
            self.unregister(name)

    def lookup(self, name: str) -> Entry:
        """The entry registered as ``name``.

        Raises:
            AlbsnnError: (the registry's ``error``) no entry has that name; the message lists the names.
        """
        if name not in self._entries:
            alternative = f" {self.alternative}" if self.alternative else ""
            raise self.error(f"unknown {self.kind} {name!r}; choose one of {list(self._entries)}{alternative}")
        return self._entries[name]

    def name_of(self, entry: object) -> str | None:
        """The name ``entry`` is registered under (by identity), or ``None``."""
        return next((name for name, value in self._entries.items() if value is entry), None)

    def __getitem__(self, name: str) -> Entry:
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {list(self._entries)})"
