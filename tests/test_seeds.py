"""A seed is an integer from 0 to 2^32 - 1 wherever it enters; past it torch would overflow mid-run."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from albsnn_compress.errors import AlbsnnError, SeedError
from albsnn_compress.search import SearchConfig
from albsnn_compress.seeds import MAX_DERIVED_SEED, MAX_SEED, check_seed
from albsnn_compress.training.trainer import TrainConfig


@pytest.mark.parametrize(
    ("seed", "message"),
    [
        (2**64, r"SearchConfig.seed: 18446744073709551616 is outside 0..4294967295; pass a seed from 0 to 4294967295"),
        (2**32, "is outside 0..4294967295"),
        (-1, "-1 is outside 0..4294967295"),
        pytest.param(
            10**5000, r"an integer of 16610 bits is outside", id="5000-digits"
        ),  # str() of it raises ValueError
        (True, "True is not an integer seed"),
        (1.5, "1.5 is not an integer seed"),
        ("3", "'3' is not an integer seed"),
    ],
)
def test_search_config_refuses_a_seed_outside_its_range(seed: object, message: str) -> None:
    with pytest.raises(SeedError, match=message):
        SearchConfig(seed=seed)


def test_train_config_refuses_what_torch_would_overflow_on() -> None:
    with pytest.raises(SeedError, match=r"TrainConfig.seed: 18446744073709551616 is outside 0..1099511627775"):
        TrainConfig(seed=2**64)
    with pytest.raises(ValueError, match="Overflow"):  # what it guards against
        torch.manual_seed(2**64)
    assert (
        TrainConfig(seed=MAX_SEED + 1000).seed == MAX_SEED + 1000
    )  # a search derives seed + slice from the largest seed


def test_a_changed_config_is_checked_too() -> None:
    config = SearchConfig()
    with pytest.raises(SeedError, match="SearchConfig.seed"):
        config.seed = 2**63
    with pytest.raises(SeedError, match="SearchConfig.seed"):
        dataclasses.replace(config, seed=-5)
    train = TrainConfig()
    with pytest.raises(SeedError, match="TrainConfig.seed"):
        train.seed = MAX_DERIVED_SEED + 1
    assert isinstance(SeedError("x"), AlbsnnError) and isinstance(SeedError("x"), ValueError)


def test_integers_of_other_libraries_are_read_as_int() -> None:
    assert check_seed(np.int64(7)) == 7 and type(check_seed(np.int64(7))) is int
    assert SearchConfig(seed=MAX_SEED).seed == MAX_SEED
