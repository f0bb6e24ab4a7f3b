"""The budget: refused when impossible, warned about when implausible, read as a plain decimal only."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from albsnn_compress import load_checkpoint
from albsnn_compress.data import load_splits
from albsnn_compress.errors import BudgetError
from albsnn_compress.search import SearchConfig, compress
from albsnn_compress.search.budget import BudgetWarning, budget_resolution, check_budget, implausible_budget


@pytest.mark.parametrize(
    ("text", "value"), [("0", 0.0), ("0.2", 0.2), ("1", 1.0), (".5", 0.5), ("10.", 10.0), ("100", 100.0)]
)
def test_plain_decimals_are_read(text: str, value: float) -> None:
    assert check_budget(text) == value


@pytest.mark.parametrize(
    ("budget", "message"),
    [
        ("150", r"budget '150' is more than 100 percentage points, all of top-1 accuracy"),
        ("100.0001", "is more than 100 percentage points"),
        ("9" * 400, r"budget '9{40}\.\.\.' is more than 100"),  # float() would read inf; the message stays short
        (150, "budget 150 is more than 100"),
        ("1_0", r"budget '1_0' is not a number in plain decimal form"),  # float("1_0") == 10.0
        ("1e-1", "not a number in plain decimal form"),
        ("nan", "not a number in plain decimal form"),
        ("inf", "not a number in plain decimal form"),
        ("+1", "not a number in plain decimal form"),
        (" 0.2", "not a number in plain decimal form"),
        ("\u0660.\u0662", "not a number in plain decimal form"),  # Arabic-Indic digits: float() reads 0.2
        ("0x10", "not a number in plain decimal form"),
        ("", "not a number in plain decimal form"),
        (".", "not a number in plain decimal form"),
        ("-0.1", r"budget '-0.1' must be a finite number >= 0"),
        (-0.1, "must be a finite number >= 0"),
        (float("nan"), "must be a finite number >= 0"),
        (float("inf"), "must be a finite number >= 0"),
        (True, "is not a number"),
        (b"0.2", "is not a number"),
        (None, "is not a number"),
    ],
)
def test_impossible_budgets_are_refused(budget: object, message: str) -> None:
    with pytest.raises(BudgetError, match=message) as caught:
        check_budget(budget)
    assert "\n" not in str(caught.value)


def test_numbers_of_other_libraries_are_read() -> None:
    assert check_budget(np.float32(0.5)) == 0.5
    assert check_budget(torch.tensor(0.25)) == 0.25


def test_a_budget_below_one_validation_image_is_implausible() -> None:
    assert budget_resolution(360) == pytest.approx(100 / 360)
    message = implausible_budget(0.002, 360)
    assert message is not None and "one image of 360 is 0.278 points" in message and "not a fraction" in message
    assert implausible_budget(0.0, 360) is None  # "lose nothing" is a real request
    assert implausible_budget(0.3, 360) is None
    assert implausible_budget(0.2, 144) == (
        "budget 0.2 points is below what the validation split resolves (one image of 144 "
        "is 0.694 points), so it allows no image to be lost, like --budget 0"
    )
    assert implausible_budget(0.002, 50_000) is None  # a 50,000-image split resolves 0.002 points


def test_compress_warns_once_the_split_is_known(digits_checkpoint: Path) -> None:
    digits = load_splits("digits", None)
    model = load_checkpoint(digits_checkpoint)
    config = SearchConfig(strategy="none", epochs=0, trial_epochs=0)
    with pytest.warns(
        BudgetWarning,
        match=rf"budget 0.002 points is below what the validation split resolves "
        rf"\(one image of {len(digits['val'])} is",
    ):
        compress(model, digits["train"], digits["val"], 0.002, config=config)
    with pytest.warns(
        BudgetWarning, match=rf"budget 1 points is below what {len(digits['val'])} validation images can confirm"
    ):
        compress(model, digits["train"], digits["val"], 1.0, config=config)
    with warnings.catch_warnings():
        warnings.simplefilter("error", BudgetWarning)
        compress(
            model, digits["train"], digits["val"], 5.0, config=config
        )  # above the 90 % bound's margin (1.99 points)
