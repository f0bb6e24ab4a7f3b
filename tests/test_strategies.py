"""The strategies' decisions against a scripted accuracy model.

Real searches (tests/test_search.py) check the budget and reproducibility on
digits, where measured drops are a few images and the path a search takes is
not under the test's control. Here a small session implements the
:class:`~albsnn_compress.search.protocol.StrategySession` protocol (checked
below, member by member) on a scripted model: each layer costs a known number
of points once binarized, and a slice that only finetunes wins back a known
amount, so each branch of the strategy (calibrate, skip on estimate, recover,
bisect, extend, revert, back off) is exercised on purpose.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pytest

from albsnn_compress.errors import CompressionError
from albsnn_compress.search.calibration import Calibration
from albsnn_compress.search.config import SearchConfig
from albsnn_compress.search.protocol import StrategySession
from albsnn_compress.search.result import LayerDecision
from albsnn_compress.search.strategies import STRATEGIES, adaptive, oracle, register_strategy, resolve_strategy
from tests.protocol_check import assert_implements


@dataclass
class ScriptedSession:
    """Drop = sum of the binarized layers' costs, less ``recovery`` per slice that only finetunes,
    ``extend_recovery`` per extension slice, plus ``final_penalty`` for the final finetune
    (a restore forgets what the reverted slices won). ``margin`` stands for a confidence bound:
    decisions judge the drop plus it. ``control_drop`` is what a float control finetuned like the
    run drops; ``estimates`` the estimator's raw values (1.0 for every layer when empty).

    Precisions: ``ladders`` (default ``(1,)`` per layer) are the bits each layer may take; a layer at
    k bits costs ``bit_costs[layer][k]`` (0 when not scripted), at 1 bit ``costs[layer]``; its estimate
    there is its 1-bit one over k, and it saves ``1000 * (32 - k) // 31`` bits. ``selection``
    names the layers binarized at the start (the input model's)."""

    costs: dict[str, float]
    budget: float
    recovery: float = 0.0
    extend_recovery: float = 0.0
    final_penalty: float = 0.0
    margin: float = 0.0
    control_drop: float = 0.0
    estimates: dict[str, float] = field(default_factory=dict)
    config: SearchConfig = field(default_factory=lambda: SearchConfig(epochs=1.0))  # the run these tests script
    calibration: Calibration = field(default_factory=Calibration)
    current_drop: float = 0.0
    decisions: dict[str, LayerDecision] = field(default_factory=dict)
    selection: list[str] = field(default_factory=list)
    bit_costs: dict[str, dict[int, float]] = field(default_factory=dict)
    ladders: dict[str, tuple[int, ...]] = field(default_factory=dict)
    levels: dict[str, int] = field(default_factory=dict)
    recovered: float = 0.0
    slices: list[str] = field(default_factory=list)
    epochs: list[float] = field(default_factory=list)
    rates: list[float | None] = field(default_factory=list)
    actions: list[tuple[str, list[str]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.ladders = self.ladders or {name: (1,) for name in self.costs}
        self.levels = {name: 1 for name in self.selection}

    @property
    def candidates(self) -> list[str]:
        return list(self.costs)

    @property
    def saved_bits(self) -> dict[str, int]:
        return {name: 1000 for name in self.costs}

    @property
    def verdicts(self) -> dict[str, tuple[bool, str]]:
        return {name: (d.binarized, d.reason) for name, d in self.decisions.items()}

    def estimate(self, names: list[str], bits: Mapping[str, int] | None = None) -> dict[str, float]:
        # alike unless scripted; at k bits the 1-bit estimate over k
        return {name: self.estimates.get(name, 1.0) / (bits or {}).get(name, 1) for name in names}

    def saved_bits_at(self, name: str, bits: int) -> int:
        return 1000 * (32 - bits) // 31

    def binarized(self) -> list[str]:
        return [name for name in self.costs if self.levels.get(name) == 1]

    def binarize(self, names: list[str]) -> None:
        self.set_bits({name: 1 for name in names})

    def unbinarize(self, names: list[str], keep_values: bool = False) -> None:
        self.set_bits({name: 32 for name in names})

    def bits(self) -> dict[str, int]:
        return {name: self.levels.get(name, 32) for name in self.costs}

    def set_bits(self, bits: Mapping[str, int], keep_values: bool = False) -> None:
        for name, value in bits.items():
            if value == 32:
                self.levels.pop(name, None)
            else:
                self.levels[name] = value

    def cost(self, name: str, bits: int) -> float:
        return self.costs[name] if bits == 1 else self.bit_costs.get(name, {}).get(bits, 0.0)

    def finetune(self, epochs: float, description: str, lr: float | None = None) -> None:
        self.slices.append(description)
        self.epochs.append(epochs)
        self.rates.append(lr)
        if description in ("finetune the rest", "final finetune", "finetune, every candidate binary"):
            self.recovered += self.recovery
        if description == "final finetune":
            self.recovered -= self.final_penalty
        if description.startswith("extend"):
            self.recovered += self.extend_recovery

    def measure(self) -> float:
        self.current_drop = sum(self.cost(n, bits) for n, bits in self.levels.items()) - self.recovered
        return self.current_drop

    def judged_drop(self) -> float:
        return self.current_drop + self.margin

    def control(self, epochs: float) -> bool:
        self.slices.append("float control")
        self.epochs.append(epochs)
        self.rates.append(None)
        return self.control_drop + self.margin <= self.budget

    def fits_budget(self) -> bool:
        return self.judged_drop() <= self.budget

    def snapshot(self) -> tuple[dict[str, int], float]:
        return dict(self.levels), self.recovered

    def restore(self, snapshot: tuple[dict[str, int], float], drop: float) -> None:
        self.levels, self.recovered = dict(snapshot[0]), snapshot[1]
        self.current_drop = drop

    def restore_input(self) -> None:
        self.restore(({name: 1 for name in self.selection}, 0.0), 0.0)

    def record(self, action: str, layers: list[str], raw: Mapping[str, float] | None = None) -> None:
        self.actions.append((action, list(layers)))

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
        points = self.calibration.points(raw) if raw is not None else None
        self.decisions[name] = LayerDecision(name, 1, binarized, raw, points, 1000, reason, alone, increment, bits)


def test_the_scripted_session_implements_the_protocol() -> None:
    assert_implements(ScriptedSession({"a": 0.1}, budget=1.0), StrategySession)


def test_a_layer_skipped_on_its_estimate_is_tried_once_finetuning_frees_budget() -> None:
    session = ScriptedSession({"a": 0.6, "b": 0.6, "c": 0.6}, budget=1.0, recovery=0.5)
    adaptive(session)
    # 'a' calibrates (0.6 pts per estimate unit); 'b' and 'c' exceed the 0.4 left, so the rest of the
    # run finetunes (drop 0.6 -> 0.1); then 'b' fits (0.7 <= 1.0) and 'c' no longer does
    assert session.binarized() == ["a", "b"]
    assert session.slices == ["try a", "finetune the rest", "try b"]
    assert session.epochs == [0.25, 0.75, 0.25]  # 'b' was measured within budget after its own slice
    assert session.current_drop <= session.budget
    assert session.verdicts["c"][0] is False and "remaining budget" in session.verdicts["c"][1]


def test_kept_trial_slices_are_the_finetuning_run_itself() -> None:
    session = ScriptedSession({"a": 0.1, "b": 0.1}, budget=1.0)
    adaptive(session)
    assert session.binarized() == ["a", "b"]
    assert session.slices == ["try a", "try b", "final finetune"]
    assert sum(session.epochs) == session.config.epochs  # no trial was reverted: no overhead at all


def test_when_nothing_is_affordable_the_rest_of_the_run_only_finetunes() -> None:
    session = ScriptedSession({"a": 0.6, "b": 0.6, "c": 0.6}, budget=1.0, recovery=0.0)
    adaptive(session)
    assert session.binarized() == ["a"]
    assert session.slices == ["try a", "finetune the rest"]
    assert sum(session.epochs) == session.config.epochs


def test_a_group_waits_for_two_measurements_and_a_failing_group_is_bisected() -> None:
    session = ScriptedSession({"a": 0.1, "b": 0.1, "c": 0.1, "d": 2.0}, budget=1.0)
    adaptive(session)
    # 'a' calibrates at 0.1 per unit; one point is too little to bet a group on, so 'b' goes alone;
    # then [c, d] looks affordable (0.2) but 'd' really costs 2.0: reverted, bisected ([c] kept),
    # and [d] alone is rejected without an extension (it misses by more than the budget)
    assert sorted(session.binarized()) == ["a", "b", "c"]
    assert session.slices == ["try a", "try b", "try c, d", "try c", "try d", "final finetune"]
    assert session.verdicts["d"] == (False, "tried: measured drop 2.30 pts > budget 1.00")
    assert [action for action, _ in session.actions].count("revert") == 2
    assert sum(session.epochs) == session.config.epochs + 2 * session.config.trial_epochs  # two reverted slices


def test_a_layer_that_misses_the_budget_by_little_gets_one_more_slice() -> None:
    session = ScriptedSession({"a": 0.3}, budget=0.2, extend_recovery=0.15)
    adaptive(session)
    assert session.binarized() == ["a"]
    assert session.slices == ["try a", "extend a", "final finetune"]
    assert session.epochs == [0.25, 0.25, 0.5]  # both kept slices count towards the run
    assert session.current_drop <= session.budget


def test_a_layer_that_misses_by_more_than_the_budget_is_rejected_without_a_second_slice() -> None:
    session = ScriptedSession({"a": 0.5}, budget=0.2, extend_recovery=0.4)
    adaptive(session)
    assert session.binarized() == []
    assert session.slices == ["try a", "final finetune"]
    assert session.epochs == [0.25, 1.0]  # the reverted slice is the only overhead
    assert session.verdicts["a"] == (False, "tried: measured drop 0.50 pts > budget 0.20")


def test_decisions_judge_the_bound_not_the_drop() -> None:
    # 'a' costs 0.1 of a 0.2 budget: kept on the drop, rejected once the bound adds 0.15
    point = ScriptedSession({"a": 0.1}, budget=0.2)
    adaptive(point)
    bounded = ScriptedSession({"a": 0.1}, budget=0.2, margin=0.15)
    adaptive(bounded)
    assert point.binarized() == ["a"] and bounded.binarized() == []
    assert bounded.verdicts["a"] == (False, "tried: measured drop 0.10 (upper bound 0.25) pts > budget 0.20")


def test_the_final_check_backs_off_until_the_bound_fits() -> None:
    # both kept on the drop during the run; the final finetune costs 0.1, which the bound cannot absorb
    session = ScriptedSession({"a": 0.05, "b": 0.05}, budget=0.3, margin=0.1, final_penalty=0.1)
    adaptive(session)
    assert session.judged_drop() <= session.budget
    assert [action for action, _ in session.actions].count("backoff") >= 1


def test_extend_within_is_a_setting() -> None:
    # 'a' misses 0.2 by 2.5x: rejected at the default 2.0, given its second slice at 3.0
    session = ScriptedSession({"a": 0.5}, budget=0.2, extend_recovery=0.4, config=SearchConfig(extend_within=3.0))
    adaptive(session)
    assert session.binarized() == ["a"]
    assert session.slices == ["try a", "extend a", "final finetune"]


def test_group_after_is_a_setting() -> None:
    # with one measurement enough, 'b' and 'c' go as a group right after 'a' calibrated
    session = ScriptedSession({"a": 0.1, "b": 0.1, "c": 0.1}, budget=1.0, config=SearchConfig(group_after=1))
    adaptive(session)
    assert session.binarized() == ["a", "b", "c"]
    assert session.slices == ["try a", "try b, c", "final finetune"]
    assert session.actions[1] == ("binarize", ["b", "c"])


def test_the_final_check_backs_off_the_costliest_layer_per_bit() -> None:
    # both layers fit during the run, the final finetune costs 0.3: 'b' (its trial measured 0.3) goes back to float
    session = ScriptedSession({"a": 0.1, "b": 0.3}, budget=0.5, final_penalty=0.3)
    adaptive(session)
    assert session.binarized() == ["a"]
    assert session.slices[-2:] == ["final finetune", "back off b"]
    assert session.actions[-2:] == [("final", []), ("backoff", ["b"])]
    assert session.verdicts["b"] == (False, "backed off at the final check: drop with it > budget 0.50 pts")
    assert session.decisions["b"].measured_increment_points == pytest.approx(0.3)
    assert session.current_drop <= session.budget


def test_over_budget_with_every_layer_in_float_returns_the_input() -> None:
    session = ScriptedSession({"a": 0.1}, budget=0.2, final_penalty=0.5)
    adaptive(session)
    assert session.binarized() == [] and session.current_drop == 0.0
    assert [action for action, _ in session.actions][-3:] == ["final", "backoff", "restore-input"]


def test_adaptive_records_estimates_as_the_search_saw_them_when_it_chose() -> None:
    session = ScriptedSession({"a": 0.2, "b": 0.2}, budget=1.0)
    adaptive(session)
    # 'a' was tried before any measurement: no estimate in points; 'b' with the factor 'a' gave (0.2 per unit)
    assert session.decisions["a"].estimate_points is None
    assert session.verdicts["a"][1] == "tried first (no calibration yet); measured drop 0.20 <= budget 1.00"
    assert session.decisions["b"].estimate_points == pytest.approx(0.2)
    assert session.decisions["b"].measured_increment_points == pytest.approx(0.2)
    assert session.decisions["b"].measured_alone_points is None


def test_oracle_measures_each_layer_alone_and_picks_by_measured_drop_per_bit() -> None:
    session = ScriptedSession({"a": 0.3, "b": 0.1, "c": 0.2}, budget=0.35)
    oracle(session)
    assert [layers for action, layers in session.actions if action == "probe"] == [["a"], ["b"], ["c"]]
    assert session.binarized() == ["b", "c"]
    assert session.actions[3] == ("binarize", ["b", "c"])
    assert {name: d.measured_alone_points for name, d in session.decisions.items()} == pytest.approx(
        {"a": 0.3, "b": 0.1, "c": 0.2}
    )
    assert all(d.measured_increment_points is None for d in session.decisions.values())


def test_strategies_by_name_or_function() -> None:
    assert resolve_strategy("adaptive") == ("adaptive", adaptive)
    assert resolve_strategy(STRATEGIES["all"]) == ("all", STRATEGIES["all"])

    def keep_nothing(session: StrategySession) -> None:
        session.record("final", [])

    assert resolve_strategy(keep_nothing) == ("keep_nothing", keep_nothing)
    with pytest.raises(
        CompressionError,
        match=r"unknown strategy 'random'; choose one of \['recover', 'adaptive', 'oracle', 'all', 'none'",
    ):
        resolve_strategy("random")
    with pytest.raises(CompressionError, match="strategy 3 is not callable"):
        resolve_strategy(3)  # type: ignore[arg-type]
    with pytest.raises(CompressionError, match="strategy name 'oracle' is already registered"):
        register_strategy("oracle", keep_nothing)


def test_a_registered_strategy_is_found_by_name() -> None:
    def keep_nothing(session: StrategySession) -> None:
        session.record("final", [])

    register_strategy("test-keep-nothing", keep_nothing)
    try:
        assert resolve_strategy("test-keep-nothing") == ("test-keep-nothing", keep_nothing)
    finally:
        STRATEGIES.unregister("test-keep-nothing")
