"""The search session on a real digits model: the protocol it implements, exact restores, the estimator hook."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from albsnn_compress import load_checkpoint
from albsnn_compress.binarize import binarize_, binarized_layers
from albsnn_compress.data import load_splits
from albsnn_compress.search.config import SearchConfig
from albsnn_compress.search.estimators import WeightEstimator
from albsnn_compress.search.protocol import StrategySession
from albsnn_compress.search.session import SearchSession
from tests.protocol_check import assert_implements


@pytest.fixture(scope="module")
def digits():
    return load_splits("digits", None)


class _CountingEstimator(WeightEstimator):
    """The weight estimator, counting the backward passes it was shown."""

    name = "counting"

    def __init__(self) -> None:
        self.backward_passes = 0

    def after_backward(self, model: torch.nn.Module, candidates: list[str]) -> None:
        self.backward_passes += 1


def _session(checkpoint: Path, digits, **settings: object) -> tuple[torch.nn.Module, SearchSession]:
    model = load_checkpoint(checkpoint)
    return model, SearchSession(model, digits["train"], digits["val"], 0.5, SearchConfig(**settings))


def test_the_session_implements_the_protocol(digits_checkpoint: Path, digits) -> None:
    _, session = _session(digits_checkpoint, digits)
    assert_implements(session, StrategySession)
    assert session.candidates == ["layers.conv2", "layers.conv3", "layers.conv4"]


def test_restore_gives_back_the_snapshot_exactly(digits_checkpoint: Path, digits) -> None:
    model, session = _session(digits_checkpoint, digits, layers=["conv2", "conv3"])
    session.binarize(["layers.conv2"])
    snapshot, state = session.snapshot(), {k: v.clone() for k, v in session.model.state_dict().items()}
    session.unbinarize(["layers.conv2"])
    session.binarize(["layers.conv3"])
    session.finetune(0.1, "change it")
    session.restore(snapshot, 0.25)
    assert session.binarized() == ["layers.conv2"] and session.current_drop == 0.25
    for key, value in session.model.state_dict().items():
        assert torch.equal(value, state[key]), key
    session.restore_input()
    assert session.binarized() == [] and session.current_drop == 0.0
    assert binarized_layers(model) == []  # the caller's model was never touched


def test_restoring_the_input_brings_back_its_binarized_layers(digits_checkpoint: Path, digits) -> None:
    model = binarize_(load_checkpoint(digits_checkpoint), ["layers.conv1", "layers.conv3"])
    session = SearchSession(model, digits["train"], digits["val"], 0.5, SearchConfig())
    assert session.binarized() == ["layers.conv3"]  # conv1 is binarized too, but no candidate
    session.unbinarize(["layers.conv3"])
    session.binarize(["layers.conv2"])
    session.restore_input()
    assert binarized_layers(session.model) == ["layers.conv1", "layers.conv3"]


def test_finetuning_calls_the_estimators_hook_after_every_backward_pass(digits_checkpoint: Path, digits) -> None:
    estimator = _CountingEstimator()
    _, session = _session(digits_checkpoint, digits, estimator=estimator)
    assert session.estimator is not estimator  # each run gets its own copy
    session.finetune(0.5, "slice")
    steps_per_epoch = len(digits["train"]) // SearchConfig.batch_size
    assert session.estimator.backward_passes == math.ceil(0.5 * steps_per_epoch) > 0
    assert estimator.backward_passes == 0


def test_records_store_raw_estimates_and_their_points(digits_checkpoint: Path, digits) -> None:
    _, session = _session(digits_checkpoint, digits)
    step = session.record("probe", ["layers.conv2"], {"layers.conv2": 0.5})
    assert step.estimates_raw == {"layers.conv2": 0.5} and step.estimates_points == {"layers.conv2": None}
    session.calibration.observe(1.0, 0.4)
    step = session.record("probe", ["layers.conv2"], {"layers.conv2": 0.5})
    assert step.estimates_points == pytest.approx({"layers.conv2": 0.2})
    session.decide("layers.conv2", False, "test", raw=0.5, increment=0.3)
    decision = session.final_decisions()[0]
    assert (decision.estimate_raw, decision.estimate_points, decision.measured_increment_points) == pytest.approx(
        (0.5, 0.2, 0.3)
    )
    assert [d.reason for d in session.final_decisions()[1:]] == ["not considered", "not considered"]
