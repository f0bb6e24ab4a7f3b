"""The binarizer: scales, sign(0) = +1, the clipped straight-through gradient, idempotence."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from albsnn_compress.binarize import (
    binarize_,
    binarize_weight,
    binarized_layers,
    binary_scale,
    candidate_layers,
    is_binarized,
    ste_sign,
    unbinarize_,
)
from albsnn_compress.errors import CompressionError


def test_scale_is_per_output_channel_mean_abs() -> None:
    weight = torch.tensor([[[[1.0, -3.0]]], [[[0.5, 0.5]]]])  # [2, 1, 1, 2]
    assert binary_scale(weight).tolist() == [2.0, 0.5]
    assert binarize_weight(weight).view(2, 2).tolist() == [[2.0, -2.0], [0.5, 0.5]]


def test_sign_of_zero_is_plus_one() -> None:
    assert ste_sign(torch.tensor([0.0, -0.0, -1e-9, 1e-9])).tolist() == [1.0, 1.0, -1.0, 1.0]


def test_ste_gradient_is_masked_to_unit_interval() -> None:
    weight = torch.tensor([-2.0, -1.0, -0.3, 0.0, 0.7, 1.0, 1.5], requires_grad=True)
    ste_sign(weight).sum().backward()
    assert weight.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0]


def test_binarization_is_bit_exactly_idempotent() -> None:
    torch.manual_seed(0)
    for shape in [(64, 32, 3, 3), (10, 128), (7, 3, 5, 5)]:
        once = binarize_weight(torch.randn(shape))
        assert torch.equal(binarize_weight(once), once)


@pytest.mark.parametrize(
    "layer",
    [
        nn.Conv2d(4, 6, 3),
        nn.Conv2d(4, 8, 1, bias=False),
        nn.Conv2d(4, 8, 5, groups=4),
        nn.Linear(10, 3),
        nn.Linear(10, 3, bias=False),
    ],
)
def test_binarize_and_restore_any_layer(layer: nn.Module) -> None:
    model = nn.Sequential(nn.Identity(), layer)
    original = layer.weight.detach().clone()
    binarize_(model, ["1"])
    assert is_binarized(layer) and binarized_layers(model) == ["1"]
    values = layer.weight.detach()
    per_channel = values.flatten(1).abs()
    assert torch.equal(per_channel, per_channel[:, :1].expand_as(per_channel))  # one magnitude per channel
    assert torch.equal(values.sign() >= 0, original >= 0)
    unbinarize_(model, ["1"])
    assert not is_binarized(layer) and torch.equal(layer.weight, original)


def test_optimizer_keeps_tracking_the_latent_weight() -> None:
    layer = nn.Linear(4, 2)
    parameter = layer.weight
    binarize_(nn.Sequential(layer), ["0"])
    assert layer.parametrizations["weight"].original is parameter


def test_candidates_skip_first_and_last() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Conv2d(2, 2, 3), nn.Conv2d(2, 2, 3), nn.Linear(2, 2))
    assert candidate_layers(model) == ["1", "2"]
    assert candidate_layers(model, include_first_last=True) == ["0", "1", "2", "3"]


def test_bad_layer_names() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU())
    with pytest.raises(CompressionError, match="no layer named 'conv9'"):
        binarize_(model, ["conv9"])
    with pytest.raises(CompressionError, match="is a ReLU, which has no binarizable weight"):
        binarize_(model, ["1"])
