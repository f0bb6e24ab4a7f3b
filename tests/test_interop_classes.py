"""Model classes with their own forward(), imported by tracing it (albsnn_compress/interop/trace.py).

snnTorch's tutorials 5 and 6 and SpikingJelly's conv_fashion_mnist example write their networks as
``class Net(nn.Module)`` with the time loop in ``forward()``. The slow tests below define them exactly as
those pages do (only the sizes that set CPU time are smaller: fewer steps, SpikingJelly's ``channels``),
train each briefly on real FashionMNIST with its framework's own loop, import it, and check on the whole
test split that the imported network computes what the framework's own ``forward()`` computes (bit for
bit, ties traced: tests/interop_check.py). The fast tests run variants on the bundled 8x8 digits (every
construct the tracer maps), and every refusal names its construct.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from albsnn_compress.data import load_split
from albsnn_compress.errors import InteropError
from albsnn_compress.snn.recording import record_outputs
from tests.interop_check import (
    SHAPE,
    assert_equivalent,
    assert_imports_exactly,
    assert_lively,
    digit_images,
    lively_source,
    one_thread,
)

HAS_SNNTORCH = importlib.util.find_spec("snntorch") is not None
HAS_SPIKINGJELLY = importlib.util.find_spec("spikingjelly") is not None
needs_snntorch = pytest.mark.skipif(not HAS_SNNTORCH, reason="snntorch is not installed")
needs_spikingjelly = pytest.mark.skipif(not HAS_SPIKINGJELLY, reason="spikingjelly is not installed")

if HAS_SNNTORCH:
    import snntorch as snn
    import snntorch.functional as SF
    from snntorch import surrogate, utils
if HAS_SPIKINGJELLY:
    from spikingjelly.activation_based import functional, layer, neuron
    from spikingjelly.activation_based import surrogate as sj_surrogate

    from albsnn_compress.interop import from_spikingjelly
if HAS_SNNTORCH:
    from albsnn_compress.interop import from_snntorch


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return digit_images()


@pytest.fixture(autouse=True)
def single_thread() -> Iterator[None]:
    with one_thread():
        yield


# -- snnTorch tutorial 5, as written there ----------------------------------------------------------------------
# (https://snntorch.readthedocs.io/en/latest/tutorials/tutorial_5.html; num_steps 25 -> 10 for CPU time)

# Network Architecture
num_inputs = 28 * 28
num_hidden = 1000
num_outputs = 10

# Temporal Dynamics
num_steps = 10
beta = 0.95
batch_size = 128


class Net(nn.Module):
    def __init__(self):
        super().__init__()

        # Initialize layers
        self.fc1 = nn.Linear(num_inputs, num_hidden)
        self.lif1 = snn.Leaky(beta=beta)
        self.fc2 = nn.Linear(num_hidden, num_outputs)
        self.lif2 = snn.Leaky(beta=beta)

    def forward(self, x):
        # Initialize hidden states at t=0
        mem1 = self.lif1.init_leaky()
        mem2 = self.lif2.init_leaky()

        # Record the final layer
        spk2_rec = []
        mem2_rec = []

        for step in range(num_steps):  # noqa: B007 - as the tutorial writes it
            cur1 = self.fc1(x)
            spk1, mem1 = self.lif1(cur1, mem1)
            cur2 = self.fc2(spk1)
            spk2, mem2 = self.lif2(cur2, mem2)
            spk2_rec.append(spk2)
            mem2_rec.append(mem2)

        return torch.stack(spk2_rec, dim=0), torch.stack(mem2_rec, dim=0)


# -- snnTorch tutorial 6, as written there ----------------------------------------------------------------------
# (https://snntorch.readthedocs.io/en/latest/tutorials/tutorial_6.html; num_steps 50 -> 10 for CPU time)

if HAS_SNNTORCH:
    spike_grad = surrogate.fast_sigmoid(slope=25)
beta6 = 0.5
num_steps6 = 10


class Net6(nn.Module):
    def __init__(self):
        super().__init__()

        # Initialize layers
        self.conv1 = nn.Conv2d(1, 12, 5)
        self.lif1 = snn.Leaky(beta=beta6, spike_grad=spike_grad)
        self.conv2 = nn.Conv2d(12, 64, 5)
        self.lif2 = snn.Leaky(beta=beta6, spike_grad=spike_grad)
        self.fc1 = nn.Linear(64 * 4 * 4, 10)
        self.lif3 = snn.Leaky(beta=beta6, spike_grad=spike_grad)

    def forward(self, x):
        # Initialize hidden states and outputs at t=0
        mem1 = self.lif1.init_leaky()
        mem2 = self.lif2.init_leaky()
        mem3 = self.lif3.init_leaky()

        # Record the final layer
        spk3_rec = []
        mem3_rec = []

        for step in range(num_steps6):  # noqa: B007 - as the tutorial writes it
            cur1 = F.max_pool2d(self.conv1(x), 2)
            spk1, mem1 = self.lif1(cur1, mem1)
            cur2 = F.max_pool2d(self.conv2(spk1), 2)
            spk2, mem2 = self.lif2(cur2, mem2)
            cur3 = self.fc1(spk2.view(batch_size, -1))
            spk3, mem3 = self.lif3(cur3, mem3)

            spk3_rec.append(spk3)
            mem3_rec.append(mem3)

        return torch.stack(spk3_rec), torch.stack(mem3_rec)


def tutorial_6_sequential() -> nn.Sequential:
    """Tutorial 6's second form (and tutorial 7's): nn.Sequential with init_hidden=True, looped by forward_pass."""
    return nn.Sequential(
        nn.Conv2d(1, 12, 5),
        nn.MaxPool2d(2),
        snn.Leaky(beta=beta6, spike_grad=spike_grad, init_hidden=True),
        nn.Conv2d(12, 64, 5),
        nn.MaxPool2d(2),
        snn.Leaky(beta=beta6, spike_grad=spike_grad, init_hidden=True),
        nn.Flatten(),
        nn.Linear(64 * 4 * 4, 10),
        snn.Leaky(beta=beta6, spike_grad=spike_grad, init_hidden=True, output=True),
    )


def forward_pass(net, num_steps, data):
    mem_rec = []
    spk_rec = []
    utils.reset(net)  # resets hidden states for all LIF neurons in net

    for step in range(num_steps):  # noqa: B007 - as the tutorial writes it
        spk_out, mem_out = net(data)
        spk_rec.append(spk_out)
        mem_rec.append(mem_out)

    return torch.stack(spk_rec), torch.stack(mem_rec)


# -- snnTorch tutorial 7, as written there ----------------------------------------------------------------------
# (https://snntorch.readthedocs.io/en/latest/tutorials/tutorial_7.html). The network, forward_pass, loss, optimizer
# and accuracy are the tutorial's; only its input is adapted (no Tonic or NMNIST here): nmnist_frames() gives each
# FashionMNIST image NMNIST's shape, and nmnist_steps() repeats it over num_steps7 = 5 steps (NMNIST's ToFrame
# gives some 300 time bins) as the [T, B, 2, 34, 34] tensor the tutorial's forward_pass loops over.

if HAS_SNNTORCH:
    spike_grad7 = surrogate.atan()
beta7 = 0.5
num_steps7 = 5
sensor_size = (34, 34, 2)  # tonic.datasets.NMNIST.sensor_size: 34 x 34 pixels, 2 polarities


def tutorial_7_net() -> nn.Sequential:
    """Tutorial 7's ``net`` (its ``beta`` and ``spike_grad`` named ``beta7`` and ``spike_grad7`` here)."""
    return nn.Sequential(
        nn.Conv2d(2, 12, 5),
        nn.MaxPool2d(2),
        snn.Leaky(beta=beta7, spike_grad=spike_grad7, init_hidden=True),
        nn.Conv2d(12, 32, 5),
        nn.MaxPool2d(2),
        snn.Leaky(beta=beta7, spike_grad=spike_grad7, init_hidden=True),
        nn.Flatten(),
        nn.Linear(32 * 5 * 5, 10),
        snn.Leaky(beta=beta7, spike_grad=spike_grad7, init_hidden=True, output=True),
    )


def forward_pass7(net, data):
    """Tutorial 7's ``forward_pass`` (named apart from tutorial 6's)."""
    spk_rec = []
    utils.reset(net)  # resets hidden states for all LIF neurons in net

    for step in range(data.size(0)):  # data.size(0) = number of time steps
        spk_out, mem_out = net(data[step])
        spk_rec.append(spk_out)

    return torch.stack(spk_rec)


def nmnist_frames(images: torch.Tensor) -> torch.Tensor:
    """FashionMNIST images ``[B, 1, 28, 28]`` in NMNIST's shape ``[B, 2, 34, 34]``: zero-padded by 3 pixels on each
    side (the pixel values unchanged), the image in both polarity channels."""
    return F.pad(images, (3, 3, 3, 3)).repeat(1, 2, 1, 1)


def nmnist_steps(frames: torch.Tensor) -> torch.Tensor:
    """``frames`` ``[B, 2, 34, 34]`` repeated over ``num_steps7`` steps: ``[T, B, 2, 34, 34]``, the time-first
    layout of the tutorial's loader (``tonic.collation.PadTensors(batch_first=False)``)."""
    return frames.unsqueeze(0).repeat(num_steps7, 1, 1, 1, 1)


# -- SpikingJelly's conv_fashion_mnist CSNN, as written there ---------------------------------------------------
# (spikingjelly/activation_based/examples/conv_fashion_mnist.py; its channels argument is 128 there, 8 here)


class CSNN(nn.Module):
    def __init__(self, T: int, channels: int):
        super().__init__()
        self.T = T

        self.conv_fc = nn.Sequential(
            layer.Conv2d(1, channels, kernel_size=3, padding=1, bias=False),
            layer.BatchNorm2d(channels),
            neuron.IFNode(surrogate_function=sj_surrogate.ATan()),
            layer.MaxPool2d(2, 2),  # 14 * 14
            layer.Conv2d(channels, channels, kernel_size=3, padding=1, bias=False),
            layer.BatchNorm2d(channels),
            neuron.IFNode(surrogate_function=sj_surrogate.ATan()),
            layer.MaxPool2d(2, 2),  # 7 * 7
            layer.Flatten(),
            layer.Linear(channels * 7 * 7, channels * 4 * 4, bias=False),
            neuron.IFNode(surrogate_function=sj_surrogate.ATan()),
            layer.Linear(channels * 4 * 4, 10, bias=False),
            neuron.IFNode(surrogate_function=sj_surrogate.ATan()),
        )

        functional.set_step_mode(self, step_mode="m")

    def forward(self, x: torch.Tensor):
        # x.shape = [N, C, H, W]
        x_seq = x.unsqueeze(0).expand(self.T, -1, -1, -1, -1)  # [N, C, H, W] -> [T, N, C, H, W]
        x_seq = self.conv_fc(x_seq)
        fr = x_seq.mean(0)
        return fr

    def spiking_encoder(self):
        return self.conv_fc[0:3]


# -- how each framework runs its own model (the reference) ------------------------------------------------------

SourceRun = Callable[[torch.Tensor], tuple[torch.Tensor, list[torch.Tensor]]]


def snntorch_run(net: nn.Module, flat: bool = False, batch: int | None = None, stacked: bool = True) -> SourceRun:
    """The class's own forward() on ``images`` (flattened, in batches of ``batch``): the time-mean of its output
    (``stacked``) or its output, and each Leaky's spikes ``[T, B, ...]``."""
    leakies = [m for m in net.modules() if isinstance(m, snn.Leaky)]

    def run(images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        outputs: list[torch.Tensor] = []
        spikes: list[list[torch.Tensor]] = [[] for _ in leakies]
        for part in images.split(batch or len(images)):
            with record_outputs(leakies) as steps:
                utils.reset(net)  # the classes with init_hidden=True neurons; the others start from init_leaky()
                out = net(part.flatten(1) if flat else part)
            out = out[0] if isinstance(out, tuple) else out
            outputs.append(out.mean(0) if stacked else out)
            for record, leaky_steps in zip(spikes, steps):
                record.append(torch.stack(leaky_steps))
        return torch.cat(outputs), [torch.cat(record, dim=1) for record in spikes]

    return run


def sequential_run(net: nn.Module, steps: int) -> SourceRun:
    """Tutorial 6's forward_pass: the rate of the output spikes, and each Leaky's spikes."""
    leakies = [m for m in net.modules() if isinstance(m, snn.Leaky)]

    def run(images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        with record_outputs(leakies) as recorded:
            spk_rec, _ = forward_pass(net, steps, images)
        return spk_rec.mean(0), [torch.stack(leaky_steps) for leaky_steps in recorded]

    return run


def tutorial_7_run(net: nn.Module) -> SourceRun:
    """Tutorial 7's forward_pass on ``frames`` (:func:`nmnist_frames`) repeated by :func:`nmnist_steps`: the rate of
    the output spikes (their count / T, whose argmax is ``SF.accuracy_rate``'s prediction), and each Leaky's
    spikes."""
    leakies = [m for m in net.modules() if isinstance(m, snn.Leaky)]

    def run(frames: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        with record_outputs(leakies) as recorded:
            spk_rec = forward_pass7(net, nmnist_steps(frames))
        return spk_rec.mean(0), [torch.stack(leaky_steps) for leaky_steps in recorded]

    return run


def spikingjelly_run(net: nn.Module, stacked: bool = False) -> SourceRun:
    """The class's own forward() after functional.reset_net: its output (or its time-mean), each node's spikes."""
    nodes = [m for m in net.modules() if isinstance(m, (neuron.LIFNode, neuron.IFNode, neuron.ParametricLIFNode))]

    def run(images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        with record_outputs(nodes) as recorded:
            functional.reset_net(net)
            out = net(images)
        multi = all(getattr(node, "step_mode", "s") == "m" for node in nodes)
        spikes = [torch.cat(calls) if multi else torch.stack(calls) for calls in recorded]
        return (out.mean(0) if stacked else out), spikes

    return run


# -- fast: every construct the tracer maps, on the 8x8 digits ----------------------------------------------------


class Tutorial5Digits(nn.Module):
    """Tutorial 5's class on 8x8 inputs: flattened input, init_hidden=False, returns (spk_rec, mem_rec)."""

    def __init__(self, steps: int = 4) -> None:
        super().__init__()
        self.steps = steps
        self.fc1 = nn.Linear(64, 48)
        self.lif1 = snn.Leaky(beta=0.9)
        self.fc2 = nn.Linear(48, 10)
        self.lif2 = snn.Leaky(beta=0.8, reset_mechanism="zero")

    def forward(self, x):
        mem1 = self.lif1.init_leaky()
        mem2 = self.lif2.init_leaky()
        spk2_rec = []
        mem2_rec = []
        for _step in range(self.steps):
            spk1, mem1 = self.lif1(self.fc1(x), mem1)
            spk2, mem2 = self.lif2(self.fc2(spk1), mem2)
            spk2_rec.append(spk2)
            mem2_rec.append(mem2)
        return torch.stack(spk2_rec, dim=0), torch.stack(mem2_rec, dim=0)


class Tutorial6Digits(nn.Module):
    """Tutorial 6's class on 8x8 inputs: F.max_pool2d and x.view in forward(), batch norms so every layer fires."""

    def __init__(self, steps: int = 4) -> None:
        super().__init__()
        self.steps = steps
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.lif1 = snn.Leaky(beta=0.5)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(16)
        self.lif2 = snn.Leaky(beta=0.5, learn_beta=True)
        self.fc1 = nn.Linear(16 * 2 * 2, 10)
        self.lif3 = snn.Leaky(beta=0.5)

    def forward(self, x):
        mem1 = self.lif1.init_leaky()
        mem2 = self.lif2.init_leaky()
        mem3 = self.lif3.init_leaky()
        spk3_rec = []
        for _step in range(self.steps):
            cur1 = F.max_pool2d(self.bn1(self.conv1(x)), 2)
            spk1, mem1 = self.lif1(cur1, mem1)
            cur2 = F.max_pool2d(self.bn2(self.conv2(spk1)), 2)
            spk2, mem2 = self.lif2(cur2, mem2)
            cur3 = self.fc1(spk2.view(x.size(0), -1))
            spk3, mem3 = self.lif3(cur3, mem3)
            spk3_rec.append(spk3)
        return torch.stack(spk3_rec)


class HiddenStateNet(nn.Module):
    """init_hidden=True neurons in a class: a block as nn.Sequential called per step, F.avg_pool2d, torch.flatten,
    F.dropout(training=self.training), a mid-chain Leaky(output=True), a Linear readout averaged by forward()."""

    def __init__(self, steps: int = 3) -> None:
        super().__init__()
        self.steps = steps
        self.block = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), snn.Leaky(beta=0.7, init_hidden=True)
        )
        self.conv = nn.Conv2d(8, 16, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        self.lif = snn.Leaky(beta=0.6, init_hidden=True, output=True)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        outputs = []
        for _ in range(self.steps):
            y = F.avg_pool2d(self.block(x), 2)
            spk, _mem = self.lif(self.bn(self.conv(y)))
            y = torch.flatten(F.max_pool2d(spk, kernel_size=2, stride=2), 1)
            outputs.append(self.fc(F.dropout(y, 0.3, training=self.training)))
        return torch.stack(outputs).mean(0)


class OneStepNet(nn.Module):
    """A forward() that runs one step per call (you loop it, like an nn.Sequential): timesteps must be given."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.lif1 = snn.Leaky(beta=0.8, init_hidden=True)
        self.fc = nn.Linear(8 * 4 * 4, 10)

    def forward(self, x):
        spk = self.lif1(self.bn(self.conv(x)))
        return self.fc(F.max_pool2d(spk, 2).reshape(x.shape[0], -1))


class CSNNDigits(nn.Module):
    """The CSNN on 8x8 inputs (a LIFNode and a ParametricLIFNode among the IFNodes)."""

    def __init__(self, T: int = 4, channels: int = 8) -> None:
        super().__init__()
        self.T = T
        self.conv_fc = nn.Sequential(
            layer.Conv2d(1, channels, kernel_size=3, padding=1, bias=False),
            layer.BatchNorm2d(channels),
            neuron.IFNode(surrogate_function=sj_surrogate.ATan()),
            layer.MaxPool2d(2, 2),
            layer.Conv2d(channels, channels, kernel_size=3, padding=1, bias=False),
            layer.BatchNorm2d(channels),
            neuron.LIFNode(tau=2.0, surrogate_function=sj_surrogate.ATan()),
            layer.MaxPool2d(2, 2),
            layer.Flatten(),
            layer.Linear(channels * 2 * 2, 32, bias=False),
            layer.BatchNorm1d(32),
            neuron.ParametricLIFNode(init_tau=3.0, v_reset=None),
            layer.Linear(32, 10, bias=False),
            layer.BatchNorm1d(10),
            neuron.IFNode(surrogate_function=sj_surrogate.ATan()),
        )
        functional.set_step_mode(self, step_mode="m")

    def forward(self, x: torch.Tensor):
        x_seq = x.unsqueeze(0).expand(self.T, -1, -1, -1, -1)
        return self.conv_fc(x_seq).mean(0)


class SingleStepLoop(nn.Module):
    """SpikingJelly single-step modules called once per step by forward(), the outputs stacked and averaged."""

    def __init__(self, T: int = 3) -> None:
        super().__init__()
        self.T = T
        self.features = nn.Sequential(
            layer.Conv2d(1, 8, 3, padding=1), layer.BatchNorm2d(8), neuron.LIFNode(tau=2.0), layer.AvgPool2d(2)
        )
        self.classifier = nn.Sequential(
            layer.Flatten(), layer.Linear(128, 32), layer.BatchNorm1d(32), neuron.IFNode(), layer.Linear(32, 10)
        )

    def forward(self, x):
        out = []
        for _t in range(self.T):
            out.append(self.classifier(self.features(x)))
        return torch.stack(out).mean(0)


class RepeatNoMean(nn.Module):
    """Multi-step: the input repeated with .repeat(T, 1, 1, 1, 1), torch layers in SeqToANNContainer, and the
    multi-step output [T, B, 10] returned as it is."""

    def __init__(self, T: int = 2) -> None:
        super().__init__()
        self.T = T
        self.stem = layer.SeqToANNContainer(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8))
        self.node = neuron.LIFNode(tau=2.0, step_mode="m")
        self.head = layer.SeqToANNContainer(nn.MaxPool2d(2), nn.Flatten(), nn.Linear(128, 10))

    def forward(self, x):
        return self.head(self.node(self.stem(x.repeat(self.T, 1, 1, 1, 1))))


SNNTORCH_CASES: dict[str, tuple[Callable[[], nn.Module], dict[str, bool]]] = {
    "tutorial-5-flat": (Tutorial5Digits, {"flat": True}),
    "tutorial-6-functional": (Tutorial6Digits, {}),
    "hidden-state-class": (HiddenStateNet, {"stacked": False}),
}
"""Each case's class and how its forward() is called and read (:func:`snntorch_run`)."""


def _boost(net: nn.Module) -> None:
    """Larger linear weights, so the random tutorial-5 variant fires in both layers."""
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.Linear):
                module.weight.mul_(4)


@needs_snntorch
@pytest.mark.parametrize("case", list(SNNTORCH_CASES))
def test_snntorch_classes_compute_what_their_forward_computes(case: str, images: torch.Tensor) -> None:
    factory, how = SNNTORCH_CASES[case]

    def runner(net: nn.Module, _timesteps: object = None) -> SourceRun:
        return snntorch_run(net, **how)

    net = lively_source(factory, runner, images)
    if case == "tutorial-5-flat":
        _boost(net)
    assert_imports_exactly(net, from_snntorch, runner, None, images)
    model = from_snntorch(net, SHAPE)
    traced = model.metadata["source"]["traced"]
    assert model.timesteps == getattr(net, "steps", 3)
    if case == "tutorial-5-flat":
        assert traced["flattened_input"] and traced["dropped_outputs"] == [
            "output 1: torch.stack of module lif2's output 1"
        ]
        assert model.spec["input"]["shape"] == [64] and model.spec["layers"][0]["type"] == "linear"
        assert model.metadata["layers"]["linear1"] == "fc1"
    if case == "tutorial-6-functional":
        assert [layer["type"] for layer in model.spec["layers"]][:4] == ["conv", "bn", "maxpool", "lif"]
        assert model.metadata["layers"]["maxpool1"] == "forward(): F.max_pool2d after bn1"
        assert model.metadata["layers"]["flatten1"] == "forward(): Tensor.view after lif2"
    if case == "hidden-state-class":
        assert traced["readout"] == "mean" and model.metadata["layers"]["conv1"] == "block.0"


@needs_snntorch
def test_a_one_step_forward_is_imported_like_a_sequential(images: torch.Tensor) -> None:
    def run(net: nn.Module, timesteps: int) -> SourceRun:
        def go(x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
            with record_outputs([net.lif1]) as steps:
                utils.reset(net)
                out = torch.stack([net(x) for _ in range(timesteps)]).mean(0)
            return out, [torch.stack(steps[0])]

        return go

    net = lively_source(OneStepNet, run, images)
    for timesteps in (1, 4):
        assert_imports_exactly(net, from_snntorch, run, timesteps, images)
    with pytest.raises(InteropError, match=r"runs one time step per call.*give timesteps \(--timesteps T\)"):
        from_snntorch(net, SHAPE)


@needs_snntorch
def test_mean_and_std_reach_the_traced_forward(images: torch.Tensor) -> None:
    net = lively_source(Tutorial6Digits, lambda n, _t: snntorch_run(n), images)
    model = from_snntorch(net, SHAPE, mean=0.3, std=0.4)
    run = snntorch_run(net)
    assert assert_equivalent(model, lambda x: run((x - 0.3) / 0.4), images)["agreement"] == 1.0


@needs_snntorch
def test_the_traced_network_is_left_as_it_was(images: torch.Tensor) -> None:
    net = lively_source(HiddenStateNet, lambda n, _t: snntorch_run(n, stacked=False), images)
    net.train()
    net(images[:8]).sum().backward()  # a training step leaves states with autograd history in the neurons
    before = {k: v.clone() for k, v in net.state_dict().items()}
    from_snntorch(net, SHAPE)
    assert net.training and all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert all(m.mem.grad_fn is not None for m in net.modules() if isinstance(m, snn.Leaky))


@needs_spikingjelly
@pytest.mark.parametrize("case", ["csnn", "single-step-loop", "repeat-no-mean"])
def test_spikingjelly_classes_compute_what_their_forward_computes(case: str, images: torch.Tensor) -> None:
    factory = {"csnn": CSNNDigits, "single-step-loop": SingleStepLoop, "repeat-no-mean": RepeatNoMean}[case]

    def runner(net: nn.Module, _timesteps: object = None) -> SourceRun:
        return spikingjelly_run(net, stacked=case == "repeat-no-mean")

    net = lively_source(factory, runner, images)
    assert_imports_exactly(net, from_spikingjelly, runner, None, images)
    model = from_spikingjelly(net, SHAPE)
    source = model.metadata["source"]
    assert source["step_mode"] == ("s" if case == "single-step-loop" else "m") and model.timesteps == net.T
    assert source["traced"]["steps"] == ("per-step loop" if case == "single-step-loop" else "multi-step")


# -- refusals: each construct named, on one line -----------------------------------------------------------------


class _Base(nn.Module):
    """Two Linear-Leaky layers with init_hidden=False; ``step`` is what each test class changes."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(64, 32)
        self.lif1 = snn.Leaky(beta=0.9)
        self.fc2 = nn.Linear(32, 10)
        self.lif2 = snn.Leaky(beta=0.9)

    def forward(self, x):
        x = x.flatten(1)
        mem1, mem2 = self.lif1.init_leaky(), self.lif2.init_leaky()
        spk_rec = []
        for _ in range(3):
            spk, mem1, mem2 = self.step(x, mem1, mem2, spk_rec)
            spk_rec.append(spk)
        return self.readout(spk_rec)

    def step(self, x, mem1, mem2, spk_rec):
        spk1, mem1 = self.lif1(self.fc1(x), mem1)
        spk2, mem2 = self.lif2(self.fc2(spk1), mem2)
        return spk2, mem1, mem2

    def readout(self, spk_rec):
        return torch.stack(spk_rec)


class Residual(_Base):
    def __init__(self) -> None:
        super().__init__()
        self.skip = nn.Linear(64, 10)

    def step(self, x, mem1, mem2, spk_rec):
        spk1, mem1 = self.lif1(self.fc1(x), mem1)
        spk2, mem2 = self.lif2(self.fc2(spk1) + self.skip(x), mem2)
        return spk2, mem1, mem2


class Recurrent(_Base):
    def __init__(self) -> None:
        super().__init__()
        self.feedback = nn.Linear(10, 32)

    def step(self, x, mem1, mem2, spk_rec):
        cur1 = self.fc1(x)
        if spk_rec:
            cur1 = cur1 + self.feedback(spk_rec[-1])
        spk1, mem1 = self.lif1(cur1, mem1)
        spk2, mem2 = self.lif2(self.fc2(spk1), mem2)
        return spk2, mem1, mem2


class SharedState(_Base):
    def step(self, x, mem1, mem2, spk_rec):
        spk1, mem1 = self.lif1(self.fc1(x), mem1)
        spk2, mem2 = self.lif2(self.fc2(spk1), mem1[:, :10] if spk_rec else mem2)
        return spk2, mem1, mem2


class SumReadout(_Base):
    def readout(self, spk_rec):
        return torch.stack(spk_rec).sum(0)


class LastStep(_Base):
    def readout(self, spk_rec):
        return spk_rec[-1]


class StackedOnDim1(_Base):
    def readout(self, spk_rec):
        return torch.stack(spk_rec, dim=1)


class Relu(_Base):
    def step(self, x, mem1, mem2, spk_rec):
        spk1, mem1 = self.lif1(F.relu(self.fc1(x)), mem1)
        spk2, mem2 = self.lif2(self.fc2(spk1), mem2)
        return spk2, mem1, mem2


class RateEncoded(_Base):
    def step(self, x, mem1, mem2, spk_rec):
        return super().step(torch.bernoulli(x), mem1, mem2, spk_rec)


class OnesMembrane(_Base):
    def forward(self, x):
        x = x.flatten(1)
        mem1, mem2 = torch.ones(x.shape[0], 32), self.lif2.init_leaky()
        spk_rec = []
        for _ in range(3):
            spk, mem1, mem2 = self.step(x, mem1, mem2, spk_rec)
            spk_rec.append(spk)
        return torch.stack(spk_rec)


class MembraneAsData(_Base):
    def step(self, x, mem1, mem2, spk_rec):
        _spk1, mem1 = self.lif1(self.fc1(x), mem1)
        spk2, mem2 = self.lif2(self.fc2(mem1), mem2)
        return spk2, mem1, mem2


class CalledTwice(_Base):
    def __init__(self) -> None:
        super().__init__()
        self.fc_mid = nn.Linear(32, 32)

    def step(self, x, mem1, mem2, spk_rec):
        spk1, mem1 = self.lif1(self.fc1(x), mem1)
        spk1, mem1 = self.lif1(self.fc_mid(spk1), mem1)
        spk2, mem2 = self.lif2(self.fc2(spk1), mem2)
        return spk2, mem1, mem2


class DropoutAlwaysOn(_Base):
    def step(self, x, mem1, mem2, spk_rec):
        spk1, mem1 = self.lif1(self.fc1(x), mem1)
        spk2, mem2 = self.lif2(self.fc2(F.dropout(spk1, 0.2)), mem2)
        return spk2, mem1, mem2


class BatchMean(_Base):
    def forward(self, x):
        spk1, _ = self.lif1(self.fc1(x.flatten(1)))
        spk2, _ = self.lif2(self.fc2(spk1))
        return spk2.mean(0)


class HardCodedBatch(_Base):
    def step(self, x, mem1, mem2, spk_rec):
        return super().step(x.view(128, -1), mem1, mem2, spk_rec)


SNNTORCH_REFUSALS: list[tuple[str, Callable[[], nn.Module], str]] = [
    (
        "branch",
        Residual,
        r"forward\(\) of Residual: Tensor.add\(\.\.\.\) combines module fc2 \(Linear\) and module skip \(Linear\) "
        r"before module lif2 \(Leaky\): not a chain",
    ),
    (
        "recurrent",
        Recurrent,
        r"Tensor.add\(\.\.\.\) combines module fc1 \(Linear\) and module feedback \(Linear\) before module lif1 "
        r"\(Leaky\), and one of them is computed from the output of module lif2 at an earlier step: a recurrent",
    ),
    ("state-from-another-neuron", SharedState, r"at step 1, module lif2 \(Leaky\) is handed Tensor.__getitem__"),
    (
        "sum-readout",
        SumReadout,
        r"its output is Tensor.sum\(\.\.\.\) of torch.stack of module lif2's per-step outputs: an unsupported readout",
    ),
    ("last-step-readout", LastStep, r"the last of 3 calls of module lif2 \(the last time step only\)"),
    ("stack-dim-1", StackedOnDim1, r"its output is torch.stack\(\.\.\.\) of module lif2 \(Leaky\): an unsupported"),
    ("functional-relu", Relu, r"F.relu\(\.\.\.\) on module fc1: no albsnn layer computes this functional call"),
    ("rate-encoding", RateEncoded, r"torch.bernoulli\(\.\.\.\) on the input: no albsnn layer computes"),
    ("nonzero-membrane", OnesMembrane, r"module lif1 \(Leaky\) starts from torch.ones\(\.\.\.\), not a zero membrane"),
    ("membrane-as-data", MembraneAsData, r"module fc2 \(Linear\) takes module lif1 \(Leaky\) \(its output 1"),
    ("called-twice", CalledTwice, r"module lif1 is called twice in one step"),
    ("dropout-training", DropoutAlwaysOn, r"F.dropout\(\.\.\.\) on module lif1 with training=True"),
    ("batch-mean", BatchMean, r"returns .mean\(0\) of module lif2 \(Leaky\), a per-step output: that averages over"),
    ("hard-coded-batch", HardCodedBatch, r"raised RuntimeError: .*pass trace_batch=that size \(--trace-batch\)"),
]


@needs_snntorch
@pytest.mark.parametrize("case", SNNTORCH_REFUSALS, ids=[c[0] for c in SNNTORCH_REFUSALS])
def test_snntorch_class_refusals_name_the_construct(case: tuple[str, Callable[[], nn.Module], str]) -> None:
    torch.manual_seed(0)
    with pytest.raises(InteropError, match=case[2]) as info:
        from_snntorch(case[1](), SHAPE)
    message = str(info.value)
    assert "\n" not in message and message.startswith("cannot import the snnTorch network: ")
    assert "supported: " in message or case[0] == "hard-coded-batch"  # forward() failed: no construct to list


@needs_snntorch
def test_timesteps_must_match_the_loop_and_hard_coded_batches_trace_at_their_size() -> None:
    with pytest.raises(InteropError, match="its time loop runs 3 steps, timesteps 4 was asked"):
        from_snntorch(_Base(), SHAPE, 4)
    assert from_snntorch(_Base(), SHAPE, 3).timesteps == 3
    model = from_snntorch(HardCodedBatch(), SHAPE, trace_batch=128)
    assert model.spec["layers"][0]["type"] == "flatten" and model(torch.rand(5, *SHAPE)).shape == (5, 10)
    with pytest.raises(InteropError, match="trace_batch must be an integer >= 1"):
        from_snntorch(_Base(), SHAPE, trace_batch=0)
    with pytest.raises(InteropError, match="timesteps must be an integer >= 1, got 0"):
        from_snntorch(_Base(), SHAPE, 0)


@needs_snntorch
def test_a_membrane_started_with_zeros_like_is_a_zero_start(images: torch.Tensor) -> None:
    class ZerosLike(_Base):
        def forward(self, x):
            x = x.flatten(1)
            spk_rec, mem1, mem2 = [], None, None
            for _ in range(3):
                cur1 = self.fc1(x)
                mem1 = torch.zeros_like(cur1) if mem1 is None else mem1  # zero whatever the data
                spk1, mem1 = self.lif1(cur1, mem1)
                cur2 = self.fc2(spk1)
                spk2, mem2 = self.lif2(cur2, torch.zeros_like(cur2) if mem2 is None else mem2)
                spk_rec.append(spk2)
            return torch.stack(spk_rec)

    torch.manual_seed(0)
    net = ZerosLike()
    model = from_snntorch(net, SHAPE)
    with torch.no_grad():
        assert torch.equal(model(images), net(images).mean(0))


@needs_snntorch
def test_a_state_reset_inside_the_loop_is_caught_by_the_final_check() -> None:
    class ResetEachStep(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1 = nn.Linear(64, 10)
            self.lif1 = snn.Leaky(beta=0.9, init_hidden=True)

        def forward(self, x):
            out = []
            for _ in range(3):
                self.lif1.reset_mem()  # invisible to the trace: the membrane never carries over
                out.append(self.lif1(self.fc1(x.flatten(1))))
            return torch.stack(out)

    with pytest.raises(InteropError, match="computes other outputs than forward\\(\\) on the trace images"):
        from_snntorch(ResetEachStep(), SHAPE, trace_batch=16)


class MultiStepFunctionalPool(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = layer.Conv2d(1, 4, 3, padding=1, step_mode="m")
        self.node = neuron.IFNode(step_mode="m")
        self.fc = layer.Linear(64, 10, step_mode="m")

    def forward(self, x):
        y = self.node(self.conv(x.unsqueeze(0).repeat(2, 1, 1, 1, 1)))
        return self.fc(F.max_pool2d(y.flatten(0, 1), 2).flatten(1).unflatten(0, (2, -1))).mean(0)


class MultiStepModulesPerStep(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(layer.Flatten(), layer.Linear(64, 10), neuron.IFNode())
        functional.set_step_mode(self.net, "m")

    def forward(self, x):
        return torch.stack([self.net(x) for _ in range(2)]).mean(0)


class SpikingJellyWrapper(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(layer.Flatten(), layer.Linear(64, 10), neuron.LIFNode())

    def forward(self, x):
        return torch.stack([self.body(x) * 2 for _ in range(2)]).mean(0)


SPIKINGJELLY_REFUSALS: list[tuple[str, Callable[[], nn.Module], str]] = [
    ("multi-step-functional", MultiStepFunctionalPool, r"Tensor.flatten\(\.\.\.\) on module node .*reshapes"),
    (
        "modules-per-step",
        MultiStepModulesPerStep,
        r"its modules run step_mode 'm' \(\[T, B, \.\.\.\] per call\) but forward\(\) calls them once per step",
    ),
    ("scaled-output", SpikingJellyWrapper, r"Tensor.mul\(\.\.\.\) on module body: no albsnn layer computes"),
]


@needs_spikingjelly
@pytest.mark.parametrize("case", SPIKINGJELLY_REFUSALS, ids=[c[0] for c in SPIKINGJELLY_REFUSALS])
def test_spikingjelly_class_refusals_name_the_construct(case: tuple[str, Callable[[], nn.Module], str]) -> None:
    torch.manual_seed(0)
    with pytest.raises(InteropError, match=case[2]) as info:
        from_spikingjelly(case[1](), SHAPE)
    assert "\n" not in str(info.value) and "supported: " in str(info.value)


# -- slow: the tutorials, trained on FashionMNIST, checked on the whole test split ---------------------------------


def _fashion(root: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    train = load_split("fashion-mnist", root, "train")
    test = load_split("fashion-mnist", root, "test")
    return train.as_float(), train.labels, test.as_float(), test.labels


def _batches(images: torch.Tensor, labels: torch.Tensor, count: int, seed: int = 0) -> Iterator[tuple[Any, Any]]:
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    for index in range(count):
        chosen = order[index * batch_size : (index + 1) * batch_size]
        yield images[chosen], labels[chosen]


def _report(name: str, numbers: dict[str, float], accuracy: float, seconds: float) -> None:
    print(
        f"{name}: test images {int(numbers['images'])}, agreement {numbers['agreement']:.4%}, largest logit "
        f"difference {numbers['max_difference']:.3g}, ties {int(numbers['ties'])}, source accuracy {accuracy:.2%}, "
        f"train {seconds:.0f} s"
    )


def _accuracy(run: SourceRun, images: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        logits = torch.cat([run(part)[0] for part in images.split(1024)])
    return float((logits.argmax(1) == labels[: len(logits)]).float().mean())


def train_tutorial_5(train_x: torch.Tensor, train_y: torch.Tensor) -> tuple[nn.Module, float]:
    """Tutorial 5's ``Net`` (seed 0) after the tutorial's training loop, 150 iterations; eval mode, and the
    training seconds. tests/test_interop_deploy.py compresses and exports the same network."""
    torch.manual_seed(0)
    net = Net()
    loss = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(net.parameters(), lr=5e-4, betas=(0.9, 0.999))
    start = time.perf_counter()
    for data, targets in _batches(train_x, train_y, 150):  # the tutorial's training loop, 150 iterations
        net.train()
        spk_rec, mem_rec = net(data.view(batch_size, -1))
        loss_val = torch.zeros((1), dtype=torch.float)
        for step in range(num_steps):  # noqa: B007 - as the tutorial writes it
            loss_val += loss(mem_rec[step], targets)
        optimizer.zero_grad()
        loss_val.backward()
        optimizer.step()
    return net.eval(), time.perf_counter() - start


def train_tutorial_6(train_x: torch.Tensor, train_y: torch.Tensor, form: str) -> tuple[nn.Module, float]:
    """Tutorial 6's ``Net`` (``form="class"``) or its ``nn.Sequential`` (``"sequential"``), seed 0, after the
    tutorial's loop, 100 iterations; eval mode, and the training seconds."""
    loss_fn = SF.ce_rate_loss()
    torch.manual_seed(0)
    net = Net6() if form == "class" else tutorial_6_sequential()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2, betas=(0.9, 0.999))
    start = time.perf_counter()
    for data, targets in _batches(train_x, train_y, 100):  # the tutorial's loop, 100 iterations
        net.train()
        spk_rec, _ = net(data) if form == "class" else forward_pass(net, num_steps6, data)
        loss_val = loss_fn(spk_rec, targets)
        optimizer.zero_grad()
        loss_val.backward()
        optimizer.step()
    return net.eval(), time.perf_counter() - start


def train_tutorial_7(train_frames: torch.Tensor, train_y: torch.Tensor) -> tuple[nn.Module, float]:
    """Tutorial 7's ``net`` (seed 0) after the tutorial's training loop on ``train_frames`` (:func:`nmnist_frames`)
    repeated by :func:`nmnist_steps`, ``num_iters`` 300 (the tutorial's 50 leave FashionMNIST at about 22 %);
    eval mode, and the training seconds."""
    torch.manual_seed(0)
    net = tutorial_7_net()
    optimizer = torch.optim.Adam(net.parameters(), lr=2e-2, betas=(0.9, 0.999))
    loss_fn = SF.mse_count_loss(correct_rate=0.8, incorrect_rate=0.2)
    num_iters = 300
    start = time.perf_counter()
    for i, (frames, targets) in enumerate(_batches(train_frames, train_y, num_iters + 1)):
        data = nmnist_steps(frames)
        net.train()
        spk_rec = forward_pass7(net, data)
        loss_val = loss_fn(spk_rec, targets)
        optimizer.zero_grad()
        loss_val.backward()
        optimizer.step()
        if i == num_iters:  # the tutorial's break (its num_iters is 50)
            break
    return net.eval(), time.perf_counter() - start


def train_csnn(train_x: torch.Tensor, train_y: torch.Tensor) -> tuple[nn.Module, float]:
    """SpikingJelly's ``CSNN(T=4, channels=8)`` (seed 0) after the example's loop, 150 iterations; eval mode, and
    the training seconds."""
    torch.manual_seed(0)
    net = CSNN(T=4, channels=8)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    start = time.perf_counter()
    for img, label in _batches(train_x, train_y, 150):  # the example's training loop, 150 iterations
        net.train()
        label_onehot = F.one_hot(label, 10).float()
        out_fr = net(img)
        loss = F.mse_loss(out_fr, label_onehot)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        functional.reset_net(net)
    return net.eval(), time.perf_counter() - start


@needs_snntorch
@pytest.mark.slow
def test_snntorch_tutorial_5_trained_on_fashion_mnist(datasets_root: Path) -> None:
    train_x, train_y, test_x, test_y = _fashion(datasets_root)
    net, seconds = train_tutorial_5(train_x, train_y)
    model = from_snntorch(net, (1, 28, 28))  # the loop gives T; forward() takes flattened images
    assert model.timesteps == num_steps and model.metadata["source"]["traced"]["flattened_input"]
    run = snntorch_run(net, flat=True)
    numbers = assert_equivalent(model, run, test_x, chunk=1000)
    accuracy = _accuracy(run, test_x, test_y)
    _report("snnTorch tutorial 5", numbers, accuracy, seconds)
    assert numbers["images"] == 10_000 and accuracy > 0.5  # trained: chance is 0.1
    assert_lively(numbers, model(test_x[:256]))


@needs_snntorch
@pytest.mark.slow
def test_snntorch_tutorial_6_class_and_sequential_trained_on_fashion_mnist(datasets_root: Path) -> None:
    train_x, train_y, test_x, test_y = _fashion(datasets_root)
    test_x, test_y = test_x[:9984], test_y[:9984]  # the tutorial's test loader drops the last partial batch
    for form in ("class", "sequential"):
        net, seconds = train_tutorial_6(train_x, train_y, form)
        if form == "class":  # forward() hard-codes batch_size in spk2.view(batch_size, -1)
            model = from_snntorch(net, (1, 28, 28), trace_batch=batch_size)
            run = snntorch_run(net, batch=batch_size)
        else:
            model = from_snntorch(net, (1, 28, 28), num_steps6)
            run = sequential_run(net, num_steps6)
        numbers = assert_equivalent(model, run, test_x, chunk=4 * batch_size)
        accuracy = _accuracy(run if form == "sequential" else snntorch_run(net, batch=batch_size), test_x, test_y)
        _report(f"snnTorch tutorial 6 ({form})", numbers, accuracy, seconds)
        assert accuracy > 0.5 and [layer["type"] for layer in model.spec["layers"]] == [
            "conv",
            "maxpool",
            "lif",
            "conv",
            "maxpool",
            "lif",
            "flatten",
            "linear",
            "lif",
        ]


@needs_spikingjelly
@pytest.mark.slow
def test_spikingjelly_conv_fashion_mnist_csnn_trained(datasets_root: Path) -> None:
    train_x, train_y, test_x, test_y = _fashion(datasets_root)
    net, seconds = train_csnn(train_x, train_y)
    model = from_spikingjelly(net, (1, 28, 28))
    assert model.timesteps == 4 and model.metadata["source"]["traced"]["steps"] == "multi-step"
    run = spikingjelly_run(net)
    numbers = assert_equivalent(model, run, test_x, chunk=1000)
    accuracy = _accuracy(run, test_x, test_y)
    _report("SpikingJelly CSNN", numbers, accuracy, seconds)
    assert numbers["images"] == 10_000 and accuracy > 0.5
