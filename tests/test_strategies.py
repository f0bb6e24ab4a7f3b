"""The adaptive strategy's decisions against a scripted accuracy model.

Real searches (tests/test_search.py) check the budget and reproducibility on
digits, where measured drops are a few images and the path a search takes is
not under the test's control. Here a small session stands in for
:class:`~albsnn_compress.search.SearchSession`: each layer costs a known number
of points once binarized, and a slice that only finetunes wins back a known
amount, so each branch of the strategy (calibrate, skip on estimate, recover,
bisect, extend, revert) is exercised on purpose.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from albsnn_compress.estimators import Calibration
from albsnn_compress.strategies import adaptive


@dataclass
class _Config:
    trial_epochs: float = 0.25
    epochs: float = 1.0


@dataclass
class ScriptedSession:
    """Drop = sum of the binarized layers' costs, less ``recovery`` per slice that only finetunes
    and ``extend_recovery`` per extension slice (a restore forgets what the reverted slices won)."""

    costs: dict[str, float]
    budget: float
    recovery: float = 0.0
    extend_recovery: float = 0.0
    config: _Config = field(default_factory=_Config)
    calibration: Calibration = field(default_factory=Calibration)
    current_drop: float = 0.0
    binarized: list[str] = field(default_factory=list)
    recovered: float = 0.0
    slices: list[str] = field(default_factory=list)
    epochs: list[float] = field(default_factory=list)
    actions: list[tuple[str, str | None]] = field(default_factory=list)
    verdicts: dict[str, tuple[bool, str]] = field(default_factory=dict)

    @property
    def candidates(self) -> list[str]:
        return list(self.costs)

    @property
    def saved_bits(self) -> dict[str, int]:
        return {name: 1000 for name in self.costs}

    def estimate(self, names: list[str]) -> dict[str, float]:
        return {name: 1.0 for name in names}  # every layer looks alike to the estimator

    def snapshot(self) -> tuple[list[str], float]:
        return list(self.binarized), self.recovered

    def restore(self, snapshot: tuple[list[str], float], drop: float) -> None:
        self.binarized, self.recovered = list(snapshot[0]), snapshot[1]
        self.current_drop = drop

    def binarize(self, names: list[str]) -> None:
        self.binarized += names

    def finetune(self, epochs: float, description: str) -> None:
        self.slices.append(description)
        self.epochs.append(epochs)
        if description in ("finetune the rest", "final finetune"):
            self.recovered += self.recovery
        if description.startswith("extend"):
            self.recovered += self.extend_recovery

    def measure(self) -> float:
        self.current_drop = sum(self.costs[n] for n in self.binarized) - self.recovered
        return self.current_drop

    def record(self, action: str, layer: str | None, estimates: dict[str, float] | None = None) -> None:
        self.actions.append((action, layer))

    def decide(self, name: str, binarized: bool, reason: str, raw: float | None = None, measured: float | None = None) -> None:
        self.verdicts[name] = (binarized, reason)

    def verify_and_back_off(self) -> None:
        self.measure()
        self.record("final", None)


def test_a_layer_skipped_on_its_estimate_is_tried_once_finetuning_frees_budget() -> None:
    session = ScriptedSession({"a": 0.6, "b": 0.6, "c": 0.6}, budget=1.0, recovery=0.5)
    adaptive(session)
    # 'a' calibrates (0.6 pts per estimate unit); 'b' and 'c' exceed the 0.4 left, so the rest of the
    # run finetunes (drop 0.6 -> 0.1); then 'b' fits (0.7 <= 1.0) and 'c' no longer does
    assert session.binarized == ["a", "b"]
    assert session.slices == ["try a", "finetune the rest", "try b"]
    assert session.epochs == [0.25, 0.75, 0.25]  # 'b' was measured within budget after its own slice
    assert session.current_drop <= session.budget
    assert session.verdicts["c"][0] is False and "remaining budget" in session.verdicts["c"][1]


def test_kept_trial_slices_are_the_finetuning_run_itself() -> None:
    session = ScriptedSession({"a": 0.1, "b": 0.1}, budget=1.0)
    adaptive(session)
    assert session.binarized == ["a", "b"]
    assert session.slices == ["try a", "try b", "final finetune"]
    assert sum(session.epochs) == session.config.epochs  # no trial was reverted: no overhead at all


def test_when_nothing_is_affordable_the_rest_of_the_run_only_finetunes() -> None:
    session = ScriptedSession({"a": 0.6, "b": 0.6, "c": 0.6}, budget=1.0, recovery=0.0)
    adaptive(session)
    assert session.binarized == ["a"]
    assert session.slices == ["try a", "finetune the rest"]
    assert sum(session.epochs) == session.config.epochs


def test_a_group_waits_for_two_measurements_and_a_failing_group_is_bisected() -> None:
    session = ScriptedSession({"a": 0.1, "b": 0.1, "c": 0.1, "d": 2.0}, budget=1.0)
    adaptive(session)
    # 'a' calibrates at 0.1 per unit; one point is too little to bet a group on, so 'b' goes alone;
    # then [c, d] looks affordable (0.2) but 'd' really costs 2.0: reverted, bisected ([c] kept),
    # and [d] alone is rejected without an extension (it misses by more than the budget)
    assert sorted(session.binarized) == ["a", "b", "c"]
    assert session.slices == ["try a", "try b", "try c, d", "try c", "try d", "final finetune"]
    assert session.verdicts["d"] == (False, "tried: measured drop 2.30 pts > budget 1.00")
    assert [action for action, _ in session.actions].count("revert") == 2
    assert sum(session.epochs) == session.config.epochs + 2 * session.config.trial_epochs  # two reverted slices


def test_a_layer_that_misses_the_budget_by_little_gets_one_more_slice() -> None:
    session = ScriptedSession({"a": 0.3}, budget=0.2, extend_recovery=0.15)
    adaptive(session)
    assert session.binarized == ["a"]
    assert session.slices == ["try a", "extend a", "final finetune"]
    assert session.epochs == [0.25, 0.25, 0.5]  # both kept slices count towards the run
    assert session.current_drop <= session.budget


def test_a_layer_that_misses_by_more_than_the_budget_is_rejected_without_a_second_slice() -> None:
    session = ScriptedSession({"a": 0.5}, budget=0.2, extend_recovery=0.4)
    adaptive(session)
    assert session.binarized == []
    assert session.slices == ["try a", "final finetune"]
    assert session.epochs == [0.25, 1.0]  # the reverted slice is the only overhead
    assert session.verdicts["a"] == (False, "tried: measured drop 0.50 pts > budget 0.20")
