"""The adaptive strategy's decisions against a scripted accuracy model.

Real searches (tests/test_search.py) check the budget and reproducibility on
digits, where measured drops are a few images and the path a search takes is
not under the test's control. Here a small session stands in for
:class:`~albsnn_compress.search.SearchSession`: each layer costs a known number
of points once binarized, and the final finetune wins back a known amount, so
each branch of the strategy (calibrate, skip on estimate, second pass, revert)
is exercised on purpose.
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
    """Drop = sum of the binarized layers' costs, less ``recovery`` once the final finetune ran
    and ``extend_recovery`` per extension slice."""

    costs: dict[str, float]
    budget: float
    recovery: float = 0.0
    config: _Config = field(default_factory=_Config)
    calibration: Calibration = field(default_factory=Calibration)
    current_drop: float = 0.0
    binarized: list[str] = field(default_factory=list)
    finetuned: bool = False
    extend_recovery: float = 0.0
    recovered: float = 0.0
    slices: list[str] = field(default_factory=list)
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

    def snapshot(self) -> tuple[list[str], bool, float]:
        return list(self.binarized), self.finetuned, self.recovered

    def restore(self, snapshot: tuple[list[str], bool, float], drop: float) -> None:
        self.binarized, self.finetuned, self.recovered = list(snapshot[0]), snapshot[1], snapshot[2]
        self.current_drop = drop

    def binarize(self, names: list[str]) -> None:
        self.binarized += names

    def finetune(self, epochs: float, description: str) -> None:
        self.slices.append(description)
        self.finetuned = self.finetuned or description == "final finetune"
        if description.startswith("extend"):
            self.recovered += self.extend_recovery

    def measure(self) -> float:
        drop = sum(self.costs[n] for n in self.binarized) - self.recovered - (self.recovery if self.finetuned else 0.0)
        self.current_drop = drop
        return drop

    def record(self, action: str, layer: str | None, estimates: dict[str, float] | None = None) -> None:
        self.actions.append((action, layer))

    def decide(self, name: str, binarized: bool, reason: str, raw: float | None = None, measured: float | None = None) -> None:
        self.verdicts[name] = (binarized, reason)

    def verify_and_back_off(self) -> None:
        self.measure()
        self.record("final", None)


def test_layers_skipped_on_their_estimate_get_a_second_pass_when_finetuning_frees_budget() -> None:
    session = ScriptedSession({"a": 0.6, "b": 0.6, "c": 0.6}, budget=1.0, recovery=0.5)
    adaptive(session)
    # pass 1: 'a' calibrates (0.6 pts per estimate unit); 'b' and 'c' (0.6 each) exceed the 0.4 left
    # final finetune: drop 0.6 -> 0.1; pass 2 affords one more layer (0.7 <= 1.0), not two
    assert session.binarized == ["a", "b"]
    assert session.current_drop <= session.budget
    assert session.slices == ["try a", "final finetune", "try b"]
    assert session.verdicts["c"][0] is False and "remaining budget" in session.verdicts["c"][1]
    assert ("finetuned", None) in session.actions


def test_no_second_trial_when_the_final_finetune_frees_nothing() -> None:
    session = ScriptedSession({"a": 0.6, "b": 0.6, "c": 0.6}, budget=1.0, recovery=0.0)
    adaptive(session)
    assert session.binarized == ["a"]
    assert session.slices == ["try a", "final finetune"]  # the second pass estimates, finds nothing affordable


def test_a_group_that_fails_is_bisected_and_a_failing_single_layer_rejected() -> None:
    session = ScriptedSession({"a": 0.1, "b": 0.1, "c": 0.1, "d": 2.0}, budget=1.0)
    adaptive(session)
    # 'a' calibrates at 0.1 per unit, so [b, c, d] looks affordable (0.3); 'd' really costs 2.0:
    # the group is reverted and bisected ([b] kept), then single layers: [c] kept, [d] rejected
    assert sorted(session.binarized) == ["a", "b", "c"]
    assert session.slices[:4] == ["try a", "try b, c, d", "try b", "try c"]
    assert session.verdicts["d"] == (False, "tried: measured drop 2.30 pts > budget 1.00")
    assert [action for action, _ in session.actions].count("revert") == 2


def test_a_layer_that_misses_the_budget_by_little_gets_one_more_slice() -> None:
    session = ScriptedSession({"a": 0.3}, budget=0.2, extend_recovery=0.15)
    adaptive(session)
    assert session.binarized == ["a"]
    assert session.slices == ["try a", "extend a", "final finetune"]
    assert session.current_drop <= session.budget


def test_a_layer_that_misses_by_more_than_the_budget_is_rejected_without_a_second_slice() -> None:
    session = ScriptedSession({"a": 0.5}, budget=0.2, extend_recovery=0.4)
    adaptive(session)
    assert session.binarized == []
    assert session.slices == ["try a", "final finetune"]
    assert session.verdicts["a"] == (False, "tried: measured drop 0.50 pts > budget 0.20")
