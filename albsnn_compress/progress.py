"""Progress of long runs as plain events: the library reports, the caller decides what to show.

Training (:class:`~albsnn_compress.training.trainer.Trainer`,
:func:`~albsnn_compress.training.train_model.train_model`) and the search
(:func:`~albsnn_compress.search.run.compress`) take an optional ``on_progress``
callback and call it with a :class:`ProgressEvent` as they go; they never print.
The command line turns the events into progress bars
(``albsnn_compress.cli.progress``); a notebook or a log can do anything else.

Phases (at most one event stream per phase is open at a time):

* ``"train"``: a whole training run; steps of the schedule.
* ``"slice"``: one :meth:`Trainer.run` call (an epoch of training, or one
  finetuning slice of the search); its optimisation steps.
* ``"search"``: a compression search; ``completed`` counts trajectory steps, the
  total is unknown.

Every phase ends with one event whose ``finished`` is true.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["ProgressEvent", "ProgressCallback"]


@dataclass(frozen=True)
class ProgressEvent:
    """One update of a running phase.

    Attributes:
        phase: ``"train"``, ``"slice"`` or ``"search"`` (see the module docstring).
        description: what runs now, for people (``"epoch 2"``, ``"try conv3"``, ``"search: revert"``).
        completed: units done so far in this phase (steps, or trajectory steps).
        total: units the phase will take, or ``None`` when not known in advance.
        status: the latest figures, for people (``"loss 0.4132"``).
        finished: this is the phase's last event.
    """

    phase: str
    description: str
    completed: int
    total: int | None
    status: str = ""
    finished: bool = False


ProgressCallback = Callable[[ProgressEvent], None]
