"""The ``recover`` strategy's decisions against the scripted accuracy model of tests/test_strategies.py.

Every candidate is binarized and the run's epochs finetune them as one slice; over
budget, a float control says whether the layers or the finetuning are to blame, and
the worst-ranked layers (estimated harm per bit) go back to float one slice at a time.
"""

from __future__ import annotations

import pytest

from albsnn_compress.search.config import SearchConfig
from albsnn_compress.search.strategies import STRATEGIES, recover
from tests.test_strategies import ScriptedSession


def test_every_layer_that_recovers_in_the_run_stays_binary_at_the_cost_of_one_slice() -> None:
    # 0.9 points when binarized, 0.8 won back by the run: 0.1 <= 0.2
    session = ScriptedSession({"a": 0.3, "b": 0.3, "c": 0.3}, budget=0.2, recovery=0.8, config=SearchConfig(epochs=8))
    recover(session)
    assert session.binarized() == ["a", "b", "c"]
    assert session.slices == ["finetune, every candidate binary"] and session.epochs == [8]
    assert all(
        verdict[0] and verdict[1].startswith("recovered: measured drop 0.10") for verdict in session.verdicts.values()
    )
    assert [action for action, _ in session.actions] == ["binarize", "finetuned", "final"]


def test_over_budget_the_worst_ranked_layers_return_to_float_until_the_drop_fits() -> None:
    # 'c' has the largest estimate per bit, then 'b': 0.9 - 0.1 = 0.8; without 'c' 0.3 > 0.2; without 'b' 0.1
    session = ScriptedSession(
        {"a": 0.2, "b": 0.2, "c": 0.5}, budget=0.2, recovery=0.1, estimates={"a": 0.1, "b": 0.2, "c": 0.9}
    )
    recover(session)
    assert session.binarized() == ["a"]
    assert session.slices == [
        "finetune, every candidate binary",
        "float control",
        "return c to float",
        "return b to float",
    ]
    assert session.verdicts["c"] == (False, "did not recover: drop 0.80 pts with it > budget 0.20")
    assert session.decisions["c"].measured_increment_points == pytest.approx(0.5)
    assert session.verdicts["b"] == (False, "did not recover: drop 0.30 pts with it > budget 0.20")
    assert session.verdicts["a"][0] and session.current_drop <= session.budget


def test_the_control_runs_the_same_epochs_as_the_run() -> None:
    session = ScriptedSession({"a": 0.5}, budget=0.2, config=SearchConfig(epochs=3))
    recover(session)
    assert session.epochs[:2] == [3, 3] and session.slices[1] == "float control"


def test_when_finetuning_alone_costs_the_budget_the_input_model_is_returned_without_back_offs() -> None:
    session = ScriptedSession({"a": 0.3, "b": 0.3}, budget=0.2, control_drop=0.4)
    recover(session)
    assert session.binarized() == [] and session.current_drop == 0.0
    assert session.slices == ["finetune, every candidate binary", "float control"]
    assert all(not binarized and "float control" in reason for binarized, reason in session.verdicts.values())
    assert session.actions[-1] == ("restore-input", [])


def test_decisions_judge_the_bound_for_the_run_and_the_control_alike() -> None:
    # drop 0.1 fits 0.2, its bound 0.1 + 0.15 does not; the control's bound 0.0 + 0.15 fits: back off
    session = ScriptedSession({"a": 0.1}, budget=0.2, margin=0.15)
    recover(session)
    assert session.binarized() == [] and "float control" in session.slices


def test_recover_is_registered() -> None:
    assert STRATEGIES.lookup("recover") is recover


def test_strategy_none_says_which_layers_the_input_had_binarized() -> None:
    session = ScriptedSession({"a": 0.1, "b": 0.1}, budget=0.2, selection=["a"])
    STRATEGIES.lookup("none")(session)
    assert session.verdicts == {
        "a": (True, "binarized in the input model; strategy 'none' changes no layer"),
        "b": (False, "strategy 'none' keeps every layer in float"),
    }


def test_layers_return_to_float_from_their_binary_values_at_the_gentle_rate() -> None:
    session = ScriptedSession({"a": 0.2, "b": 0.5}, budget=0.3, config=SearchConfig(epochs=8, return_lr=2e-4))
    recover(session)
    assert session.rates[session.slices.index("return b to float")] == 2e-4
    assert session.rates[0] is None  # the run itself: the run's rates


def test_when_every_layer_went_back_the_input_model_is_returned_not_a_finetuned_copy() -> None:
    session = ScriptedSession({"a": 0.5, "b": 0.5}, budget=0.2)
    recover(session)
    assert sorted(name for name in session.slices if name.startswith("return")) == [
        "return a to float",
        "return b to float",
    ]
    assert session.binarized() == [] and session.current_drop == 0.0
    assert session.actions[-1] == ("restore-input", [])
    verdicts = session.verdicts.values()
    assert all(not binarized and reason.startswith("did not recover") for binarized, reason in verdicts)


def test_a_layer_kept_after_returns_is_no_reason_to_restore_the_input() -> None:
    session = ScriptedSession({"a": 0.1, "b": 0.5}, budget=0.2, estimates={"a": 0.1, "b": 0.9})
    recover(session)
    assert session.binarized() == ["a"] and ("restore-input", []) not in session.actions


def test_a_layer_that_does_not_recover_at_one_bit_climbs_its_ladder_until_the_drop_fits() -> None:
    # 'a' costs 0.5 at 1 bit, 0.3 at 2 bits, 0.05 at 4: it stops at 4 bits, never reaching 8 or float
    session = ScriptedSession(
        {"a": 0.5, "b": 0.05},
        budget=0.2,
        estimates={"a": 0.9, "b": 0.1},
        bit_costs={"a": {2: 0.3, 4: 0.05}},
        ladders={"a": (1, 2, 4, 8), "b": (1, 2, 4, 8)},
    )
    recover(session)
    assert session.bits() == {"a": 4, "b": 1}
    assert session.slices == [
        "finetune, every candidate binary",
        "float control",
        "return a to 2 bits",
        "return a to 4 bits",
    ]
    assert session.decisions["a"].bits == 4 and not session.decisions["a"].binarized
    assert session.verdicts["a"][1].startswith("4-bit: recovered: measured drop 0.10")
    assert session.decisions["b"].bits == 1 and session.verdicts["b"][1].startswith("recovered")


def test_the_top_of_a_ladder_is_float_and_an_eight_bit_only_layer_starts_at_eight() -> None:
    # 'edge' may take 8 bits only (a first or last layer); 'a' has 1 bit only and goes straight to float
    session = ScriptedSession(
        {"a": 0.5, "edge": 0.0},
        budget=0.2,
        estimates={"a": 0.9, "edge": 0.1},
        bit_costs={"edge": {8: 0.1}},
        ladders={"a": (1,), "edge": (8,)},
    )
    recover(session)
    assert session.bits() == {"a": 32, "edge": 8}
    assert session.slices[-1] == "return a to float"
    assert session.decisions["edge"].bits == 8 and session.verdicts["edge"][1].startswith("8-bit: recovered")
    assert session.decisions["a"].bits == 32 and session.verdicts["a"][1] == (
        "did not recover: drop 0.60 pts with it > budget 0.20"
    )


def test_strategy_all_gives_every_candidate_its_fewest_bits() -> None:
    session = ScriptedSession({"a": 0.5, "edge": 0.0}, budget=0.2, ladders={"a": (1, 8), "edge": (8,)})
    STRATEGIES.lookup("all")(session)
    assert session.bits() == {"a": 1, "edge": 8}
    assert session.decisions["edge"].bits == 8 and session.decisions["a"].binarized
