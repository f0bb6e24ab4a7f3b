"""The ``recover`` strategy and the float control on a real search session (digits).

The scripted tests (tests/test_strategy_recover.py) cover each branch on purpose;
these check the same steps on real tensors: the control leaves the working model
alone and counts its epochs, the back-off path keeps the budget, the result and
its report carry the control, and the same seed gives the same model.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import albsnn_compress.search.session as session_module
from albsnn_compress import load_checkpoint
from albsnn_compress.binarize import binarize_, binarized_layers, weight_parametrizations
from albsnn_compress.data import load_splits
from albsnn_compress.report.build import build_report
from albsnn_compress.report.html import render_html
from albsnn_compress.report.schema import validate_report
from albsnn_compress.report.text import render_text
from albsnn_compress.search import SearchConfig, compress
from albsnn_compress.search.session import SearchSession
from albsnn_compress.training.trainer import evaluate


@pytest.fixture(scope="module")
def digits():
    return load_splits("digits", None)


def test_the_control_finetunes_a_float_copy_and_leaves_the_working_model_alone(digits_checkpoint: Path, digits) -> None:
    session = SearchSession(load_checkpoint(digits_checkpoint), digits["train"], digits["val"], 0.5, SearchConfig())
    binarize_(session.model, ["layers.conv3"])
    before = {key: value.clone() for key, value in session.model.state_dict().items()}
    fits = session.control(0.2)
    assert binarized_layers(session.model) == ["layers.conv3"]
    assert all(torch.equal(value, before[key]) for key, value in session.model.state_dict().items())
    assert session.control_measurement is not None and session.control_measurement.images == len(digits["val"])
    assert fits == (session.control_measurement.points <= 0.5)
    assert session.current_drop == 0.0 and session.finetune_epochs == pytest.approx(0.2, abs=0.05)


def test_recover_backs_off_until_the_budget_holds_and_reports_the_control(digits_checkpoint: Path, digits) -> None:
    # no run to recover in: every binary layer costs what it costs, so the control runs and layers go back
    config = SearchConfig(strategy="recover", epochs=0.0, trial_epochs=0.05, seed=3, precisions=(1,))
    result = compress(load_checkpoint(digits_checkpoint), digits["train"], digits["val"], 0.0, config=config)
    assert result.accuracy["val_before"] - evaluate(result.model, digits["val"]) <= 1e-9
    actions = [step.action for step in result.trajectory]
    assert actions[:3] == ["start", "binarize", "finetuned"] and "backoff" in actions
    assert result.control is not None and result.control.points <= 0.0
    returned = [d for d in result.decisions if not d.binarized]
    assert returned and all(d.reason.startswith("did not recover: drop") for d in returned)
    report = build_report(result)
    validate_report(report)
    assert report["accuracy"]["paired"]["control"]["drop_points"] == result.control.points
    lines = render_text(report).splitlines()
    control_row = next(line for line in lines if line.startswith("validation, float control"))
    assert f"{result.control.lost} / {result.control.gained} of {result.control.images}" in control_row
    assert "validation, float control" in render_html(report, charts=False)


def test_recover_same_seed_same_model(digits_checkpoint: Path, digits) -> None:
    config = SearchConfig(strategy="recover", epochs=0.2, trial_epochs=0.05, binary_lr=1e-2, seed=5)
    runs = [
        compress(load_checkpoint(digits_checkpoint), digits["train"], digits["val"], 0.5, config=config)
        for _ in range(2)
    ]
    assert runs[0].binarized == runs[1].binarized
    for (name, a), (_, b) in zip(runs[0].model.state_dict().items(), runs[1].model.state_dict().items()):
        assert torch.equal(a, b), name


def test_binary_lr_reaches_the_latent_weights_of_binarized_layers_only(
    digits_checkpoint: Path, digits, monkeypatch: pytest.MonkeyPatch
) -> None:
    groups: list[list[tuple[float, float, list[int]]]] = []

    class Recording(session_module.Trainer):  # type: ignore[name-defined,misc]
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            groups.append(
                [(g["lr"], g["weight_decay"], [id(p) for p in g["params"]]) for g in self.optimizer.param_groups]
            )

    monkeypatch.setattr(session_module, "Trainer", Recording)
    config = SearchConfig(lr=1e-3, binary_lr=5e-2)
    session = SearchSession(load_checkpoint(digits_checkpoint), digits["train"], digits["val"], 0.5, config)
    binarize_(session.model, ["layers.conv3"])
    session.finetune(0.05, "one slice")
    (float_lr, _, float_params), (binary_lr, binary_decay, binary_params) = groups[0]
    latent = weight_parametrizations(session.model.get_submodule("layers.conv3")).original
    assert (float_lr, binary_lr, binary_decay) == (1e-3, 5e-2, 0.0) and binary_params == [id(latent)]
    assert id(latent) not in float_params
    assert len(float_params) + 1 == sum(1 for p in session.model.parameters() if p.requires_grad)


def test_a_layer_returned_with_its_values_computes_what_it_computed(digits_checkpoint: Path, digits) -> None:
    session = SearchSession(load_checkpoint(digits_checkpoint), digits["train"], digits["val"], 0.5, SearchConfig())
    binarize_(session.model, ["layers.conv3"])
    images = digits["val"].as_float()[:16]
    with torch.no_grad():
        before = session.model.eval()(images)
        binary_weight = session.model.get_submodule("layers.conv3").weight.clone()
    session.unbinarize(["layers.conv3"], keep_values=True)
    with torch.no_grad():
        after = session.model.eval()(images)
    assert binarized_layers(session.model) == []
    assert torch.equal(session.model.get_submodule("layers.conv3").weight, binary_weight)
    assert torch.equal(before, after)
