"""from_spikingjelly: every mapping against SpikingJelly itself on real images (T = 1 and 4), and every refusal."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from torch import nn

from albsnn_compress.errors import InteropError
from albsnn_compress.interop import from_spikingjelly
from albsnn_compress.snn.recording import record_outputs
from tests.interop_check import (
    SHAPE,
    assert_imports_exactly,
    digit_images,
    lively_source,
    one_thread,
)

pytest.importorskip(
    "spikingjelly", reason="spikingjelly is not installed (pip install --no-deps spikingjelly loguru tqdm)"
)
from spikingjelly.activation_based import functional, layer, neuron, surrogate  # noqa: E402


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return digit_images()


@pytest.fixture(autouse=True)
def single_thread() -> Iterator[None]:
    with one_thread():
        yield


Node = Callable[[], nn.Module]


def sj_net(first: Node, second: Node, third: Node, last: Node | None = None, mode: str = "m") -> nn.Sequential:
    """layer.* conv-bn-node-avgpool, conv-bn-node-maxpool, flatten-linear-bn-node, linear [-node]."""
    head: list[nn.Module] = [layer.Linear(32, 10)]
    if last is not None:
        head += [layer.BatchNorm1d(10), last()]
    net = nn.Sequential(
        layer.Conv2d(1, 8, 3, padding=1),
        layer.BatchNorm2d(8),
        first(),
        layer.AvgPool2d(2),
        layer.Conv2d(8, 16, 3, padding=1, bias=False),
        layer.BatchNorm2d(16),
        second(),
        layer.MaxPool2d(2),
        layer.Flatten(),
        layer.Dropout(0.2),
        layer.Linear(64, 32, bias=False),
        layer.BatchNorm1d(32),
        third(),
        *head,
    )
    functional.set_step_mode(net, mode)
    return net


def seq_to_ann_net() -> nn.Sequential:
    """Plain torch layers in SeqToANNContainer (SpikingJelly's other multi-step form), a gap head."""
    net = nn.Sequential(
        layer.SeqToANNContainer(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8)),
        neuron.LIFNode(tau=2.0),
        layer.SeqToANNContainer(nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16)),
        neuron.ParametricLIFNode(init_tau=3.0, v_reset=None),
        layer.SeqToANNContainer(nn.Conv2d(16, 10, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten()),
        nn.Linear(10, 10),
    )
    functional.set_step_mode(net, "m")
    return net


def _plif(init_tau: float, w: float | None = None, **kwargs: Any) -> Node:
    def make() -> nn.Module:
        node = neuron.ParametricLIFNode(init_tau=init_tau, **kwargs)
        if w is not None:
            with torch.no_grad():
                node.w.fill_(w)  # as if training had moved it
        return node

    return make


CASES: list[tuple[str, Callable[[], nn.Sequential]]] = [
    (
        "lif-decay-input",
        lambda: sj_net(
            lambda: neuron.LIFNode(tau=2.0), lambda: neuron.LIFNode(tau=3.0), lambda: neuron.LIFNode(tau=1.5)
        ),
    ),
    (
        "lif-no-decay-input",
        lambda: sj_net(
            lambda: neuron.LIFNode(tau=2.0, decay_input=False),
            lambda: neuron.LIFNode(tau=4.0, decay_input=False),
            lambda: neuron.LIFNode(decay_input=False),
        ),
    ),
    (
        "lif-soft-reset",
        lambda: sj_net(
            lambda: neuron.LIFNode(v_reset=None),
            lambda: neuron.LIFNode(v_reset=None, decay_input=False),
            lambda: neuron.LIFNode(v_reset=None),
        ),
    ),
    (
        "lif-v-reset-float",
        lambda: sj_net(
            lambda: neuron.LIFNode(v_reset=-0.25, v_threshold=0.8),
            lambda: neuron.LIFNode(v_reset=0.3, v_threshold=1.2, decay_input=False),
            lambda: neuron.LIFNode(v_reset=0.1),
        ),
    ),
    (
        "if",
        lambda: sj_net(
            neuron.IFNode, lambda: neuron.IFNode(v_reset=None), lambda: neuron.IFNode(v_threshold=1.5, v_reset=-0.5)
        ),
    ),
    (
        "plif",
        lambda: sj_net(
            _plif(2.0, w=0.37), _plif(3.0, v_reset=None, decay_input=False), _plif(1.5, w=0.8, v_threshold=0.6)
        ),
    ),
    (
        "detach-reset-atan",
        lambda: sj_net(
            lambda: neuron.LIFNode(detach_reset=True, surrogate_function=surrogate.ATan()),
            lambda: neuron.IFNode(detach_reset=True, surrogate_function=surrogate.PiecewiseQuadratic()),
            lambda: neuron.LIFNode(surrogate_function=surrogate.Erf()),
        ),
    ),
    (
        "spike-output",
        lambda: sj_net(
            neuron.LIFNode,
            neuron.LIFNode,
            neuron.LIFNode,
            last=lambda: neuron.IFNode(surrogate_function=surrogate.ATan()),
        ),
    ),
    ("seq-to-ann-gap", seq_to_ann_net),
    ("single-step", lambda: sj_net(neuron.LIFNode, lambda: neuron.IFNode(v_reset=None), _plif(2.0), mode="s")),
]


def _run_spikingjelly(
    net: nn.Module, timesteps: int
) -> Callable[[torch.Tensor], tuple[torch.Tensor, list[torch.Tensor]]]:
    """SpikingJelly's own loop: reset_net, then [T, B, ...] ('m') or T calls ('s').

    Returns the time-mean output and each node's spikes."""
    nodes = [m for m in net.modules() if isinstance(m, (neuron.LIFNode, neuron.IFNode, neuron.ParametricLIFNode))]
    multi = any(getattr(m, "step_mode", "s") == "m" for m in nodes)

    def run(images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        with record_outputs(nodes) as steps:  # one [T, B, ...] call per node ('m'), or one call per step ('s')
            functional.reset_net(net)
            if multi:
                output = net(images.unsqueeze(0).repeat(timesteps, 1, 1, 1, 1)).mean(0)
            else:
                output = torch.stack([net(images) for _ in range(timesteps)]).mean(0)
        spikes = [torch.cat(node_steps) if multi else torch.stack(node_steps) for node_steps in steps]
        return output, spikes

    return run


def _source(factory: Callable[[], nn.Sequential], images: torch.Tensor) -> nn.Sequential:
    return lively_source(factory, _run_spikingjelly, images)


@pytest.mark.parametrize("timesteps", [1, 4])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_imported_model_computes_what_spikingjelly_computes(
    case: tuple[str, Callable[[], nn.Sequential]], timesteps: int, images: torch.Tensor
) -> None:
    net = _source(case[1], images)
    assert_imports_exactly(net, from_spikingjelly, _run_spikingjelly, timesteps, images)


def test_neuron_settings_are_read_from_the_live_modules(images: torch.Tensor) -> None:
    net = _source(CASES[5][1], images)  # PLIF with learned w
    net[2].v_threshold = 0.75  # an attribute, not in the state dict
    model = from_spikingjelly(net, SHAPE, 4)
    lifs = [m for m in model.layers if type(m).__name__ == "LIF"]
    assert (
        lifs[0].tau == pytest.approx(1 / torch.sigmoid(torch.tensor(0.37)).item(), rel=1e-7)
        and lifs[0].v_threshold == 0.75
    )
    assert lifs[1].reset == "soft" and lifs[1].v_reset == 0.0 and not lifs[1].decay_input
    assert all(not m.strict_threshold for m in lifs)
    assert torch.equal(model.layers.conv1.weight, net[0].weight) and torch.equal(
        model.layers.bn3.running_mean, net[11].running_mean
    )
    assert model.metadata["source"] == {
        "framework": "spikingjelly",
        "version": model.metadata["source"]["version"],
        "step_mode": "m",
    }
    hard = from_spikingjelly(_source(CASES[3][1], images), SHAPE, 1)
    assert [m.v_reset for m in hard.layers if type(m).__name__ == "LIF"] == [-0.25, 0.3, 0.1]


# -- refusals ---------------------------------------------------------------------------------


class MyLIF(neuron.LIFNode):
    pass


class Wrapper(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = _mlp(neuron.LIFNode())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).relu()


def _m(*modules: nn.Module) -> nn.Sequential:
    net = nn.Sequential(*modules)
    functional.set_step_mode(net, "m")
    return net


def _mlp(*middle: nn.Module) -> nn.Sequential:
    return _m(layer.Flatten(), layer.Linear(64, 32), *middle, layer.Linear(32, 10))


def _per_neuron_plif() -> nn.Module:
    node = neuron.ParametricLIFNode()
    node.w = nn.Parameter(torch.zeros(32))
    return node


def _mixed() -> nn.Sequential:
    net = _mlp(neuron.LIFNode())
    net[2].step_mode = "s"
    return net


REFUSALS: list[tuple[str, Callable[[], nn.Module], str]] = [
    ("other-neuron", lambda: _mlp(neuron.KLIFNode()), r"module 2 \(KLIFNode\): this neuron model has no albsnn form"),
    (
        "not-spiking",
        lambda: _mlp(neuron.LIFNode(surrogate_function=surrogate.ATan(spiking=False))),
        r"surrogate_function does not compute the step 1\[x >= 0\]",
    ),
    ("plif-per-neuron", lambda: _mlp(_per_neuron_plif()), r"w of shape \[32\]"),
    (
        "plain-conv-multi-step",
        lambda: _m(nn.Conv2d(1, 4, 3), layer.Flatten(), layer.Linear(144, 10)),
        "wrap it in layer.SeqToANNContainer",
    ),
    (
        "neuron-in-seq-to-ann",
        lambda: _m(layer.Flatten(), layer.SeqToANNContainer(nn.Linear(64, 32), neuron.LIFNode()), layer.Linear(32, 10)),
        "inside SeqToANNContainer would treat the T steps",
    ),
    ("mixed-step-modes", _mixed, r"step_mode 's' while the network runs 'm'"),
    ("subclass", lambda: _mlp(MyLIF()), "subclass of LIFNode"),
    ("ws-conv", lambda: _m(layer.WSConv2d(1, 4, 3), layer.Flatten(), layer.Linear(144, 10)), "subclass of Conv2d"),
    (
        "multi-step-container",
        lambda: _m(layer.Flatten(), layer.MultiStepContainer(nn.Linear(64, 10))),
        r"\(MultiStepContainer\): no albsnn layer",
    ),
    (
        "bn-batch-stats",
        lambda: _m(
            layer.Conv2d(1, 4, 3),
            layer.BatchNorm2d(4, track_running_stats=False),
            layer.Flatten(),
            layer.Linear(144, 10),
        ),
        "track_running_stats=False",
    ),
    (
        "not-a-chain",
        lambda: Wrapper(),
        r"forward\(\) of Wrapper: its output is Tensor.relu\(\.\.\.\) of module body \(Sequential\)",
    ),
    ("relu", lambda: _m(layer.Flatten(), nn.ReLU(), layer.Linear(64, 10)), r"module 1 \(ReLU\)"),
]


@pytest.mark.parametrize("case", REFUSALS, ids=[c[0] for c in REFUSALS])
def test_refusals_name_the_module_and_what_is_supported(case: tuple[str, Callable[[], nn.Module], str]) -> None:
    net = case[1]()
    with pytest.raises(InteropError, match=case[2]) as info:
        from_spikingjelly(net, SHAPE, 4)
    supported = "a model class whose forward() runs" if case[0] == "not-a-chain" else "nn.Sequential (step_mode"
    assert "\n" not in str(info.value) and f"supported: {supported}" in str(info.value)
