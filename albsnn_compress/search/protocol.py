"""The interface a search strategy drives: what a strategy may read and do, and nothing more.

A strategy is a function ``strategy(session) -> None`` (see
:mod:`albsnn_compress.search.strategies`). It decides which candidate layers to
binarize by composing the session's operations (estimate, binarize, finetune,
measure, snapshot and restore) and writes down its verdicts (``decide``) and its
path (``record``). :class:`~albsnn_compress.search.session.SearchSession` implements
this protocol on a real model; the tests drive the strategies with a scripted
one. Strategies import this module only, never the session, so the imports
run one way: protocol <- strategies <- search -> session -> protocol.

Units: drops, budgets and estimates in points are percentage points of
validation top-1 accuracy; raw values are the estimator's own unit.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

from albsnn_compress.search.calibration import Calibration
from albsnn_compress.search.result import LayerDecision

__all__ = ["StrategySettings", "StrategySession", "Strategy"]


@runtime_checkable
class StrategySettings(Protocol):
    """The settings strategies read (:class:`~albsnn_compress.search.config.SearchConfig` has them all).

    Attributes:
        epochs: finetuning epochs of the whole run.
        trial_epochs: finetuning epochs of each trial slice.
        extend_within: a single layer whose trial misses the budget by at most this
            multiple of the budget gets one more slice before it is rejected.
        group_after: measurements the calibration needs before several layers are
            tried at once.
        return_lr: ``recover``: peak learning rate of the slice after a layer returns to float.
        target: the hardware target's name (:data:`~albsnn_compress.targets.TARGETS`) or ``None``; on a
            target without float layers no layer may go to float: the top of a ladder is its highest
            precision.
    """

    epochs: float
    trial_epochs: float
    return_lr: float
    extend_within: float
    group_after: int
    target: str | None


@runtime_checkable
class StrategySession(Protocol):
    """What a strategy drives.

    Attributes:
        candidates: the layers it may binarize, in model order.
        saved_bits: per candidate, the bits binarizing it saves.
        budget: the allowed validation drop, points.
        config: the settings strategies read.
        calibration: maps raw estimator values to points; the strategy feeds it
            the drops it measures.
        current_drop: the drop at the last measurement (or restore), points.
        decisions: the latest verdict per candidate decided so far.
        ladders: per candidate, the bits per weight it may take, fewest first (float, 32 bits,
            is above them unless ``config.target`` takes no float layers); ``(1,)`` for every candidate
            in a binary-or-float search.
    """

    @property
    def candidates(self) -> list[str]: ...

    @property
    def saved_bits(self) -> Mapping[str, int]: ...

    @property
    def budget(self) -> float: ...

    @property
    def config(self) -> StrategySettings: ...

    @property
    def calibration(self) -> Calibration: ...

    @property
    def current_drop(self) -> float: ...

    @property
    def decisions(self) -> Mapping[str, LayerDecision]: ...

    @property
    def ladders(self) -> Mapping[str, tuple[int, ...]]: ...

    def estimate(self, names: list[str], bits: Mapping[str, int] | None = None) -> dict[str, float]:
        """Raw estimator values for ``names`` on the model as it is now: the harm of giving each its ``bits``
        (default 1 bit: binarizing it)."""
        ...

    def saved_bits_at(self, name: str, bits: int) -> int:
        """The bits candidate ``name`` saves at ``bits`` per weight against float (0 at 32)."""
        ...

    def binarized(self) -> list[str]:
        """The candidates binarized now, in model order."""
        ...

    def binarize(self, names: list[str]) -> None:
        """Binarize ``names`` (already binarized ones stay as they are)."""
        ...

    def unbinarize(self, names: list[str], keep_values: bool = False) -> None:
        """Return ``names`` to float: their latent weights as they are now, or with ``keep_values`` their
        binarized values (the model computes exactly what it computed)."""
        ...

    def bits(self) -> dict[str, int]:
        """Every candidate's bits per weight now (32: float)."""
        ...

    def set_bits(self, bits: Mapping[str, int], keep_values: bool = False) -> None:
        """Give each named candidate its bits per weight (32: float): from its latent weights, or with
        ``keep_values`` from the values it computes now (exact when moving up, e.g. 1 bit to 2 or to float:
        the model computes what it computed)."""
        ...

    def finetune(self, epochs: float, description: str, lr: float | None = None) -> None:
        """Finetune the model as it is for ``epochs`` (one cosine slice; nothing when ``epochs <= 0``), every
        parameter at peak learning rate ``lr`` when given, else at the run's rates."""
        ...

    def measure(self) -> float:
        """Measure the validation drop against the input model (points); it becomes ``current_drop``."""
        ...

    def control(self, epochs: float) -> bool:
        """Finetune a float copy of the input model as the run's first slice was finetuned (``epochs``, the
        same data order), measure it, and say whether it fits the budget (judged as :meth:`fits_budget`
        judges). What finetuning alone costs on the validation split, which no layer choice can undo.
        The working model and ``current_drop`` are untouched."""
        ...

    def judged_drop(self) -> float:
        """The drop of the last measurement as decisions judge it, points.

        The measured drop itself, or, when the run asks for a confidence level, the
        drop's upper confidence bound.
        """
        ...

    def fits_budget(self) -> bool:
        """Whether :meth:`judged_drop` is within the budget. Strategies accept or reject
        changes with this, never by comparing ``current_drop`` themselves."""
        ...

    def snapshot(self) -> Any:
        """The model as it is now (binarized layers and weights), for :meth:`restore`."""
        ...

    def restore(self, snapshot: Any, drop: float) -> None:
        """Go back to ``snapshot`` exactly, whose measured drop was ``drop`` (points)."""
        ...

    def restore_input(self) -> None:
        """Go back to the input model (its drop is 0 by definition)."""
        ...

    def record(self, action: str, layers: list[str], raw: Mapping[str, float] | None = None) -> object:
        """Append a trajectory step: ``action`` on ``layers``, with the raw estimates it weighed (strategies ignore the
        value)."""
        ...

    def decide(
        self,
        name: str,
        binarized: bool,
        reason: str,
        *,
        raw: float | None = None,
        alone: float | None = None,
        increment: float | None = None,
        bits: int | None = None,
    ) -> None:
        """Write the (latest) verdict on candidate ``name``.

        Args:
            name: the candidate.
            binarized: whether it is binarized after this verdict.
            reason: why, for people.
            raw: its raw estimate, if it was estimated (converted to points with the
                calibration as it stands now).
            alone: the drop measured with it binarized alone, points.
            increment: the drop increment measured for the group it was tried in, points.
            bits: its bits per weight after this verdict (default: 1 when ``binarized``, else 32).
        """
        ...


Strategy = Callable[[StrategySession], None]
"""A strategy: drives a session until its selection is made and verified."""
