"""NIR import: our files round-trip exactly; SpikingJelly's and snnTorch's exports read as the networks they are
(agreement on real digits, T = 1 and 4), then compress; every mapping of NIR's API; every refusal, with match=."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

nir = pytest.importorskip("nir")
h5py = pytest.importorskip("h5py")

from albsnn_compress import export_nir, read_nir  # noqa: E402
from albsnn_compress.binarize import binarize_, binarized_layers, candidate_layers  # noqa: E402
from albsnn_compress.data import load_split, load_splits  # noqa: E402
from albsnn_compress.errors import NirError  # noqa: E402
from albsnn_compress.formats.nir.chain import chain_of  # noqa: E402
from albsnn_compress.formats.nir.check import (  # noqa: E402
    compare,
    snntorch_model_runner,
    snntorch_runner,
    spikingjelly_model_runner,
    spikingjelly_runner,
)
from albsnn_compress.formats.nir.mapping import DT  # noqa: E402
from albsnn_compress.formats.nir.options import ReadOptions, resolve_options  # noqa: E402
from albsnn_compress.formats.nir.write import build_nir_graph, fold_batch_norm  # noqa: E402
from albsnn_compress.search import SearchConfig, compress  # noqa: E402
from albsnn_compress.snn.spec import SpikingNet  # noqa: E402
from albsnn_compress.training.train_model import resolve_architecture  # noqa: E402
from tests.clihelp import run_cli  # noqa: E402


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits() -> torch.Tensor:
    return load_split("digits", None, "test").as_float()


@pytest.fixture(scope="module")
def splits() -> dict[str, Any]:
    return load_splits("digits", None)


def _tensors(model: SpikingNet) -> dict[str, torch.Tensor]:
    """Every stored tensor, a binarized layer's weight as its effective ``alpha * sign`` (what NIR and the container
    keep: the latent weights of training are not part of the model a file holds)."""
    tensors = {k: v for k, v in model.state_dict().items() if "parametrizations" not in k}
    tensors.update({f"{name}.weight": model.get_submodule(name).weight.detach() for name in binarized_layers(model)})
    return tensors


def _equal_models(a: SpikingNet, b: SpikingNet, images: torch.Tensor) -> None:
    assert a.spec == b.spec and a.timesteps == b.timesteps
    assert binarized_layers(a) == binarized_layers(b)
    sa, sb = _tensors(a), _tensors(b)
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    with torch.inference_mode():
        assert torch.equal(a(images), b(images))


def _assert_agrees(model: SpikingNet, runner: Any, images: torch.Tensor) -> None:
    agreement = compare(model, runner, images)
    assert agreement.prediction_agreement >= 0.999 and not agreement.unexplained, agreement.to_dict()
    assert agreement.max_logit_diff_untied <= 1e-4, agreement.to_dict()


# -- our own files: the round trip ----------------------------------------------------------------------


def _no_bn_spec(**neuron: Any) -> dict[str, Any]:
    spec = resolve_architecture("digits-small", "digits")
    spec["neuron"] = {**spec.get("neuron", {}), **neuron}
    spec["layers"] = [layer for layer in spec["layers"] if layer["type"] != "bn"]
    spec["layers"][1]["neuron"] = {
        "tau": 3.0,
        "surrogate": {"name": "rectangular", "width": 0.5},
    }  # a per-layer override
    spec["layers"][3]["per_channel"] = ["tau", "v_threshold"]
    return spec


@pytest.mark.parametrize(
    "neuron",
    [{}, {"decay_input": False, "v_reset": 0.1, "tau": 1.7}, {"leak": False}, {"strict_threshold": True}],
    ids=["lif", "state-decay", "if", "strict"],
)
def test_our_file_reads_back_as_the_same_model(neuron: dict[str, Any], digits: torch.Tensor, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = SpikingNet(_no_bn_spec(**neuron), 3)
    with torch.no_grad():
        model.layers.lif2.tau.copy_(torch.rand(32, 1, 1) * 3 + 1)
        model.layers.lif2.v_threshold.copy_(torch.rand(32, 1, 1) + 0.5)
        for conv in (model.layers.conv1, model.layers.conv2, model.layers.conv3):
            conv.weight.mul_(4)
    binarize_(model, candidate_layers(model))
    export_nir(model, tmp_path / "m.nir")
    _equal_models(read_nir(tmp_path / "m.nir"), model.eval(), digits)


def test_batch_norm_comes_back_folded_and_the_file_is_a_fixed_point(digits: torch.Tensor, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = SpikingNet(resolve_architecture("digits-fc", "digits"), 2)
    binarize_(model, candidate_layers(model))
    model.eval()
    export_nir(model, tmp_path / "a.nir")
    back = read_nir(tmp_path / "a.nir")
    folded, _ = fold_batch_norm(model)
    _equal_models(back, folded, digits)
    export_nir(back, tmp_path / "b.nir")
    export_nir(folded, tmp_path / "c.nir")
    assert (tmp_path / "b.nir").read_bytes() == (tmp_path / "c.nir").read_bytes()
    assert read_nir(tmp_path / "a.nir", timesteps=5).timesteps == 5


def test_our_file_refuses_a_second_normalization_and_tampered_binary_weights(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = SpikingNet(resolve_architecture("digits-small", "digits"), 1)
    binarize_(model, candidate_layers(model))
    export_nir(model.eval(), tmp_path / "m.nir")
    with pytest.raises(NirError, match=r"normalizes its input itself \(node 'input_norm'\); leave mean and std unset"):
        read_nir(tmp_path / "m.nir", mean=[0.5])
    graph = nir.read(tmp_path / "m.nir")
    graph.nodes["conv2"].weight[0, 0, 0, 0] *= 1.5
    nir.write(tmp_path / "bad.nir", graph)
    with pytest.raises(
        NirError, match=r"node 'conv2' \(Conv2d\): metadata albsnn_binary says the weights are scale\[c\] \* \(\+-1\)"
    ):
        read_nir(tmp_path / "bad.nir")


# -- SpikingJelly's export_to_nir ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sj_net(splits: dict[str, Any]) -> nn.Module:
    """A SpikingJelly conv net (decay_input on and off, a bias-free conv), trained 2 epochs on digits at T=4."""
    pytest.importorskip("spikingjelly")
    from spikingjelly.activation_based import functional, layer, neuron

    torch.manual_seed(0)
    net = nn.Sequential(
        layer.Conv2d(1, 8, 3, padding=1, bias=False),
        neuron.LIFNode(tau=2.0),
        layer.AvgPool2d(2),
        layer.Conv2d(8, 16, 3, padding=1),
        neuron.LIFNode(tau=1.5, decay_input=False),
        layer.Flatten(),
        layer.Linear(16 * 4 * 4, 10),
    )
    functional.set_step_mode(net, "m")
    images, labels = splits["train"].as_float(), splits["train"].labels.long()
    optimizer = torch.optim.Adam(net.parameters(), 1e-2)
    for _ in range(2):
        for batch in torch.randperm(len(images)).split(64):
            functional.reset_net(net)
            logits = net(images[batch].unsqueeze(0).repeat(4, 1, 1, 1, 1)).mean(0)
            optimizer.zero_grad()
            nn.functional.cross_entropy(logits, labels[batch]).backward()
            optimizer.step()
    functional.reset_net(net)
    return net.eval()


def _sj_neurons(net: nn.Module) -> list[nn.Module]:
    from spikingjelly.activation_based import neuron

    return [m for m in net.modules() if isinstance(m, neuron.BaseNode)]


@pytest.mark.parametrize("timesteps", [1, 4])
def test_spikingjelly_export_reads_as_the_same_network(
    sj_net: nn.Module, timesteps: int, digits: torch.Tensor, tmp_path: Path
) -> None:
    from spikingjelly.activation_based.nir_exchange import export_to_nir

    export_to_nir(sj_net, torch.rand(timesteps, 1, 1, 8, 8), save_path=tmp_path / "sj.nir")
    model = read_nir(tmp_path / "sj.nir", timesteps=timesteps, strict_threshold=False)  # SpikingJelly fires on >=
    assert [layer["type"] for layer in model.spec["layers"]] == [
        "conv",
        "lif",
        "avgpool",
        "conv",
        "lif",
        "flatten",
        "linear",
    ]
    assert model.spec["layers"][0]["bias"] is False and model.spec["layers"][3]["bias"] is True
    lif1, lif2 = model.spec["layers"][1]["neuron"], model.spec["layers"][4]["neuron"]
    assert (lif1["tau"], lif1["decay_input"], lif2["tau"], lif2["decay_input"]) == (2.0, True, 1.5, False)
    _assert_agrees(model, spikingjelly_model_runner(sj_net, timesteps, _sj_neurons(sj_net)), digits)


def test_spikingjelly_network_compresses_and_goes_back_to_spikingjelly(
    sj_net: nn.Module, splits: dict[str, Any], digits: torch.Tensor, tmp_path: Path
) -> None:
    """SpikingJelly -> its export_to_nir -> read_nir -> compress (all, short finetune) -> our NIR -> SpikingJelly."""
    from spikingjelly.activation_based.nir_exchange import export_to_nir

    export_to_nir(sj_net, torch.rand(4, 1, 1, 8, 8), save_path=tmp_path / "sj.nir")
    model = read_nir(tmp_path / "sj.nir", timesteps=4, strict_threshold=False)
    _assert_agrees(model, spikingjelly_model_runner(sj_net, 4, _sj_neurons(sj_net)), digits)
    result = compress(
        model,
        splits["train"],
        splits["val"],
        100.0,
        config=SearchConfig(strategy="all", epochs=0.3, batch_size=64, seed=0),
    )
    assert result.binarized == ["layers.conv2"]  # every candidate (first and last stay float)
    export_nir(result.model, tmp_path / "compressed.nir")
    _assert_agrees(result.model, spikingjelly_runner(tmp_path / "compressed.nir", 4), digits)


# -- snnTorch's export_to_nir ------------------------------------------------------------------------------


def _leaky(shape: tuple[int, ...], beta: float, **kwargs: Any) -> nn.Module:
    """``snn.Leaky`` with per-neuron beta and threshold tensors: what snnTorch 1.0.0's export needs to pass nir 1.0.8's
    checks."""
    import snntorch as snn

    return snn.Leaky(
        beta=torch.full(shape, beta),
        threshold=torch.full(shape, 1.0),
        init_hidden=True,
        reset_mechanism="zero",
        **kwargs,
    )


@pytest.fixture(scope="module")
def snn_net(splits: dict[str, Any]) -> nn.Module:
    """An snnTorch conv net trained 2 epochs on digits at T=4."""
    pytest.importorskip("snntorch")
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        _leaky((8, 8, 8), 0.5),
        nn.AvgPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        _leaky((16, 4, 4), 0.7),
        nn.Flatten(),
        nn.Linear(256, 10),
    )
    images, labels = splits["train"].as_float(), splits["train"].labels.long()
    optimizer = torch.optim.Adam(net.parameters(), 1e-2)
    neurons = [m for m in net.modules() if hasattr(m, "reset_mem")]
    for _ in range(2):
        for batch in torch.randperm(len(images)).split(64):
            for neuron in neurons:
                neuron.reset_mem()
            logits = torch.stack([net(images[batch]) for _ in range(4)]).mean(0)
            optimizer.zero_grad()
            nn.functional.cross_entropy(logits, labels[batch]).backward()
            optimizer.step()
    return net.eval()


@pytest.mark.filterwarnings("ignore:nirtorch.extract_nir_graph is being deprecated:DeprecationWarning")
@pytest.mark.parametrize("timesteps", [1, 4])
def test_snntorch_export_reads_as_the_same_network(
    snn_net: nn.Module, timesteps: int, digits: torch.Tensor, tmp_path: Path
) -> None:
    from snntorch.export_nir import export_to_nir

    nir.write(tmp_path / "snn.nir", export_to_nir(snn_net, torch.rand(1, 1, 8, 8), ignore_dims=[0]))
    model = read_nir(tmp_path / "snn.nir", timesteps=timesteps)  # NIR's (and snnTorch's) v > v_th
    lif = model.spec["layers"][1]["neuron"]
    assert (
        lif["decay_input"] is False and lif["strict_threshold"] is True and lif["tau"] == pytest.approx(2.0, rel=1e-6)
    )
    _assert_agrees(model, snntorch_model_runner(snn_net, timesteps), digits)


@pytest.mark.filterwarnings("ignore:nirtorch.extract_nir_graph is being deprecated:DeprecationWarning")
def test_snntorch_walls_on_todays_releases(sj_net: nn.Module, tmp_path: Path) -> None:
    """What docs/nir.md says fails with snntorch 1.0.0 + nir 1.0.8: a scalar beta, and a scalar kernel_size."""
    import snntorch as snn
    from snntorch.export_nir import export_to_nir
    from snntorch.import_nir import import_from_nir
    from spikingjelly.activation_based.nir_exchange import export_to_nir as sj_export

    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), snn.Leaky(beta=0.9, init_hidden=True), nn.Linear(32, 10))
    with pytest.raises(ValueError, match=r"type mismatch: 1.output: \[\[32\]\] -> 2.input: \[\]"):
        export_to_nir(net, torch.rand(1, 1, 8, 8))
    graph = sj_export(sj_net, torch.rand(1, 1, 1, 8, 8))
    with pytest.raises(TypeError, match="'int' object is not iterable"):
        import_from_nir(graph)


# -- graphs built with NIR's API ---------------------------------------------------------------------------


def _conv(channels_in: int, channels_out: int, seed: int, size: int = 8, **kwargs: Any) -> nir.Conv2d:
    rng = np.random.default_rng(seed)
    kwargs = {"stride": (1, 1), "padding": (1, 1), "dilation": (1, 1), "groups": 1, **kwargs}
    return nir.Conv2d(
        input_shape=(size, size),
        weight=rng.normal(0, 0.6, (channels_out, channels_in, 3, 3)).astype(np.float32),
        bias=rng.normal(0.3, 0.1, channels_out).astype(np.float32),
        **kwargs,
    )


def _lif(
    shape: tuple[int, ...], tau: float = 2.0, r: Any = 1.0, v_leak: float = 0.0, v_reset: float = 0.0, **kwargs: Any
) -> nir.LIF:
    full = lambda value: np.broadcast_to(np.asarray(value, dtype=np.float64), shape).copy()  # noqa: E731
    return nir.LIF(
        tau=full(tau * DT),
        r=full(r),
        v_leak=full(v_leak),
        v_threshold=full(kwargs.get("v_threshold", 1.0)),
        v_reset=full(v_reset),
    )


def _chain(*nodes: nir.NIRNode, input_shape: tuple[int, ...] = (1, 8, 8)) -> nir.NIRGraph:
    named = {"input": nir.Input(input_type=np.array(input_shape))}
    named.update({f"n{i}": node for i, node in enumerate(nodes)})
    named["output"] = nir.Output(output_type=np.array([10]))
    names = list(named)
    try:  # NIR's inference fills the shapes nir.write needs (conv input_shape, flatten input_type)
        return nir.NIRGraph(nodes=named, edges=list(zip(names, names[1:])), type_check=True)
    except (ValueError, AssertionError, TypeError, IndexError):  # a graph made to be refused
        return nir.NIRGraph(nodes=named, edges=list(zip(names, names[1:])), type_check=False)


def _head(channels: int, size: int) -> list[nir.NIRNode]:
    rng = np.random.default_rng(9)
    return [
        nir.Flatten(input_type=np.array([channels, size, size]), start_dim=0),
        nir.Affine(
            weight=rng.normal(0, 0.3, (10, channels * size * size)).astype(np.float32), bias=np.zeros(10, np.float32)
        ),
    ]


def _write(graph: nir.NIRGraph, path: Path) -> Path:
    nir.write(path, graph)
    return path


@pytest.mark.parametrize(
    "node, expected",
    [
        (_lif((4, 8, 8), tau=2.5, r=1.0), {"leak": True, "decay_input": True, "tau": 2.5}),
        (_lif((4, 8, 8), tau=2.5, r=2.5, v_leak=0.2, v_reset=0.2), {"decay_input": False, "tau": 2.5, "v_reset": 0.2}),
        (
            nir.IF(r=np.full((4, 8, 8), 1 / DT), v_threshold=np.full((4, 8, 8), 0.7)),
            {"leak": False, "v_threshold": 0.7},
        ),
        (
            nir.CubaLIF(
                tau_syn=np.full((4, 8, 8), DT),
                tau_mem=np.full((4, 8, 8), 3 * DT),
                r=np.full((4, 8, 8), 3.0),
                v_leak=np.zeros((4, 8, 8)),
                v_threshold=np.ones((4, 8, 8)),
                w_in=np.ones((4, 8, 8)),
            ),
            {"leak": True, "decay_input": False, "tau": 3.0},
        ),
    ],
    ids=["lif-r1", "lif-r-tau", "if", "cubalif-one-step-current"],
)
def test_neuron_nodes_map_by_the_dt_convention(node: nir.NIRNode, expected: dict[str, Any], tmp_path: Path) -> None:
    graph = _chain(_conv(1, 4, 0), node, *_head(4, 8))
    model = read_nir(_write(graph, tmp_path / "g.nir"), timesteps=2)
    settings = model.spec["layers"][1]["neuron"]
    assert {key: settings[key] for key in expected} == pytest.approx(expected)
    assert settings["strict_threshold"] is True and settings["reset"] == "hard"  # NIR's v > v_th, reset to v_reset
    assert (
        read_nir(tmp_path / "g.nir", timesteps=2, strict_threshold=False).spec["layers"][1]["neuron"][
            "strict_threshold"
        ]
        is False
    )


def test_a_grouped_conv_reads_as_one(digits: torch.Tensor, tmp_path: Path) -> None:
    """NIR's type check miscounts a grouped conv's input channels (nir 1.0.8), so such files come without it; read_nir
    takes the groups as given and computes torch's grouped convolution."""
    conv = _conv(2, 4, 0, groups=2)
    conv.weight = conv.weight[:, :1]  # [4, 2/2, 3, 3]
    norm = nir.Conv2d(
        input_shape=(8, 8),
        weight=np.ones((2, 1, 1, 1), np.float32),
        bias=np.zeros(2, np.float32),
        stride=(1, 1),
        padding=(0, 0),
        dilation=(1, 1),
        groups=1,
    )
    graph = _chain(norm, conv, *_head(4, 8))
    model = read_nir(_write(graph, tmp_path / "g.nir"), timesteps=1)
    assert model.spec["layers"][1]["groups"] == 2
    x = digits[:16]
    expected = nn.functional.conv2d(
        nn.functional.conv2d(x, torch.from_numpy(norm.weight)),
        torch.from_numpy(conv.weight),
        torch.from_numpy(conv.bias),
        padding=1,
        groups=2,
    )
    expected = expected.flatten(1) @ torch.from_numpy(graph.nodes["n3"].weight).T
    with torch.inference_mode():
        torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)


def test_per_channel_parameters_become_buffers(tmp_path: Path) -> None:
    tau = np.linspace(1.5, 3.0, 4).reshape(4, 1, 1) * np.ones((4, 8, 8))
    graph = _chain(_conv(1, 4, 0), _lif((4, 8, 8), tau=tau, r=1.0), *_head(4, 8))
    model = read_nir(_write(graph, tmp_path / "g.nir"), timesteps=1)
    assert model.spec["layers"][1]["per_channel"] == ["tau"]
    np.testing.assert_allclose(model.layers[1].tau.flatten().numpy(), np.linspace(1.5, 3.0, 4), rtol=1e-6)


@pytest.mark.parametrize("neuron_follows", [False, True], ids=["conv-follows", "neuron-follows"])
def test_sum_pooling_folds_its_window_exactly(neuron_follows: bool, digits: torch.Tensor, tmp_path: Path) -> None:
    """SumPool2d = 4 x AvgPool2d(2): folded into the next conv (or, before a neuron, the conv before); snnTorch
    (which runs SumPool2d through nirtorch's LPPool2d) agrees on real digits."""
    pytest.importorskip("snntorch")
    pool = nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0]))
    if neuron_follows:
        nodes = [_conv(1, 4, 0), pool, _lif((4, 4, 4)), *_head(4, 4)]
    else:
        nodes = [_conv(1, 4, 0), _lif((4, 8, 8)), pool, _conv(4, 6, 1, size=4), _lif((6, 4, 4)), *_head(6, 4)]
    model = read_nir(_write(_chain(*nodes), tmp_path / "g.nir"), timesteps=4)
    assert [layer["type"] for layer in model.spec["layers"]].count("avgpool") == 1
    _assert_agrees(model, snntorch_runner(tmp_path / "g.nir", 4), digits[:100])


def _subgraph() -> nir.NIRGraph:
    return nir.NIRGraph(
        nodes={"i": nir.Input(input_type=np.array([4])), "o": nir.Output(output_type=np.array([4]))},
        edges=[("i", "o")],
        type_check=False,
    )


BAD_GRAPHS = {
    "delay": (
        lambda: _chain(_conv(1, 4, 0), nir.Delay(delay=np.ones(4)), *_head(4, 8)),
        r"node 'n1' is a Delay, which has no layer here; supported: \['Input'",
    ),
    "threshold": (
        lambda: _chain(_conv(1, 4, 0), nir.Threshold(threshold=np.ones((4, 8, 8))), *_head(4, 8)),
        r"node 'n1' is a Threshold",
    ),
    "scale": (
        lambda: _chain(_conv(1, 4, 0), nir.Scale(scale=np.ones((4, 8, 8))), *_head(4, 8)),
        r"node 'n1' is a Scale",
    ),
    "leaky-integrator": (
        lambda: _chain(_conv(1, 4, 0), nir.LI(tau=np.ones(4), r=np.ones(4), v_leak=np.zeros(4)), *_head(4, 8)),
        r"node 'n1' is a LI",
    ),
    "subgraph": (
        lambda: _chain(_conv(1, 4, 0), _subgraph(), *_head(4, 8)),
        r"node 'n1' is a subgraph \(NIRGraph, e.g. a recurrent layer\)",
    ),
    "strided-flatten": (
        lambda: _chain(_conv(1, 4, 0), nir.Flatten(input_type=np.array([4, 8, 8]), start_dim=1), _head(4, 8)[1]),
        r"node 'n1' \(Flatten\): start_dim=1, end_dim=-1 keeps some axes",
    ),
    "padded-pool": (
        lambda: _chain(
            _conv(1, 4, 0),
            nir.AvgPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([1, 1])),
            *_head(4, 5),
        ),
        r"node 'n1' \(AvgPool2d\): padded pooling is not supported",
    ),
    "dilation": (
        lambda: _chain(_conv(1, 4, 0, dilation=(2, 2)), *_head(4, 8)),
        r"node 'n0' \(Conv2d\): dilation other than 1",
    ),
    "strides-differ": (lambda: _chain(_conv(1, 4, 0, stride=(1, 2)), *_head(4, 8)), r"stride \[1, 2\] differs by axis"),
    "input-gain": (
        lambda: _chain(_conv(1, 4, 0), _lif((4, 8, 8), tau=2.0, r=0.5), *_head(4, 8)),
        r"node 'n1' \(LIF\): r must be 1 .* or tau/dt",
    ),
    "leak-potential": (
        lambda: _chain(_conv(1, 4, 0), _lif((4, 8, 8), v_leak=0.3), *_head(4, 8)),
        r"v_leak 0.3 differs from v_reset 0",
    ),
    "short-tau": (lambda: _chain(_conv(1, 4, 0), _lif((4, 8, 8), tau=0.5), *_head(4, 8)), r"tau/dt = 0.5 < 1"),
    "varies-in-channel": (
        lambda: _chain(_conv(1, 4, 0), _lif((4, 8, 8), tau=np.linspace(1.5, 2, 64).reshape(8, 8)), *_head(4, 8)),
        r"node 'n1' \(LIF\) tau/dt: varies within a channel",
    ),
    "synaptic-current": (
        lambda: _chain(
            _conv(1, 4, 0),
            nir.CubaLIF(
                tau_syn=np.full((4, 8, 8), 5 * DT),
                tau_mem=np.full((4, 8, 8), 2 * DT),
                r=np.full((4, 8, 8), 2.0),
                v_leak=np.zeros((4, 8, 8)),
                v_threshold=np.ones((4, 8, 8)),
            ),
            *_head(4, 8),
        ),
        r"tau_syn/dt = 5; a synaptic current that lasts beyond one step is a second state",
    ),
    "if-gain": (
        lambda: _chain(_conv(1, 4, 0), nir.IF(r=np.ones((4, 8, 8)), v_threshold=np.ones((4, 8, 8))), *_head(4, 8)),
        r"r \* dt = 0.0001; an IF neuron maps exactly only with r = 1/dt",
    ),
    "rank-2-input": (
        lambda: _chain(_head(4, 8)[1], input_shape=(16, 16)),
        r"node 'input' \(Input\): input shape \[16, 16\] is neither \[C, H, W\] \(images\) nor \[F\]",
    ),
    "conv-on-flat-input": (
        lambda: _chain(_conv(1, 4, 0), *_head(4, 8), input_shape=(64,)),
        r"node 'n0' \(Conv2d\): needs a \[C, H, W\] input, gets \[64\]",
    ),
    "ends-with-map": (
        lambda: _chain(_conv(1, 10, 0)),
        r"node 'output' \(Output\): the network ends with a \[10, 8, 8\] map",
    ),
    "output-shape": (
        lambda: nir.NIRGraph(
            nodes={
                "input": nir.Input(input_type=np.array([1, 8, 8])),
                "f": _head(1, 8)[0],
                "a": _head(1, 8)[1],
                "output": nir.Output(output_type=np.array([7])),
            },
            edges=[("input", "f"), ("f", "a"), ("a", "output")],
            type_check=False,
        ),
        r"node 'output' \(Output\): declares shape \[7\], the chain computes \[10\]",
    ),
}


def _branching() -> nir.NIRGraph:
    graph = _chain(_conv(1, 4, 0), _lif((4, 8, 8)), *_head(4, 8))
    graph.edges.append(("n0", "n2"))  # a residual-style skip
    return graph


def _detached() -> nir.NIRGraph:
    graph = _chain(_conv(1, 4, 0), *_head(4, 8))
    graph.nodes["stray"] = _lif((4, 8, 8))
    return graph


def _no_output() -> nir.NIRGraph:
    graph = _chain(_conv(1, 4, 0), *_head(4, 8))
    del graph.nodes["output"]
    graph.edges = [edge for edge in graph.edges if edge[1] != "output"]
    return graph


BAD_GRAPHS.update(
    {
        "branch": (
            _branching,
            r"node 'n0' has 1 inputs and 2 outputs; only chains .* no residual or recurrent connections",
        ),
        "detached": (_detached, r"nodes \['stray'\] are not on the chain from 'input' to 'output'"),
        "no-output": (
            _no_output,
            r"a chain has one Input and one Output node, found inputs \['input'\] and outputs \[\]",
        ),
    }
)


@pytest.mark.parametrize("case", sorted(BAD_GRAPHS))
def test_graphs_that_are_no_chain_of_ours_are_refused_naming_the_node(case: str, tmp_path: Path) -> None:
    build, message = BAD_GRAPHS[case]
    path = _write(build(), tmp_path / "g.nir")
    with pytest.raises(NirError, match=message) as info:
        read_nir(path, timesteps=1)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_a_foreign_file_needs_timesteps(tmp_path: Path) -> None:
    path = _write(_chain(_conv(1, 4, 0), *_head(4, 8)), tmp_path / "g.nir")
    with pytest.raises(NirError, match="does not say how many time steps it runs; pass timesteps"):
        read_nir(path)
    with pytest.raises(NirError, match=r"timesteps must be an integer in \[1, 4096\]"):
        read_nir(path, timesteps=0)
    model = read_nir(path, timesteps=1, mean=[0.5], std=[0.25])
    assert model.spec["input"]["mean"] == [0.5] and model.spec["input"]["std"] == [0.25]
    with pytest.raises(NirError, match=r"mean must list 1 numbers \(one per input channel\)"):
        read_nir(path, timesteps=1, mean=[0.5, 0.5])


# -- option resolution on its own ------------------------------------------------------------------------


def _our_graph(**metadata: Any) -> nir.NIRGraph:
    """digits-small (T=4, an input normalization) as our writer's graph, in memory, ``metadata`` changed."""
    torch.manual_seed(0)
    graph, _ = build_nir_graph(SpikingNet(resolve_architecture("digits-small", "digits"), 4).eval(), dt=2e-4)
    graph.metadata.update(metadata)
    return graph


def test_options_resolve_from_the_arguments_and_the_file(tmp_path: Path) -> None:
    """resolve_options alone, on graphs in memory (the path only names them): our writer's record, the defaults for
    other files, the caller's arguments over both, and one refusal per value that does not do."""
    path = tmp_path / "g.nir"
    foreign = _chain(_conv(1, 4, 0), *_head(4, 8))
    options = resolve_options(path, foreign, chain_of(foreign, path), timesteps=3)
    assert options == ReadOptions(
        path=path,
        ours=False,
        timesteps=3,
        dt=DT,
        strict_threshold=None,
        input_shape=(1, 8, 8),
        mean=[0.0],
        std=[1.0],
        normalization_node=None,
        name="g",
        neuron={},
    )
    asked = resolve_options(
        path, foreign, chain_of(foreign, path), timesteps=2, dt=1e-3, strict_threshold=False, mean=[0.5], std=[0.25]
    )
    assert (asked.timesteps, asked.dt, asked.strict_threshold, asked.mean, asked.std) == (2, 1e-3, False, [0.5], [0.25])

    spec = resolve_architecture("digits-small", "digits")
    ours = resolve_options(path, _our_graph(), chain_of(_our_graph(), path))
    assert (ours.ours, ours.timesteps, ours.dt, ours.name, ours.input_shape) == (True, 4, 2e-4, spec["name"], (1, 8, 8))
    assert (ours.mean, ours.std, ours.normalization_node) == (spec["input"]["mean"], spec["input"]["std"], "input_norm")
    assert ours.neuron == SpikingNet(spec, 1).spec["neuron"]
    again = resolve_options(path, _our_graph(), chain_of(_our_graph(), path), timesteps=1, dt=1e-4, name="net")
    assert (again.timesteps, again.dt, again.name) == (1, 1e-4, "net")

    flat = _chain(_head(4, 8)[1], input_shape=(16, 16))
    refusals: list[tuple[nir.NIRGraph, dict[str, Any], str]] = [
        (foreign, {}, "does not say how many time steps it runs; pass timesteps"),
        (foreign, {"timesteps": 0}, r"timesteps must be an integer in \[1, 4096\], got 0"),
        (foreign, {"timesteps": 1, "dt": 0.0}, "dt must be a positive number of seconds, got 0.0"),
        (foreign, {"timesteps": 1, "dt": float("nan")}, "dt must be a positive number of seconds, got nan"),
        (foreign, {"timesteps": 1, "strict_threshold": "yes"}, "strict_threshold must be True, False or None"),
        (foreign, {"timesteps": 1, "std": [1.0, 2.0]}, r"std must list 1 numbers \(one per input channel\)"),
        (flat, {"timesteps": 1}, r"node 'input' \(Input\): input shape \[16, 16\] is neither \[C, H, W\]"),
        (_our_graph(), {"mean": [0.5]}, r"normalizes its input itself \(node 'input_norm'\); leave mean and std unset"),
        (_our_graph(albsnn_timesteps="four"), {}, "graph metadata albsnn_timesteps must be one number, got four"),
        (_our_graph(albsnn_dt=np.ones(2)), {}, "graph metadata albsnn_dt must be one number"),
        (_our_graph(albsnn_neuron="{"), {}, "graph metadata albsnn_neuron: our writer's neuron settings are not JSON"),
        (_our_graph(albsnn_neuron='{"tau": 0.5}'), {}, "albsnn_neuron: our writer's neuron settings do not parse"),
        (_our_graph(albsnn_model=3), {}, "graph metadata albsnn_model must be a string, got 3"),
    ]
    tampered = _our_graph()
    tampered.nodes["input_norm"].metadata["albsnn_std"] = np.full(1, 0.5)
    refusals.append((tampered, {}, r"node 'input_norm' \(Conv2d\): the input normalization's weights disagree"))
    for graph, arguments, message in refusals:
        with pytest.raises(NirError, match=message) as info:
            resolve_options(path, graph, chain_of(graph, path), **arguments)
        assert str(info.value).startswith(f"{path}: ") and "\n" not in str(info.value)


# -- hostile and broken files: bounded, never unpickled ------------------------------------------------------


def _hdf5(path: Path, build: Any) -> Path:
    with h5py.File(path, "w") as handle:
        handle.create_dataset("version", data="1.0.8", dtype=h5py.string_dtype())
        build(handle)
    return path


def test_hostile_and_broken_files_are_refused(tmp_path: Path) -> None:
    canary = tmp_path / "canary"

    class Payload:
        def __reduce__(self) -> tuple[Any, ...]:
            return (open, (str(canary), "w"))

    (tmp_path / "pickle.nir").write_bytes(pickle.dumps(Payload()))
    (tmp_path / "text.nir").write_text("not a graph\n")
    cases = {
        tmp_path / "pickle.nir": r"not a NIR file \(NIR files are HDF5",
        tmp_path / "text.nir": "not a NIR file",
        tmp_path / "missing.nir": "no such file",
        _hdf5(tmp_path / "empty.nir", lambda h: None): r"an HDF5 file without a NIR graph \(no 'node' group\)",
        _hdf5(
            tmp_path / "link.nir", lambda h: h.__setitem__("node", h5py.ExternalLink("other.h5", "/node"))
        ): r"/node is a ExternalLink",
        _hdf5(
            tmp_path / "soft.nir", lambda h: (h.create_group("real"), h.__setitem__("node", h5py.SoftLink("/real")))
        ): r"/node is a SoftLink",
        _hdf5(
            tmp_path / "huge.nir",
            lambda h: h.create_group("node").create_dataset(
                "weight", shape=(1 << 28,), dtype="f8", chunks=(1 << 16,), compression="gzip"
            ),
        ): r"its arrays decode to more than 1024 MiB",
        _hdf5(
            tmp_path / "external.nir",
            lambda h: h.create_group("node").create_dataset(
                "weight", shape=(4,), dtype="f4", external=[(str(tmp_path / "raw"), 0, 16)]
            ),
        ): r"/node/weight stores its data outside the file",
    }
    good = _write(_chain(_conv(1, 4, 0), *_head(4, 8)), tmp_path / "good.nir")
    (tmp_path / "cut.nir").write_bytes(good.read_bytes()[:2000])
    cases[tmp_path / "cut.nir"] = r"not a readable HDF5 file"
    for path, message in cases.items():
        with pytest.raises(NirError, match=message):
            read_nir(path, timesteps=1)
    assert not canary.exists()
    assert (tmp_path / "huge.nir").stat().st_size < 100_000


# -- the command line ------------------------------------------------------------------------------------


def test_cli_inspect_shows_nodes_shapes_and_neuron_parameters(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = SpikingNet(resolve_architecture("digits-small", "digits"), 4)
    binarize_(model, candidate_layers(model))
    export_nir(model.eval(), tmp_path / "m.nir")
    out = run_cli(["inspect", str(tmp_path / "m.nir")]).stdout
    for text in (
        "NIR type check",
        "passes",
        "lif1",
        "LIF",
        "16x8x8",
        "tau/dt 2",
        "v_threshold 1",
        "binary",
        "gap1_flatten",
        "T=4",
    ):
        assert text in out, out
    (tmp_path / "bad.nir").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 40)
    result = run_cli(["inspect", str(tmp_path / "bad.nir")], expected_exit=2)
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1


MUTATIONS = {
    "string": lambda shape: "x",
    "empty": lambda shape: np.zeros((0,), np.float32),
    "nan": lambda shape: np.full(shape, np.nan, np.float32) if shape else np.float32(np.nan),
    "rank-5": lambda shape: np.ones((1, 1, 1, 1, 2), np.float32),
    "huge": lambda shape: np.full(shape, 1e300) if shape else 1e300,
    "negative": lambda shape: np.full(shape, -3, np.int64) if shape else np.int64(-3),
}


def test_any_damaged_field_is_one_nir_error(tmp_path: Path) -> None:
    """Every dataset of one of our files replaced by a value of the wrong kind: read_nir and inspect give a NirError
    line (or, where the value is harmless, a model), never another exception (docs: RELIABILITY's reader rules)."""
    from albsnn_compress.formats.nir.summary import nir_summary

    torch.manual_seed(0)
    export_nir(SpikingNet(resolve_architecture("digits-fc", "digits"), 1).eval(), tmp_path / "m.nir")
    with h5py.File(tmp_path / "m.nir", "r") as handle:
        keys = []
        handle.visititems(
            lambda name, item: keys.append((name, item.shape)) if isinstance(item, h5py.Dataset) else None
        )
    keys = [(name, shape) for name, shape in keys if "/nodes/" in name and not name.endswith("/type")]
    outcomes = {"refused": 0, "read": 0}
    for index, (name, shape) in enumerate(keys):
        mutation = sorted(MUTATIONS)[index % len(MUTATIONS)]
        path = tmp_path / f"bad{index}.nir"
        path.write_bytes((tmp_path / "m.nir").read_bytes())
        with h5py.File(path, "r+") as handle:
            del handle[name]
            value = MUTATIONS[mutation](shape)
            handle.create_dataset(name, data=value, dtype=h5py.string_dtype() if isinstance(value, str) else None)
        try:
            read_nir(path)
            outcomes["read"] += 1
        except NirError as exc:
            assert "\n" not in str(exc), (name, mutation, exc)
            outcomes["refused"] += 1
        try:
            nir_summary(path)
        except NirError:
            pass
    assert outcomes["refused"] > len(keys) // 2, outcomes
