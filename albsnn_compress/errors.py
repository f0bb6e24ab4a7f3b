"""The one exception hierarchy of albsnn-compress.

Every error a user can cause (a bad file, a bad option, a missing dataset) is an
``AlbsnnError``. The command line maps it to a one-line message and exit status 2
in a single place (``albsnn_compress.cli.main``); nothing else needs to catch it.
Each subclass also derives from the matching builtin so callers that already catch
``ValueError`` or ``FileNotFoundError`` keep working.
"""

from __future__ import annotations

ONE_LINE_LIMIT = 300  # characters of a quoted foreign message (a tensor repr, a library's traceback text)


def one_line(text: object, limit: int = ONE_LINE_LIMIT) -> str:
    """``str(text)`` on one line of at most ``limit`` characters, for quoting inside an error message.

    Runs of whitespace (newlines included: a tensor's repr or a library's message spans several
    lines) become one space, and a longer text is cut to ``limit`` characters ending in ``...``.
    An exception whose message is empty is named by its type.

    Example:
        >>> one_line("tensor([1.,\n        2.])")
        'tensor([1., 2.])'
        >>> one_line(KeyError())
        'KeyError'
    """
    shown = " ".join(str(text).split())
    if not shown and isinstance(text, BaseException):
        shown = type(text).__name__
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


__all__ = [
    "one_line",
    "NirError",
    "OutputSetError",
    "StrictJSONError",
    "SeedError",
    "OutputError",
    "AlbsnnError",
    "BudgetError",
    "CheckpointError",
    "ContainerError",
    "DatasetError",
    "SpecError",
    "CompressionError",
    "ExportError",
    "ReportError",
    "InteropError",
]


class AlbsnnError(Exception):
    """Base class: a problem the user can fix; the message says what and how."""


class SpecError(AlbsnnError, ValueError):
    """An architecture spec (JSON layer list) is malformed."""


class CheckpointError(AlbsnnError, ValueError):
    """A ``model.pt`` file is not a valid albsnn-compress checkpoint."""


class DatasetError(AlbsnnError, FileNotFoundError):
    """A dataset is missing, truncated or malformed."""


class BudgetError(AlbsnnError, ValueError):
    """An accuracy budget is negative or not a number."""


class CompressionError(AlbsnnError, ValueError):
    """A compression request cannot be carried out (e.g. no candidate layers)."""


class ContainerError(AlbsnnError, ValueError):
    """A ``.albsnn`` container is malformed, corrupt or hostile."""


class ExportError(AlbsnnError, ValueError):
    """A model cannot be exported (e.g. ONNX export of an unsupported layer)."""


class ReportError(AlbsnnError, ValueError):
    """A storage report file is malformed or has an unknown schema version."""


class InteropError(AlbsnnError, ValueError):
    """A network from another framework (snnTorch, SpikingJelly, NIR) has no exact albsnn form, or its files are
    unusable."""


class SeedError(AlbsnnError, ValueError):
    """A seed is not an integer in its range."""


class OutputError(AlbsnnError, OSError):
    """An output path cannot be written; the message names the path, the reason and the fix.

    ``errno`` is the underlying error's; ``str()`` is the message alone (no ``[Errno N]``).
    """

    def __str__(self) -> str:
        return self.strerror or super().__str__()


class OutputSetError(AlbsnnError, ValueError):
    """A ``manifest.json`` is malformed or not ours."""


class StrictJSONError(AlbsnnError, ValueError):
    """The text is not JSON this package accepts; the message says why."""


class NirError(AlbsnnError, ValueError):
    """A NIR file or graph cannot be read as a spiking network of ours, or NIR is not installed; the message names the
    node."""
