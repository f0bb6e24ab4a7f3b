"""record_outputs: the one place that hooks neurons (C trace, NIR check, interop checks, estimators)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from albsnn_compress.snn.neurons import LIF
from albsnn_compress.snn.recording import lif_modules, output_only, record_outputs, recorded_outputs
from albsnn_compress.snn.spec import SpikingNet


class _Counter(nn.Module):
    """Adds one; counts its calls."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return x + 1


def test_each_module_gets_its_calls_in_order_and_the_hooks_go_away() -> None:
    first, second = _Counter(), _Counter()
    chain = nn.Sequential(first, second)
    with record_outputs([second, first]) as outputs:
        chain(torch.zeros(1))
        chain(torch.ones(1))
    assert [t.tolist() for t in outputs[0]] == [[2.0], [3.0]]  # second, both calls
    assert [t.tolist() for t in outputs[1]] == [[1.0], [2.0]]  # first
    assert not first._forward_hooks and not second._forward_hooks
    chain(torch.zeros(1))
    assert len(outputs[0]) == 2


def test_hooks_are_removed_when_the_block_raises() -> None:
    module = _Counter()
    with pytest.raises(RuntimeError, match="inside"), record_outputs([module]):
        raise RuntimeError("inside the block")
    assert not module._forward_hooks


def test_stop_after_cuts_the_forward_pass_short() -> None:
    first, second, third = _Counter(), _Counter(), _Counter()
    chain = nn.Sequential(first, second, third)
    recorded = recorded_outputs(chain, torch.zeros(1), [first, second], stop_after={second: 1})
    assert [t.item() for t in recorded[second]] == [2.0]
    assert third.calls == 0  # never reached
    assert not second._forward_hooks


def test_a_tuple_output_keeps_the_spikes_and_keep_sees_the_inputs() -> None:
    assert output_only(nn.Identity(), (), ("spikes", "membrane")) == "spikes"
    module = _Counter()
    with record_outputs([module], keep=lambda _m, inputs, output: (inputs[0].item(), output.item())) as outputs:
        module(torch.tensor(4.0))
    assert outputs == [[(4.0, 5.0)]]


def test_lif_modules_are_the_neurons_in_layer_order() -> None:
    spec = {
        "name": "tiny",
        "input": {"shape": [1, 4, 4], "mean": [0.0], "std": [1.0]},
        "num_classes": 2,
        "layers": [
            {"type": "conv", "out_channels": 2, "kernel_size": 3, "padding": 1},
            {"type": "lif"},
            {"type": "conv", "out_channels": 2, "kernel_size": 3, "padding": 1},
            {"type": "lif"},
            {"type": "gap"},
        ],
    }
    model = SpikingNet(spec, timesteps=2)
    neurons = lif_modules(model)
    assert len(neurons) == 2 and all(isinstance(n, LIF) for n in neurons)
    with record_outputs(neurons) as outputs, torch.no_grad():
        model(torch.rand(3, 1, 4, 4))
    assert [tuple(calls[0].shape) for calls in outputs] == [(2, 3, 2, 4, 4)] * 2
    assert all(set(calls[0].unique().tolist()) <= {0.0, 1.0} for calls in outputs)
