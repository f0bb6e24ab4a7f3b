"""The paired drop and its exact interval, on constructed cases whose answer is known exactly."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from albsnn_compress.search.paired_drop import (
    PairedDrop,
    binomial_lower_bound,
    binomial_upper_bound,
    check_confidence,
    images_to_resolve,
    paired_drop,
    resolvable_points,
    unresolvable_budget,
    val_share_to_resolve,
)


def test_lost_and_gained_are_counted_image_by_image() -> None:
    before = torch.tensor([1, 1, 1, 0, 0, 1], dtype=torch.bool)
    after = torch.tensor([1, 0, 0, 1, 0, 1], dtype=torch.bool)
    drop = paired_drop(before, after)
    assert (drop.images, drop.lost, drop.gained, drop.changed) == (6, 2, 1, 3)
    assert drop.points == pytest.approx(100 / 6)
    assert drop.resolution_points == pytest.approx(100 / 6)


def test_vectors_of_different_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="equal, non-empty"):
        paired_drop(torch.ones(3, dtype=torch.bool), torch.ones(4, dtype=torch.bool))


def test_no_changed_image_gives_the_point_interval() -> None:
    drop = PairedDrop(images=6000, lost=0, gained=0)
    assert drop.points == 0.0 and drop.interval(0.95) == (0.0, 0.0) and drop.upper_bound(0.9) == 0.0


def test_every_changed_image_lost_bounds_the_drop_by_all_of_them() -> None:
    # lost = d: the share's upper bound is 1, so the drop's is every changed image
    drop = PairedDrop(images=1000, lost=7, gained=0)
    assert drop.upper_bound(0.9) == pytest.approx(0.7)


def test_zero_successes_have_the_closed_form_bound() -> None:
    # P(X = 0) = (1 - p)^n = 1 - C  =>  p = 1 - (1 - C)^(1/n)
    for trials in (1, 5, 40):
        assert binomial_upper_bound(0, trials, 0.9) == pytest.approx(1 - 0.1 ** (1 / trials), abs=1e-12)


@pytest.mark.parametrize(
    "successes,trials",
    [
        (0, 10),
        (3, 10),
        (12, 169),
        (80, 169),
        (150, 151),
        (1000, 2500),
        (20_000, 50_000),
        (3, 10**6),
        (10**6 - 4, 10**6),
    ],
)
@pytest.mark.parametrize("confidence", [0.8, 0.9, 0.975])
def test_bounds_match_the_beta_quantiles_of_clopper_pearson(successes: int, trials: int, confidence: float) -> None:
    upper = stats.beta.ppf(confidence, successes + 1, trials - successes)
    lower = stats.beta.ppf(1 - confidence, successes, trials - successes + 1) if successes > 0 else 0.0
    assert binomial_upper_bound(successes, trials, confidence) == pytest.approx(upper, abs=1e-9)
    assert binomial_lower_bound(successes, trials, confidence) == pytest.approx(lower, abs=1e-9)


def test_the_drop_interval_maps_the_share_interval() -> None:
    # 80 lost, 89 gained of 6000 (one epoch of finetuning, issue 16): drop -0.15 points
    drop = PairedDrop(images=6000, lost=80, gained=89)
    low, high = drop.interval(0.95)
    share_low = stats.beta.ppf(0.025, 80, 90)
    share_high = stats.beta.ppf(0.975, 81, 89)
    assert low == pytest.approx(100 * 169 * (2 * share_low - 1) / 6000, abs=1e-7)
    assert high == pytest.approx(100 * 169 * (2 * share_high - 1) / 6000, abs=1e-7)
    assert low < drop.points < high
    # about two standard errors either side: SE = 100 sqrt(169) / 6000 = 0.217 points
    assert high - low == pytest.approx(2 * 1.96 * 100 * math.sqrt(169) / 6000, rel=0.05)


def test_the_judged_drop_is_the_point_or_the_bound() -> None:
    drop = PairedDrop(images=6000, lost=50, gained=40)
    assert drop.judged(None) == drop.points
    assert drop.judged(0.9) == drop.upper_bound(0.9) > drop.points


@pytest.mark.slow
def test_the_bound_covers_at_least_its_confidence_by_simulation() -> None:
    # 2000 draws of 100 changed images with a true share of 0.55: the 90 % upper bound covers >= 90 %
    generator = torch.Generator().manual_seed(0)
    lost = torch.binomial(torch.full((2000,), 100.0), torch.full((2000,), 0.55), generator=generator).long()
    true_drop = 100 * 100 * (2 * 0.55 - 1) / 5000
    covered = sum(PairedDrop(5000, int(k), 100 - int(k)).upper_bound(0.9) >= true_drop for k in lost)
    assert covered / 2000 >= 0.9


@pytest.mark.parametrize("bad", [0.5, 1.0, 90, -0.1, True, "0.9"])
def test_confidence_must_be_a_probability_above_one_half(bad: object) -> None:
    with pytest.raises(ValueError, match="between 0.5 and 1"):
        check_confidence(bad)


def test_a_budget_below_the_split_resolution_is_named() -> None:
    margin = resolvable_points(6000, 0.9)
    assert 0.2 < margin < 0.4  # about 1.28 standard errors of 168 changed images
    assert unresolvable_budget(0.2, 6000, 0.9) is not None
    assert "--confidence" in unresolvable_budget(0.2, 6000, None)
    assert unresolvable_budget(1.0, 6000, 0.9) is None
    assert unresolvable_budget(0.2, 600_000, 0.9) is None  # a hundred times the images resolve it
    assert unresolvable_budget(0.0, 6000, 0.9) is None


@pytest.mark.parametrize(("budget", "confidence"), [(0.2, 0.9), (1.0, 0.9), (0.5, 0.95)])
def test_images_to_resolve_is_where_the_margin_first_fits_the_budget(budget: float, confidence: float) -> None:
    images = images_to_resolve(budget, confidence)
    assert resolvable_points(images, confidence) <= budget
    assert resolvable_points(images - 1, confidence) > budget or resolvable_points(images // 2, confidence) > budget
    assert images_to_resolve(budget / 2, confidence) > 3 * images  # a margin shrinks as one over the square root


def test_the_budget_warning_names_the_images_that_would_confirm_it() -> None:
    line = unresolvable_budget(0.2, 6000, None)
    assert line is not None and f"about {images_to_resolve(0.2, 0.9):,} validation images" in line


def test_the_chosen_val_share_is_the_smallest_whole_percent_holding_the_images() -> None:
    share = val_share_to_resolve(0.2, 60_000)
    assert share is not None and 0.1 < share <= 0.5
    needed = images_to_resolve(0.2, 0.9)
    assert share * 60_000 >= needed > (share - 0.01) * 60_000
    assert val_share_to_resolve(0.2, 60_000, confidence=0.95) > share  # a stricter level needs more images
    assert val_share_to_resolve(0.05, 60_000) is None  # more than half the images: the tool does not choose it
    assert val_share_to_resolve(0.0, 60_000) is None


def test_the_budget_warning_names_the_val_share_to_train_with() -> None:
    line = unresolvable_budget(0.2, 6000, None, 60_000)
    assert line is not None and f"train with --val-share {val_share_to_resolve(0.2, 60_000):g}" in line
    assert "--val-share" not in (unresolvable_budget(0.05, 6000, None, 60_000) or "")  # no share would do
