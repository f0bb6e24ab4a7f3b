"""Candidate layers: full or short names, first and last left out, exclusions, clear refusals."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from albsnn_compress.errors import CompressionError
from albsnn_compress.search.candidates import resolve_candidates, resolve_layer_names


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 4), nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4)), nn.Linear(4, 2))


def test_short_names_resolve_to_the_one_layer_they_name() -> None:
    available = ["a.conv", "b.conv", "b.fc"]
    assert resolve_layer_names(["fc", "a.conv"], available, "layers") == ["b.fc", "a.conv"]
    with pytest.raises(
        CompressionError, match=r"layers: 'conv' names several layers \['a.conv', 'b.conv'\]; write the full name"
    ):
        resolve_layer_names(["conv"], available, "layers")
    with pytest.raises(
        CompressionError, match="exclude: 'x' is not a binarizable layer; choose from a.conv, b.conv, b.fc"
    ):
        resolve_layer_names(["x"], available, "exclude")


def test_candidates_leave_out_the_first_and_last_unless_asked() -> None:
    model = _model()
    assert resolve_candidates(model, None, [], False) == ["1.0", "1.1"]
    assert resolve_candidates(model, None, ["1.1"], True) == ["0", "1.0", "2"]
    assert resolve_candidates(model, ["2", "0"], [], False) == ["0", "2"]  # model order, whatever the order given
    with pytest.raises(CompressionError, match="no candidate layers to binarize"):
        resolve_candidates(model, ["1.0"], ["1.0"], False)
