"""A copy of a model with binarized layers can be unbinarized without touching the original."""

from __future__ import annotations

import copy

import torch
from torch import nn

from albsnn_compress.binarize import binarize_, binarized_layers, unbinarize_
from albsnn_compress.search.model_copy import copy_model


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    return binarize_(model, ["1"])


def test_plain_deepcopy_shares_the_parametrized_class() -> None:
    # the torch behaviour copy_model exists for: unbinarizing a deepcopy breaks the original
    model = _model()
    unbinarize_(copy.deepcopy(model), ["1"])
    try:
        model(torch.ones(1, 3))
    except AttributeError:
        return
    raise AssertionError("torch no longer shares the class: copy_model may be plain deepcopy")


def test_unbinarizing_the_copy_leaves_the_original_working() -> None:
    model = _model()
    expected = model(torch.ones(1, 3))
    duplicate = copy_model(model)
    assert torch.equal(duplicate(torch.ones(1, 3)), expected)
    unbinarize_(duplicate, ["1"])
    assert binarized_layers(model) == ["1"] and binarized_layers(duplicate) == []
    assert torch.equal(model(torch.ones(1, 3)), expected)
    binarize_(duplicate, ["0"])
    unbinarize_(model, ["1"])
    assert binarized_layers(duplicate) == ["0"]
    duplicate(torch.ones(1, 3))
