"""The one exception hierarchy of albsnn-compress.

Every error a user can cause (a bad file, a bad option, a missing dataset) is an
``AlbsnnError``. The command line maps it to a one-line message and exit status 2
in a single place (``albsnn_compress.cli.main``); nothing else needs to catch it.
Each subclass also derives from the matching builtin so callers that already catch
``ValueError`` or ``FileNotFoundError`` keep working.
"""

from __future__ import annotations

__all__ = [
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
    """A network from another framework (snnTorch, SpikingJelly, NIR) has no exact albsnn form, or its files are unusable."""
