"""The command line: help, version, and one-line errors with exit status 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from albsnn_compress import load_checkpoint
from albsnn_compress.data import load_splits
from albsnn_compress.training.trainer import evaluate
from albsnn_compress.versions import __version__
from tests.clihelp import run_cli


def test_help_lists_every_command() -> None:
    out = run_cli(["--help"]).stdout
    for command in ("compress", "train"):
        assert command in out


def test_version() -> None:
    assert __version__ in run_cli(["--version"]).stdout


def test_train_writes_a_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "m.pt"
    result = run_cli(["train", "--epochs", "1", "--quiet", "-o", str(out)])
    assert out.is_file() and "val" in result.stdout


def test_train_in_channels_last_writes_a_standard_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "m.pt"
    run_cli(["train", "--epochs", "15", "--channels-last", "--quiet", "-o", str(out)])
    model = load_checkpoint(out)
    conv = next(module for module in model.modules() if isinstance(module, torch.nn.Conv2d))
    assert conv.weight.is_contiguous()  # the Trainer put the standard layout back before saving
    assert (
        evaluate(model, load_splits("digits", None)["val"]) > 80.0
    )  # it learned as the default does (96 %); chance is 10 %


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--dataset", "mnist", "-o", "x.pt"], "Invalid value for '--dataset'"),
        (["train", "--epochs", "-1", "-o", "x.pt"], "Invalid value for '--epochs'"),
        (["train", "--bogus"], "No such option"),
        (
            ["train", "--dataset", "fashion-mnist", "--data-root", "/nonexistent", "-o", "x.pt", "--quiet"],
            "data root /nonexistent is not a folder",
        ),
        (["train", "--arch", "nope", "-o", "x.pt", "--quiet"], "neither a preset"),
        (["compress", "missing.pt", "--budget", "0.2"], "does not exist"),
        (["missing.pt", "--budget", "0.2"], "does not exist"),
    ],
)
def test_errors_are_one_line_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    result = run_cli(args, expected_exit=2)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert message in lines[0]
    assert "Traceback" not in result.output


def test_compress_budget_errors(digits_checkpoint: Path) -> None:
    for bad, message in (("-0.1", "must be a finite number >= 0"), ("lots", "is not a number")):
        result = run_cli([str(digits_checkpoint), "--budget", bad], expected_exit=2)
        assert message in result.stderr


def test_compress_confidence_is_checked_and_reaches_the_report(digits_checkpoint: Path, tmp_path: Path) -> None:
    for bad in ("1.5", "0.5", "high"):
        result = run_cli([str(digits_checkpoint), "--budget", "1.0", "--confidence", bad], expected_exit=2)
        assert "--confidence" in result.stderr and "Traceback" not in result.output
    out = tmp_path / "out"
    run_cli(
        [
            str(digits_checkpoint),
            "--budget",
            "5",
            "--confidence",
            "0.8",
            "--epochs",
            "0.3",
            "--trial-epochs",
            "0.3",
            "--quiet",
            "-o",
            str(out),
        ]
    )
    report = json.loads((out / "report.json").read_text())
    paired = report["accuracy"]["paired"]["val"]
    assert report["search"]["config"]["confidence"] == 0.8 and paired["decision_confidence"] == 0.8
    assert paired["upper_bound_points"] <= 5.0
    assert paired["lost"] - paired["gained"] == round(report["accuracy"]["val_drop_points"] * paired["images"] / 100)


def test_compress_takes_short_layer_names_and_names_a_wrong_one(digits_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    fast = ["--epochs", "0.3", "--trial-epochs", "0.3", "--quiet", "-o", str(out)]
    run_cli([str(digits_checkpoint), "--budget", "1.0", "--layers", "conv3,conv4", "--exclude", "layers.conv4", *fast])
    report = json.loads((out / "report.json").read_text())
    assert report["search"]["candidates"] == ["layers.conv3"]
    assert report["schema_version"] == 3
    result = run_cli([str(digits_checkpoint), "--budget", "1.0", "--layers", "conv9", *fast], expected_exit=2)
    assert result.stderr.startswith("error: layers: 'conv9' is not a binarizable layer; choose from conv1, conv2")
    assert result.stderr.count("\n") == 1
