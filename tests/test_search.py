"""The search on a real small case (digits): the budget holds, the seed fixes the result."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import albsnn_compress.search.session as session_module
from albsnn_compress import binarize_, binarized_layers, load_checkpoint
from albsnn_compress.data import load_splits
from albsnn_compress.errors import BudgetError, CompressionError
from albsnn_compress.progress import ProgressEvent
from albsnn_compress.search import SearchConfig, compress
from albsnn_compress.search.strategies import RECOMMENDED_PRECISIONS, default_precisions
from albsnn_compress.training.trainer import evaluate

FAST = {"epochs": 0.5, "trial_epochs": 0.5}


@pytest.fixture(scope="module")
def digits():
    return load_splits("digits", None)


@pytest.mark.parametrize("budget", [0.0, 0.5])
def test_measured_drop_never_exceeds_the_budget(digits_checkpoint: Path, digits, budget: float) -> None:
    model = load_checkpoint(digits_checkpoint)
    result = compress(model, digits["train"], digits["val"], budget, config=SearchConfig(**FAST))
    measured_after = evaluate(result.model, digits["val"])
    assert measured_after == pytest.approx(result.accuracy["val_after"])
    assert result.accuracy["val_before"] - measured_after <= budget + 1e-9
    assert result.trajectory[0].action == "start" and result.trajectory[-1].action in (
        "final",
        "backoff",
        "restore-input",
    )
    assert {d.name for d in result.decisions} == set(result.candidates)
    assert [d.name for d in result.decisions if d.binarized] == result.binarized


def test_input_model_is_not_modified(digits_checkpoint: Path, digits) -> None:
    model = load_checkpoint(digits_checkpoint)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    compress(model, digits["train"], digits["val"], 1.0, config=SearchConfig(strategy="all", epochs=0.2))
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


@pytest.mark.parametrize("estimator", ["output", "loss"])
def test_same_seed_same_selection(digits_checkpoint: Path, digits, estimator: str) -> None:
    model = load_checkpoint(digits_checkpoint)
    config = SearchConfig(estimator=estimator, seed=11, **FAST)
    runs = [compress(model, digits["train"], digits["val"], 1.0, config=config) for _ in range(2)]
    assert runs[0].binarized == runs[1].binarized
    assert runs[0].accuracy == runs[1].accuracy
    for (name, a), (_, b) in zip(runs[0].model.state_dict().items(), runs[1].model.state_dict().items()):
        assert torch.equal(a, b), name


def test_strategy_all_binarizes_every_candidate(digits_checkpoint: Path, digits) -> None:
    result = compress(
        load_checkpoint(digits_checkpoint),
        digits["train"],
        digits["val"],
        0.0,
        config=SearchConfig(strategy="all", epochs=0.2, precisions=(1,)),
    )
    assert result.binarized == result.candidates == ["layers.conv2", "layers.conv3", "layers.conv4"]


def test_by_default_recover_and_all_search_the_recommended_precisions(digits_checkpoint: Path, digits) -> None:
    # no precisions asked: all and recover take 1, 2, 4 and 8 bits (the first and last layers at 8), adaptive 1 bit
    inner, edges = ["layers.conv2", "layers.conv3", "layers.conv4"], ["layers.conv1", "layers.conv5"]
    result = compress(
        load_checkpoint(digits_checkpoint),
        digits["train"],
        digits["val"],
        100.0,
        config=SearchConfig(strategy="all", epochs=0.2),
    )
    assert result.config["precisions"] == list(RECOMMENDED_PRECISIONS) == [1, 2, 4, 8]
    assert result.precisions == {**dict.fromkeys(edges, 8), **dict.fromkeys(inner, 1)} and result.binarized == inner
    assert default_precisions("recover") == RECOMMENDED_PRECISIONS and default_precisions("adaptive") == (1,)
    assert SearchConfig().precisions is None  # resolved by the strategy when the run starts


def test_oracle_measures_every_candidate(digits_checkpoint: Path, digits) -> None:
    result = compress(
        load_checkpoint(digits_checkpoint),
        digits["train"],
        digits["val"],
        0.5,
        config=SearchConfig(strategy="oracle", **FAST),
    )
    probes = [step for step in result.trajectory if step.action == "probe"]
    assert [step.layers for step in probes] == [[name] for name in result.candidates]
    assert [step.binarized for step in probes] == [[name] for name in result.candidates]  # each measured alone
    decisions = {d.name: d for d in result.decisions}
    assert all(decisions[step.layers[0]].measured_alone_points == step.drop_points for step in probes)
    assert all(d.measured_increment_points is None for d in result.decisions)
    assert result.val_drop <= 0.5 + 1e-9


def test_plain_tensors_and_a_generic_module(digits) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Flatten(),
        torch.nn.Linear(64, 32),
        torch.nn.ReLU(),
        torch.nn.Linear(32, 32),
        torch.nn.ReLU(),
        torch.nn.Linear(32, 10),
    )
    train = (digits["train"].as_float(), digits["train"].labels)
    val = (digits["val"].as_float(), digits["val"].labels)
    config = SearchConfig(strategy="all", epochs=0.2, estimator="output")
    with pytest.raises(CompressionError, match=r"model is a Sequential, not a SpikingNet.*pass needs_packing=False"):
        compress(model, train, val, 100.0, config=config)
    result = compress(model, train, val, 100.0, config=config, needs_packing=False)
    assert result.binarized == ["3"]


def test_bad_inputs(digits_checkpoint: Path, digits) -> None:
    model = load_checkpoint(digits_checkpoint)
    with pytest.raises(BudgetError, match="must be a finite number >= 0"):
        compress(model, digits["train"], digits["val"], -0.1)
    with pytest.raises(BudgetError, match="is not a number"):
        compress(model, digits["train"], digits["val"], "a lot")
    tiny = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    with pytest.raises(CompressionError, match="no candidate layers"):  # its only layer is first and last: 8 bits
        compress(tiny, digits["train"], digits["val"], 0.2, config=SearchConfig(precisions=(1,)), needs_packing=False)
    with pytest.raises(CompressionError, match="exclude: 'conv9' is not a binarizable layer; choose from conv1, conv2"):
        compress(model, digits["train"], digits["val"], 0.2, config=SearchConfig(exclude=["conv9"]))
    with pytest.raises(CompressionError, match="unknown strategy"):
        compress(model, digits["train"], digits["val"], 0.2, config=SearchConfig(strategy="random"))
    with pytest.raises(CompressionError, match="unknown estimator 'magic'"):
        compress(model, digits["train"], digits["val"], 0.2, config=SearchConfig(estimator="magic"))
    with pytest.raises(CompressionError, match="val_data: found str; pass an ImageSet"):
        compress(model, digits["train"], "val.npz", 0.2)


class _NegativeEstimator:
    """Every layer 'helps' (a Taylor estimate can be negative): calibration never gets a positive sample."""

    name = "negative"

    def estimate(self, model, candidates, probe):
        return {name: -1.0 for name in candidates}


def test_adaptive_survives_estimates_that_never_calibrate(digits_checkpoint: Path, digits) -> None:
    config = SearchConfig(strategy="adaptive", estimator=_NegativeEstimator(), **FAST)
    result = compress(load_checkpoint(digits_checkpoint), digits["train"], digits["val"], 50.0, config=config)
    assert result.binarized == result.candidates  # a 50-point budget affords everything
    assert result.estimator == result.config["estimator"] == "negative"
    assert all("tried first (no calibration yet)" in d.reason for d in result.decisions)


def test_budget_holds_even_when_finetuning_itself_hurts(digits_checkpoint: Path, digits) -> None:
    # a learning rate of 1.0 wrecks every finetuning slice: the only model within budget 0 is the input
    model = load_checkpoint(digits_checkpoint)
    result = compress(model, digits["train"], digits["val"], 0.0, config=SearchConfig(lr=1.0, **FAST))
    assert result.binarized == []
    assert result.trajectory[-1].action == "restore-input"
    assert evaluate(result.model, digits["val"]) == result.accuracy["val_before"] == result.accuracy["val_after"]
    for (name, a), (_, b) in zip(result.model.state_dict().items(), model.state_dict().items()):
        assert torch.equal(a, b), name


def test_restoring_the_input_keeps_the_layers_it_had_binarized(digits_checkpoint: Path, digits) -> None:
    # the input arrives with conv3 binarized; lr 1.0 wrecks every slice, so the back-off returns conv3 to
    # float, is still over budget, and the search falls back to the input model: conv3 binarized again
    model = load_checkpoint(digits_checkpoint)
    binarize_(model, ["layers.conv3"])
    result = compress(model, digits["train"], digits["val"], 0.0, config=SearchConfig("adaptive", lr=1.0, **FAST))
    assert [step.action for step in result.trajectory][-2:] == ["backoff", "restore-input"]
    assert result.binarized == binarized_layers(model) == ["layers.conv3"]
    assert [d.name for d in result.decisions if d.binarized] == ["layers.conv3"]
    for (name, a), (_, b) in zip(result.model.state_dict().items(), model.state_dict().items()):
        assert torch.equal(a, b), name


def test_recover_over_a_wrecking_run_returns_the_input_with_the_layers_it_had_binarized(
    digits_checkpoint: Path, digits
) -> None:
    # lr 1.0 wrecks the run and the float control alike: finetuning itself costs the budget, so the input returns
    model = load_checkpoint(digits_checkpoint)
    binarize_(model, ["layers.conv3"])
    result = compress(model, digits["train"], digits["val"], 0.0, config=SearchConfig("recover", lr=1.0, **FAST))
    assert [step.action for step in result.trajectory][-2:] == ["finetuned", "restore-input"]
    assert result.control is not None and result.control.points > 0
    assert result.binarized == ["layers.conv3"] and result.finetune_epochs == pytest.approx(1.0, abs=0.1)
    assert [d.name for d in result.decisions if d.binarized] == ["layers.conv3"]
    for (name, a), (_, b) in zip(result.model.state_dict().items(), model.state_dict().items()):
        assert torch.equal(a, b), name


def test_a_binarized_layer_that_is_no_candidate_is_never_touched(digits_checkpoint: Path, digits) -> None:
    # conv1 (the first layer: no candidate) and conv3 arrive binarized; the back-off returns conv3 only,
    # and unbinarizing the search's copy leaves the caller's model running
    model = load_checkpoint(digits_checkpoint)
    binarize_(model, ["layers.conv1", "layers.conv3"])
    result = compress(model, digits["train"], digits["val"], 0.0, config=SearchConfig("adaptive", lr=1.0, **FAST))
    assert [step.action for step in result.trajectory][-1] == "backoff"
    assert result.binarized == ["layers.conv1"]
    assert binarized_layers(model) == ["layers.conv1", "layers.conv3"]
    with torch.no_grad():
        model(digits["val"].as_float()[:8])


def test_the_callers_model_and_random_state_are_left_as_they_were(digits_checkpoint: Path, digits) -> None:
    model = load_checkpoint(digits_checkpoint).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(1234)
    rng = torch.get_rng_state()
    config = SearchConfig(distill=False, **FAST)
    compress(model, digits["train"], digits["val"], 1.0, test_data=digits["test"], config=config)
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(module.training for module in model.modules())
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_short_layer_names_a_data_loader_and_progress_events(digits_checkpoint: Path, digits) -> None:
    train = DataLoader(TensorDataset(digits["train"].as_float(), digits["train"].labels), batch_size=100, shuffle=True)
    events: list[ProgressEvent] = []
    config = SearchConfig("adaptive", layers=["conv3", "layers.conv4"], exclude=["conv4"], **FAST)
    result = compress(
        load_checkpoint(digits_checkpoint), train, digits["val"], 1.0, config=config, on_progress=events.append
    )
    assert result.candidates == ["layers.conv3"]
    assert result.config["layers"] == ["conv3", "layers.conv4"] and result.config["strategy"] == "adaptive"
    search = [event for event in events if event.phase == "search"]
    assert [event.completed for event in search[:-1]] == list(range(1, len(result.trajectory) + 1))
    assert search[-1].finished and sum(event.finished for event in search) == 1
    assert {event.description for event in events if event.phase == "slice"} >= {"try conv3"}


def test_a_data_loader_gives_the_result_its_tensors_give(digits_checkpoint: Path, digits) -> None:
    images, labels = digits["train"].as_float(), digits["train"].labels
    loader = DataLoader(TensorDataset(images, labels), batch_size=64)
    runs = [
        compress(load_checkpoint(digits_checkpoint), data, digits["val"], 1.0, config=SearchConfig(**FAST))
        for data in (loader, (images, labels))
    ]
    assert runs[0].binarized == runs[1].binarized and runs[0].accuracy == runs[1].accuracy


def test_with_a_confidence_the_final_upper_bound_is_within_the_budget(digits_checkpoint: Path, digits) -> None:
    config = SearchConfig(**FAST, confidence=0.8)
    result = compress(
        load_checkpoint(digits_checkpoint), digits["train"], digits["val"], 3.0, test_data=digits["test"], config=config
    )
    val = result.paired["val"]
    assert val.upper_bound(0.8) <= 3.0
    assert val.images == len(digits["val"]) and val.points == pytest.approx(result.val_drop)
    test = result.paired["test"]
    assert test.points == pytest.approx(result.accuracy["test_before"] - result.accuracy["test_after"])
    assert result.config["confidence"] == 0.8
    for step in result.trajectory:  # every step's drop is counted image by image
        assert step.paired is not None and step.paired.points == pytest.approx(step.drop_points)


def test_a_confidence_is_a_probability_above_one_half() -> None:
    with pytest.raises(BudgetError, match="SearchConfig.confidence must be a probability between 0.5 and 1"):
        SearchConfig(confidence=90)


def test_channels_last_reaches_every_finetuning_slice(digits_checkpoint: Path, digits, monkeypatch) -> None:
    layouts: list[bool] = []

    class RecordingTrainer(session_module.Trainer):
        def __init__(self, model, train_set, config, *args, **kwargs) -> None:
            layouts.append(config.channels_last)
            super().__init__(model, train_set, config, *args, **kwargs)

    monkeypatch.setattr(session_module, "Trainer", RecordingTrainer)
    config = SearchConfig(strategy="all", channels_last=True, precisions=(1,), **FAST)
    result = compress(load_checkpoint(digits_checkpoint), digits["train"], digits["val"], 100.0, config=config)
    assert layouts and all(layouts)
    assert result.config["channels_last"] is True and result.binarized == result.candidates
    for module in result.model.modules():
        if isinstance(module, torch.nn.Conv2d):
            assert module.weight.is_contiguous()  # the Trainer put the standard layout back after each slice
