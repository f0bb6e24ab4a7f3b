"""Each estimator on constructed cases where the right answer is known."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from albsnn_compress.binarize import binarize_, binarize_weight, candidate_layers, is_binarized, unbinarize_
from albsnn_compress.checkpoint import load_checkpoint
from albsnn_compress.data.registry import load_splits
from albsnn_compress.errors import CompressionError
from albsnn_compress.search.config import SearchConfig
from albsnn_compress.search.estimators import (
    ESTIMATORS,
    Estimator,
    LossEstimator,
    OutputEstimator,
    Probe,
    ProbeEstimator,
    WeightEstimator,
    register_estimator,
    resolve_estimator,
)
from albsnn_compress.search.session import SearchSession
from albsnn_compress.snn.layers import TimeBatchNorm2d, TimeConv2d
from albsnn_compress.snn.neurons import LIF
from albsnn_compress.snn.recording import record_outputs


class _Net(nn.Module):
    """conv -> LIF -> conv -> LIF -> mean: enough structure for every estimator."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = TimeConv2d(2, 2, 1, bias=False)
        self.lif1 = LIF(tau=1.0, v_threshold=0.5)
        self.conv2 = TimeConv2d(2, 3, 3, padding=1, bias=False)
        self.lif2 = LIF(tau=1.0, v_threshold=0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.lif2(self.conv2(self.lif1(self.conv1(x.unsqueeze(0)))))
        return out.mean(dim=(0, 3, 4))


def _probe() -> Probe:
    generator = torch.Generator().manual_seed(0)
    return Probe([(torch.rand(16, 2, 6, 6, generator=generator), torch.randint(0, 3, (16,), generator=generator))])


def _net() -> _Net:
    torch.manual_seed(0)
    net = _Net()
    with torch.no_grad():
        net.conv1.weight.copy_(torch.eye(2).view(2, 2, 1, 1))  # identity: one 1 and one 0 per channel
    return net


def test_weight_estimator_is_zero_for_binary_weights() -> None:
    net = _net()
    with torch.no_grad():
        net.conv2.weight.copy_(binarize_weight(net.conv2.weight))
    values = WeightEstimator().estimate(net, ["conv1", "conv2"], _probe())
    assert values["conv2"] == 0.0
    # identity has zeros: |W - W_b|^2 / |W|^2 = (1 alpha-error on the diagonal + 1 on the off-diagonal) > 0
    assert values["conv1"] > 0.0


def test_weight_estimator_formula() -> None:
    net = _net()
    weight = net.conv2.weight.detach()
    expected = float((weight - binarize_weight(weight)).square().sum() / weight.square().sum())
    assert WeightEstimator().estimate(net, ["conv2"], _probe())["conv2"] == pytest.approx(expected)


def test_output_estimator_small_for_identity_like_layer() -> None:
    net = _net()
    with torch.no_grad():
        net.conv1.weight.copy_(torch.ones(2, 2, 1, 1) * 0.7)  # already binary: binarizing changes nothing
    estimator = OutputEstimator()
    values = estimator.estimate(net, ["conv1", "conv2"], _probe())
    assert values["conv1"] == 0.0
    assert estimator.details["conv1"]["relative_output_error"] == 0.0
    assert values["conv2"] > 0.0  # random weights: some spikes flip
    assert not is_binarized(net.conv1) and not is_binarized(net.conv2)  # the model is left as found


def test_loss_estimator_is_a_taylor_estimate() -> None:
    net = _net()
    estimator = LossEstimator()
    values = estimator.estimate(net, ["conv2"], _probe())
    weight = net.conv2.weight.detach()
    delta = binarize_weight(weight) - weight
    tracker = estimator.tracker
    expected = float((tracker.grad["conv2"] * delta).sum() + 0.5 * (tracker.fisher["conv2"] * delta.square()).sum())
    assert values["conv2"] == pytest.approx(expected)
    assert float(tracker.fisher["conv2"].sum()) > 0.0


def test_the_loss_estimator_learns_from_finetuning_through_its_hook() -> None:
    net, probe = _net(), _probe()
    estimator = LossEstimator()
    images, labels = probe.batches[0]
    torch.nn.functional.cross_entropy(net(images), labels).backward()
    estimator.after_backward(net, ["conv2"])
    assert torch.equal(estimator.tracker.grad["conv2"], net.conv2.weight.grad)
    assert not hasattr(WeightEstimator(), "after_backward") and not hasattr(OutputEstimator(), "after_backward")


def test_estimators_by_name_or_object() -> None:
    assert list(ESTIMATORS) == ["weight", "output", "loss", "probe"]
    first, second = resolve_estimator("loss"), resolve_estimator("loss")
    assert isinstance(first, LossEstimator) and first is not second  # a fresh one per run
    mine = OutputEstimator()
    mine.details["x"] = {"spike_flip_fraction": 1.0}
    copied = resolve_estimator(mine)
    assert isinstance(copied, OutputEstimator) and copied is not mine and copied.details == mine.details
    assert isinstance(mine, Estimator)
    with pytest.raises(
        CompressionError, match=r"unknown estimator 'magic'; choose one of \['weight', 'output', 'loss', 'probe'\]"
    ):
        resolve_estimator("magic")
    with pytest.raises(CompressionError, match="estimator 3 has no name and estimate"):
        resolve_estimator(3)  # type: ignore[arg-type]


def test_a_registered_estimator_is_built_fresh_by_name() -> None:
    register_estimator("test-weight", WeightEstimator)
    try:
        assert isinstance(resolve_estimator("test-weight"), WeightEstimator)
        with pytest.raises(CompressionError, match="estimator name 'test-weight' is already registered"):
            register_estimator("test-weight", WeightEstimator)
    finally:
        ESTIMATORS.unregister("test-weight")


def _spike_flips_by_definition(net: nn.Module, name: str, lif: nn.Module, probe: Probe) -> float:
    """The output estimator's definition, computed the slow obvious way: two full passes."""
    try:
        with record_outputs([lif], keep=lambda _m, _i, out: out.detach().clone()) as outputs, torch.no_grad():
            for images, _ in probe.batches:
                net(images)
            binarize_(net, [name])
            for images, _ in probe.batches:
                net(images)
    finally:
        unbinarize_(net, [name])
    spikes = outputs[0]
    half = len(spikes) // 2
    flipped = sum(float((a != b).sum()) for a, b in zip(spikes[:half], spikes[half:]))
    return flipped / sum(a.numel() for a in spikes[:half])


@pytest.mark.parametrize("timesteps", [1, 3])
def test_output_estimator_matches_its_definition_on_a_trained_network(digits_checkpoint: Path, timesteps: int) -> None:
    net = load_checkpoint(digits_checkpoint).eval()
    net.timesteps = timesteps  # the same weights, run for more steps: the LIF state carries over time
    generator = torch.Generator().manual_seed(1)
    probe = Probe(
        [(torch.rand(32, 1, 8, 8, generator=generator), torch.zeros(32, dtype=torch.int64)) for _ in range(2)]
    )
    candidates = candidate_layers(net)
    names = list(dict(net.named_modules()))
    lifs = [(index, module) for index, (_, module) in enumerate(net.named_modules()) if isinstance(module, LIF)]
    values = OutputEstimator().estimate(net, candidates, probe)
    for name in candidates:
        next_lif = next(module for index, module in lifs if index > names.index(name))
        assert values[name] == _spike_flips_by_definition(net, name, next_lif, probe)
    assert all(value > 0 for value in values.values())


def test_output_estimator_compares_an_already_binarized_layer_with_its_float_self() -> None:
    net, probe = _net(), _probe()
    expected = OutputEstimator().estimate(net, ["conv2"], probe)["conv2"]
    binarize_(net, ["conv2"])
    assert OutputEstimator().estimate(net, ["conv2"], probe)["conv2"] == expected
    assert is_binarized(net.conv2)  # left as found


class _NormNet(nn.Module):
    """conv -> batch norm -> LIF -> conv -> batch norm -> spatial mean: logits that batch norm shapes."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = TimeConv2d(2, 4, 1, bias=False)
        self.bn1 = TimeBatchNorm2d(4)
        self.lif1 = LIF(tau=1.0, v_threshold=0.5)
        self.conv2 = TimeConv2d(4, 3, 3, padding=1, bias=False)
        self.bn2 = TimeBatchNorm2d(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.lif1(self.bn1(self.conv1(x.unsqueeze(0))))))
        return out.mean(dim=(0, 3, 4))


def _norm_net() -> _NormNet:
    """conv1 already ±0.7 (binarizing it changes nothing); conv2 heavy-tailed (Cauchy: a few weights dominate)."""
    torch.manual_seed(0)
    net = _NormNet()
    with torch.no_grad():
        net.conv1.weight.copy_(0.7 * torch.sign(torch.randn_like(net.conv1.weight)))
        net.conv2.weight.copy_(torch.distributions.Cauchy(0.0, 0.3).sample(net.conv2.weight.shape))
        for _ in range(3):  # running statistics that differ from their defaults
            net(torch.rand(16, 2, 6, 6) * 4)
    return net


def test_probe_estimator_ranks_a_heavy_tailed_layer_above_one_already_binary() -> None:
    estimator = ProbeEstimator()
    values = estimator.estimate(_norm_net(), ["conv1", "conv2"], _probe())
    assert values["conv1"] == 0.0  # +-c weights binarize to themselves, bit for bit: the outputs cannot move
    assert values["conv2"] > 1e-3
    assert estimator.details["conv1"] == {"kl_nats": 0.0, "prediction_flip_fraction": 0.0}
    assert estimator.details["conv2"]["kl_nats"] > 1e-3 and estimator.details["conv2"]["prediction_flip_fraction"] > 0.0


def test_probe_estimator_leaves_the_model_exactly_as_found() -> None:
    net, probe = _norm_net(), _probe()
    binarize_(net, ["conv2"])
    net.train()
    net.lif1.eval()  # a mixed mode, restored module by module
    state = {key: value.clone() for key, value in net.state_dict().items()}
    modes = [module.training for module in net.modules()]
    latent = net.conv2.parametrizations["weight"].original
    ProbeEstimator().estimate(net, ["conv1", "conv2"], probe)
    after = net.state_dict()
    assert list(after) == list(state)
    assert all(torch.equal(after[key], value) for key, value in state.items())  # weights and every batch-norm buffer
    assert [module.training for module in net.modules()] == modes
    assert is_binarized(net.conv2) and not is_binarized(net.conv1)
    assert net.conv2.parametrizations["weight"].original is latent  # the same Parameter: optimizers keep tracking it


def test_probe_estimator_compares_an_already_binarized_layer_with_its_float_self() -> None:
    net, probe = _norm_net(), _probe()
    expected = ProbeEstimator().estimate(net, ["conv2"], probe)["conv2"]
    binarize_(net, ["conv2"])
    assert ProbeEstimator().estimate(net, ["conv2"], probe)["conv2"] == expected


def test_probe_estimator_is_deterministic_for_a_seed(digits_checkpoint: Path) -> None:
    model = load_checkpoint(digits_checkpoint)
    splits = load_splits("digits", None)

    def probe_values(seed: int) -> dict[str, float]:
        session = SearchSession(
            model, splits["train"], splits["val"], 0.0, SearchConfig(seed=seed, binarize_first_last=True)
        )
        return ProbeEstimator().estimate(session.model, session.candidates, session.probe)

    first = probe_values(3)
    assert first == probe_values(3)
    assert first != probe_values(4)  # other probe batches
    assert max(first.values()) > 0.01  # binarizing some layer of a trained model costs loss
