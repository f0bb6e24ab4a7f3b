"""from_snntorch: every mapping against snnTorch itself on real images (T = 1 and 4), and every refusal."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from torch import nn

from albsnn_compress.errors import InteropError
from albsnn_compress.interop import from_snntorch
from albsnn_compress.interop.snntorch_import import IF_TAU
from albsnn_compress.snn.recording import record_outputs
from tests.interop_check import (
    SHAPE,
    assert_equivalent,
    assert_imports_exactly,
    digit_images,
    lively_source,
    one_thread,
)

snn = pytest.importorskip("snntorch", reason="snntorch is not installed (pip install 'albsnn-compress[interop]')")
from snntorch import surrogate, utils  # noqa: E402


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return digit_images()


@pytest.fixture(autouse=True)
def single_thread() -> Iterator[None]:
    with one_thread():
        yield


def _leaky(**kwargs: Any) -> nn.Module:
    return snn.Leaky(**{"beta": 0.8, "init_hidden": True, **kwargs})


def conv_net(
    first: dict[str, Any], second: dict[str, Any], third: dict[str, Any], spike_output: bool = False
) -> nn.Sequential:
    """conv-bn-Leaky-avgpool, (nested) conv-bn-Leaky-maxpool, flatten-dropout-linear-bn-Leaky,
    linear [-bn-Leaky(output)]."""
    head: list[nn.Module] = [nn.Linear(32, 10)]
    if spike_output:
        head += [nn.BatchNorm1d(10), _leaky(output=True)]
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        _leaky(**first),
        nn.AvgPool2d(2),
        nn.Sequential(
            nn.Conv2d(8, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), _leaky(**second), nn.MaxPool2d(2)
        ),
        nn.Flatten(),
        nn.Dropout(0.2),
        nn.Linear(64, 32, bias=False),
        nn.BatchNorm1d(32),
        _leaky(**third),
        *head,
    )


def gap_net() -> nn.Sequential:
    """A global-average-pooling head: AdaptiveAvgPool2d(1) + Flatten, our gap."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding="same"),
        nn.BatchNorm2d(8),
        _leaky(),
        nn.MaxPool2d(2, 2),
        nn.Conv2d(8, 10, 1),
        nn.BatchNorm2d(10),
        _leaky(beta=0.5),
        nn.Conv2d(10, 10, 1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )


def _channels(low: float, high: float, shape: tuple[int, ...], exact_one: bool = False) -> torch.Tensor:
    values = torch.empty(shape).uniform_(low, high, generator=torch.Generator().manual_seed(3))
    if exact_one:
        values.view(-1)[0] = 1.0  # an IF channel
    return values


def _learned(value: torch.Tensor) -> Callable[[nn.Module], None]:
    def set_beta(net: nn.Module) -> None:
        with torch.no_grad():
            net[2].beta.copy_(value)  # as if training had moved it

    return set_beta


CASES: list[tuple[str, Callable[[], nn.Sequential]]] = [
    ("beta-scalar-subtract", lambda: conv_net({}, {"beta": 0.6}, {"beta": 0.9})),
    (
        "beta-learned",
        lambda: conv_net({"beta": 0.7, "learn_beta": True, "learn_threshold": True}, {"learn_beta": True}, {}),
    ),
    (
        "beta-per-channel",
        lambda: conv_net(
            {"beta": _channels(0.2, 0.95, (8, 1, 1), exact_one=True), "learn_beta": True},
            {"beta": _channels(0.0, 1.0, (16, 1, 1))},
            {"beta": _channels(0.5, 0.99, (32,))},
        ),
    ),
    (
        "threshold",
        lambda: conv_net(
            {"threshold": 0.6},
            {"threshold": _channels(0.5, 1.5, (16, 1, 1)), "learn_threshold": True},
            {"threshold": _channels(0.7, 1.2, (32,))},
        ),
    ),
    (
        "reset-zero",
        lambda: conv_net({"reset_mechanism": "zero"}, {"reset_mechanism": "zero"}, {"reset_mechanism": "zero"}),
    ),
    (
        "reset-zero-no-delay",
        lambda: conv_net(
            {"reset_mechanism": "zero", "reset_delay": False}, {}, {"reset_mechanism": "zero", "reset_delay": False}
        ),
    ),
    (
        "reset-none",
        lambda: conv_net({"reset_mechanism": "none"}, {"reset_mechanism": "none", "reset_delay": False}, {}),
    ),
    ("beta-1-is-IF", lambda: conv_net({"beta": 1.0}, {"beta": 1.0, "reset_mechanism": "zero"}, {"beta": 0.0})),
    ("spike-output", lambda: conv_net({}, {}, {}, spike_output=True)),
    (
        "surrogate-disable-and-fast-sigmoid",
        lambda: conv_net(
            {"surrogate_disable": True},
            {"spike_grad": surrogate.fast_sigmoid()},
            {"spike_grad": surrogate.triangular()},
        ),
    ),
    ("gap-head", gap_net),
]


def _run_snntorch(net: nn.Module, timesteps: int) -> Callable[[torch.Tensor], tuple[torch.Tensor, list[torch.Tensor]]]:
    """snnTorch's own loop: reset, then the same images at each step; the time-mean output and each Leaky's spikes."""
    leakies = [m for m in net.modules() if isinstance(m, snn.Leaky)]

    def run(images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        with record_outputs(leakies) as steps:  # the spikes of (spikes, membrane) for an output=True Leaky
            utils.reset(net)
            outputs = [net(images) for _ in range(timesteps)]
        outputs = [out[0] if isinstance(out, tuple) else out for out in outputs]
        return torch.stack(outputs).mean(0), [torch.stack(leaky_steps) for leaky_steps in steps]

    return run


def _source(factory: Callable[[], nn.Sequential], images: torch.Tensor) -> nn.Sequential:
    return lively_source(factory, _run_snntorch, images)


@pytest.mark.parametrize("timesteps", [1, 4])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_imported_model_computes_what_snntorch_computes(
    case: tuple[str, Callable[[], nn.Sequential]], timesteps: int, images: torch.Tensor
) -> None:
    net = _source(case[1], images)
    if case[0] == "beta-learned":
        _learned(torch.tensor(0.8731))(net)
    assert_imports_exactly(net, from_snntorch, _run_snntorch, timesteps, images)


def test_mappings_are_the_documented_settings(images: torch.Tensor) -> None:
    net = _source(CASES[2][1], images)  # per-channel beta, one channel exactly 1
    model = from_snntorch(net, SHAPE, 4)
    lif1, lif2, lif3 = (m for m in model.layers if type(m).__name__ == "LIF")
    beta = net[2].beta.detach().double().view(-1)
    expected = torch.where(beta >= 1, torch.tensor(IF_TAU, dtype=torch.float64), 1 / (1 - beta)).float()
    assert torch.equal(lif1.tau.view(-1), expected) and lif1.tau.shape == (8, 1, 1) and lif3.tau.shape == (32,)
    assert lif1.reset == "soft_deferred" and lif1.strict_threshold and not lif1.decay_input and lif1.v_reset == 0.0
    assert model.spec["layers"][2]["per_channel"] == ["tau"]
    # weights copied unchanged, batch-norm statistics too
    assert torch.equal(model.layers.conv1.weight, net[0].weight) and torch.equal(model.layers.conv1.bias, net[0].bias)
    assert torch.equal(model.layers.bn1.running_var, net[1].running_var)
    assert model.metadata["layers"]["conv2"] == "4.0" and model.metadata["source"]["framework"] == "snntorch"
    reset = from_snntorch(_source(CASES[4][1], images), SHAPE, 1)
    assert {m.reset for m in reset.layers if type(m).__name__ == "LIF"} == {"hard"}


def test_beta_one_maps_to_if_and_zero_to_tau_one(images: torch.Tensor) -> None:
    model = from_snntorch(_source(CASES[7][1], images), SHAPE, 4)
    lifs = [m for m in model.layers if type(m).__name__ == "LIF"]
    assert [m.leak for m in lifs] == [False, False, True] and lifs[2].tau == 1.0


def test_mean_and_std_apply_the_training_normalization(images: torch.Tensor) -> None:
    net = _source(CASES[0][1], images)
    model = from_snntorch(net, SHAPE, 4, mean=0.3, std=[0.4])
    run = _run_snntorch(net, 4)
    numbers = assert_equivalent(model, lambda x: run((x - 0.3) / 0.4), images)
    assert numbers["agreement"] == 1.0


def test_subtract_without_reset_delay_is_no_albsnn_reset() -> None:
    """Why it is refused: snnTorch 1.0 decides the spike on U - R*threshold but keeps U.

    Inputs 3.5, 0.625, 0.75 with beta 0.5: U1 = 3.5 - 1 = 2.5 stays above the threshold, so step 2
    fires on 1.25 + 0.625 - 1 = 0.875 (no) and keeps U2 = 1.875, and step 3 on 0.9375 + 0.75 - 1
    (no): spikes 1, 0, 0, which no albsnn reset rule gives.
    """
    from albsnn_compress.snn.neurons import LIF

    leaky = snn.Leaky(beta=0.5, init_hidden=True, reset_delay=False)
    leaky.reset_mem()
    x = torch.tensor([[3.5], [0.625], [0.75]])
    theirs = torch.stack([leaky(step) for step in x]).flatten().tolist()
    ours = {
        reset: LIF(tau=2.0, decay_input=False, strict_threshold=True, reset=reset)(x).flatten().tolist()
        for reset in ("soft", "soft_deferred", "hard", "none")
    }
    assert theirs == [1.0, 0.0, 0.0], theirs
    assert ours == {
        "soft": [1.0, 1.0, 1.0],
        "soft_deferred": [1.0, 1.0, 0.0],
        "hard": [1.0, 0.0, 1.0],
        "none": [1.0, 1.0, 1.0],
    }


# -- refusals ---------------------------------------------------------------------------------


class Wrapper(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + 1


class MyLeaky(snn.Leaky):
    pass


def _mlp(*middle: nn.Module, head: int = 10) -> nn.Sequential:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), *middle, nn.Linear(32, head))


REFUSALS: list[tuple[str, Callable[[], nn.Module], str]] = [
    (
        "synaptic",
        lambda: _mlp(snn.Synaptic(alpha=0.9, beta=0.8, init_hidden=True)),
        r"module 2 \(Synaptic\): a second-order neuron",
    ),
    (
        "rleaky",
        lambda: _mlp(snn.RLeaky(beta=0.8, linear_features=32, init_hidden=True)),
        r"module 2 \(RLeaky\): a recurrent neuron",
    ),
    ("init-hidden-false", lambda: _mlp(snn.Leaky(beta=0.8)), "init_hidden=False"),
    ("inhibition", lambda: _mlp(_leaky(inhibition=True)), "inhibition=True"),
    ("state-quant", lambda: _mlp(_leaky(state_quant=lambda mem: mem.round())), "state_quant"),
    ("graded-spikes", lambda: _mlp(_leaky(graded_spikes_factor=0.5)), r"graded_spikes_factor 0.5"),
    ("output-not-last", lambda: _mlp(_leaky(output=True)), "output=True returns"),
    ("subtract-no-delay", lambda: _mlp(_leaky(reset_delay=False)), "reset_delay=False: snnTorch then fires"),
    (
        "spike-grad-not-step",
        lambda: _mlp(_leaky(spike_grad=torch.sigmoid)),
        r"spike_grad does not compute the step 1\[x > 0\]",
    ),
    (
        "beta-along-width",
        lambda: nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), _leaky(beta=torch.linspace(0.1, 0.9, 8)), nn.Flatten(), nn.Linear(512, 10)
        ),
        r"beta of shape \[8\] varies over positions on membrane \[8, 8, 8\]",
    ),
    ("threshold-per-neuron", lambda: _mlp(_leaky(threshold=torch.rand(4, 8) + 0.5)), "threshold of shape"),
    ("subclass", lambda: _mlp(MyLeaky(beta=0.8, init_hidden=True)), "subclass of Leaky"),
    (
        "relu",
        lambda: nn.Sequential(nn.Flatten(), nn.ReLU(), nn.Linear(64, 10)),
        r"module 1 \(ReLU\): no albsnn layer computes it",
    ),
    (
        "not-a-chain",
        Wrapper,
        r"forward\(\) of Wrapper: its output is Tensor.add\(\.\.\.\) of module body \(Sequential\): an unsupported",
    ),
    ("dilation", lambda: nn.Sequential(nn.Conv2d(1, 4, 3, dilation=2), nn.Flatten(), nn.Linear(64, 10)), "dilation"),
    ("non-square", lambda: nn.Sequential(nn.Conv2d(1, 4, (3, 1)), nn.Flatten(), nn.Linear(192, 10)), "not square"),
    (
        "reflect-padding",
        lambda: nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, padding_mode="reflect"), nn.Flatten(), nn.Linear(256, 10)),
        "padding_mode",
    ),
    (
        "pool-padding",
        lambda: nn.Sequential(nn.AvgPool2d(2, padding=1), nn.Flatten(), nn.Linear(25, 10)),
        r"padding 1 \(only 0 maps\)",
    ),
    (
        "ceil-mode",
        lambda: nn.Sequential(nn.MaxPool2d(3, ceil_mode=True), nn.Flatten(), nn.Linear(9, 10)),
        "ceil_mode=True adds a partial window",
    ),
    (
        "bn-batch-stats",
        lambda: nn.Sequential(
            nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4, track_running_stats=False), nn.Flatten(), nn.Linear(144, 10)
        ),
        "track_running_stats=False",
    ),
    (
        "adaptive-2",
        lambda: nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(4, 10)),
        r"only AdaptiveAvgPool2d\(1\) directly followed by Flatten",
    ),
    (
        "linear-width",
        lambda: nn.Sequential(nn.Flatten(), nn.Linear(65, 10)),
        "takes 65 input features, the layers before give 64",
    ),
    (
        "conv-channels",
        lambda: nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(144, 10)),
        "takes 3 input channels",
    ),
    ("ends-in-maps", lambda: nn.Sequential(nn.Conv2d(1, 10, 3), _leaky()), r"outputs per-sample shape \[10, 6, 6\]"),
    ("empty", nn.Sequential, "holds no module"),
]


@pytest.mark.filterwarnings("ignore:Inhibition is an unstable feature")
@pytest.mark.parametrize("case", REFUSALS, ids=[c[0] for c in REFUSALS])
def test_refusals_name_the_module_and_what_is_supported(case: tuple[str, Callable[[], nn.Module], str]) -> None:
    net = case[1]()
    with pytest.raises(InteropError, match=case[2]) as info:
        from_snntorch(net, SHAPE, 4)
    message = str(info.value)
    assert "\n" not in message
    if case[0] == "not-a-chain":  # a model class is traced: the refusal lists what a traced forward() may hold
        assert "supported: a model class whose forward() runs" in message
    elif case[0] not in ("ends-in-maps",):
        assert "supported: nn.Sequential of Conv2d" in message


def test_bad_arguments_are_refused() -> None:
    net = _mlp(_leaky())
    with pytest.raises(InteropError, match=r"input_shape must be three positive integers \(C, H, W\) or one \(F,\)"):
        from_snntorch(net, (8, 8), 4)
    with pytest.raises(InteropError, match="std must be one or 1 positive numbers"):
        from_snntorch(net, SHAPE, 4, std=0.0)
    with pytest.raises(InteropError, match=r"expected \[12\]"):
        from_snntorch(net, SHAPE, 4, num_classes=12)
    with pytest.raises(InteropError, match="timesteps must be an integer >= 1"):
        from_snntorch(net, SHAPE, 0)


def test_refusal_comes_before_any_model_is_built(monkeypatch: pytest.MonkeyPatch) -> None:
    import albsnn_compress.interop.chain as chain

    def no_build(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("a model was built before the refusal")

    monkeypatch.setattr(chain, "SpikingNet", no_build)
    monkeypatch.setattr(chain, "normalize_spec", no_build)
    with pytest.raises(InteropError, match="Synaptic"):
        from_snntorch(_mlp(_leaky(), nn.Linear(32, 32), snn.Synaptic(alpha=0.9, beta=0.8, init_hidden=True)), SHAPE, 4)


@pytest.mark.parametrize(("shift", "ties"), [(2e-5, True), (0.05, False)])
def test_the_tie_check_tells_ties_from_wrong_thresholds(images: torch.Tensor, shift: float, ties: bool) -> None:
    """The equivalence check has teeth: thresholds moved by rounding-sized amounts flip only ties; 0.05 is caught."""
    net = _source(CASES[0][1], images)
    model = from_snntorch(net, SHAPE, 4)
    for lif in (m for m in model.layers if type(m).__name__ == "LIF"):
        lif.v_threshold += shift
    if ties:
        assert assert_equivalent(model, _run_snntorch(net, 4), images)["ties"] > 0
    else:
        with pytest.raises(AssertionError, match="away from the threshold"):
            assert_equivalent(model, _run_snntorch(net, 4), images)
