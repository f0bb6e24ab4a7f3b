"""The fast LIF (fused spike + surrogate, T=1 path, one-pass resets) against the old forward pass.

The reference is ``benchmarks/reference_lif.py``, a plain copy of the LIF as it
was: spikes must be equal exactly (they are 0/1), input gradients and the
gradients of per-channel settings allclose, for every reset rule, leak variant,
strict threshold, per-channel setting, surrogate and T.
"""

from __future__ import annotations

import copy
import math
import sys
from pathlib import Path

import pytest
import torch

from albsnn_compress.snn.neurons import LIF, RESETS
from albsnn_compress.snn.presets import make_preset
from albsnn_compress.snn.spec import build_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/ is not installed: `pytest` alone misses it
from benchmarks.reference_lif import reference_lif_forward, use_reference_lif_  # noqa: E402

CHANNELS = 3
# (leak, decay_input, v_reset): the three charge rules, and a nonzero rest potential
CHARGES = [(True, True, 0.0), (True, True, 0.3), (True, False, 0.0), (False, True, -0.2)]
SURROGATES = [{"name": "arctan", "alpha": 2.0}, {"name": "rectangular", "width": 1.0}]


def _neuron(
    reset: str, charge: tuple[bool, bool, float], strict: bool, per_channel: bool, surrogate: dict, detach: bool
) -> LIF:
    leak, decay_input, v_reset = charge
    neuron = LIF(
        tau=2.0,
        v_threshold=1.0,
        v_reset=v_reset,
        reset=reset,
        detach_reset=detach,
        surrogate=surrogate,
        leak=leak,
        decay_input=decay_input,
        strict_threshold=strict,
        per_channel=("tau", "v_threshold") if per_channel else (),
        channel_shape=(CHANNELS, 1, 1),
    )
    if per_channel:
        with torch.no_grad():
            neuron.tau.copy_(torch.tensor([1.0, 2.0, 4.0]).view(CHANNELS, 1, 1))
            neuron.v_threshold.copy_(torch.tensor([0.5, 1.0, 1.5]).view(CHANNELS, 1, 1))
        neuron.tau.requires_grad_(True)
        neuron.v_threshold.requires_grad_(True)
    return neuron


def _inputs(neuron: LIF, steps: int) -> torch.Tensor:
    """Random currents around the threshold, with first-step entries that charge exactly to it (ties)."""
    generator = torch.Generator().manual_seed(steps)
    x = torch.randn(steps, 4, CHANNELS, 5, 5, generator=generator) * 1.5 + 0.8
    tau = neuron.tau if isinstance(neuron.tau, torch.Tensor) else torch.tensor(neuron.tau)
    v_th = neuron.v_threshold if isinstance(neuron.v_threshold, torch.Tensor) else torch.tensor(neuron.v_threshold)
    scale = tau if neuron.leak and neuron.decay_input else torch.ones_like(tau)
    tie = ((v_th - neuron.v_reset) * scale).detach().expand(CHANNELS, 1, 1).reshape(CHANNELS)
    x[0, :, :, 0, 0] = tie  # H_1 = tie / tau + v_reset == v_th exactly (powers of two, small numbers)
    return x


def _forward_and_grads(forward, neuron: LIF, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    x = x.clone().requires_grad_()
    out = forward(x)
    weights = torch.linspace(-1.0, 2.0, out.numel()).view_as(out)  # an uneven upstream gradient
    (out * weights).sum().backward()
    settings = [t for t in (neuron.tau, neuron.v_threshold) if isinstance(t, torch.Tensor)]
    grads = [x.grad, *(None if t.grad is None else t.grad.clone() for t in settings)]
    for t in settings:
        t.grad = None
    return out.detach(), grads


@pytest.mark.parametrize("steps", [1, 2, 4])
@pytest.mark.parametrize("surrogate", SURROGATES, ids=lambda s: s["name"])
@pytest.mark.parametrize("per_channel", [False, True], ids=["scalar", "per_channel"])
@pytest.mark.parametrize("strict", [False, True], ids=["ge", "strict"])
@pytest.mark.parametrize("charge", CHARGES, ids=["lif", "lif_vreset", "state_decay", "if"])
@pytest.mark.parametrize("detach", [True, False], ids=["detach", "attached"])
@pytest.mark.parametrize("reset", RESETS)
def test_fast_lif_equals_the_reference(
    reset: str, detach: bool, charge, strict: bool, per_channel: bool, surrogate: dict, steps: int
) -> None:
    neuron = _neuron(reset, charge, strict, per_channel, surrogate, detach)
    x = _inputs(neuron, steps)
    fast, fast_grads = _forward_and_grads(neuron, neuron, x)
    reference, reference_grads = _forward_and_grads(lambda inp: reference_lif_forward(neuron, inp), neuron, x)
    assert torch.equal(fast, reference)
    assert 0 < int(fast.sum()) < fast.numel()  # the inputs make some neurons fire and some not
    assert len(fast_grads) == len(reference_grads) == (3 if per_channel else 1)
    for got, expected in zip(fast_grads, reference_grads):
        assert (got is None) == (expected is None)  # tau gets no gradient where the charge does not use it
        if got is not None:
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    assert fast_grads[0].abs().sum() > 0


@pytest.mark.parametrize("steps", [1, 2])
def test_strict_threshold_ties_do_not_fire_on_the_fast_path(steps: int) -> None:
    neuron = LIF(tau=2.0, v_threshold=1.0, strict_threshold=True)
    x = torch.full((steps, 1, 3), 2.0)  # H_1 = 2 / 2 = 1.0 == v_th
    assert neuron(x)[0].tolist() == [[0.0, 0.0, 0.0]]
    assert LIF(tau=2.0, v_threshold=1.0)(x)[0].tolist() == [[1.0, 1.0, 1.0]]


@pytest.mark.parametrize("steps", [1, 3])
def test_network_with_fast_lif_equals_the_network_with_the_reference(steps: int) -> None:
    torch.manual_seed(0)
    spec = make_preset("digits-small", [1, 8, 8], 10, [0.5], [0.25])
    fast = build_model(spec, timesteps=steps)
    reference = use_reference_lif_(copy.deepcopy(fast))
    images = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    labels = torch.arange(6) % 10
    outputs = []
    for model in (fast, reference):
        model.train()
        out = model(images)
        torch.nn.functional.cross_entropy(out, labels).backward()
        outputs.append(out.detach())
    assert torch.equal(outputs[0], outputs[1])
    reference_params = dict(reference.named_parameters())
    for name, param in fast.named_parameters():
        twin = reference_params[name.replace(".", ".neuron.", 1) if name not in reference_params else name]
        torch.testing.assert_close(param.grad, twin.grad, rtol=1e-5, atol=1e-6, msg=name)
    assert any(float(p.grad.abs().sum()) > 0 for p in fast.parameters())


@pytest.mark.slow
@pytest.mark.parametrize("steps", [1, 2])
def test_compiled_lif_fires_like_the_eager_one(steps: int) -> None:
    """Under torch.compile (``train --compile``) the LIF runs plain operations; away from ties the spikes are equal."""
    neuron = LIF(tau=2.0, reset="hard")
    x = torch.randn(steps, 8, CHANNELS, 4, 4, generator=torch.Generator().manual_seed(3)) * 1.5 + 0.8
    eager, eager_grads = _forward_and_grads(neuron, neuron, x)
    compiled, compiled_grads = _forward_and_grads(torch.compile(neuron), neuron, x)
    assert torch.equal(compiled, eager)
    torch.testing.assert_close(compiled_grads[0], eager_grads[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("steps", [1, 2])
def test_lif_on_channels_last_activations_equals_contiguous(steps: int) -> None:
    """``train --channels-last`` hands the LIF [T, B, C, H, W] views of channels-last maps: same spikes, same
    gradients."""
    neuron = LIF(tau=2.0, reset="hard")
    x = torch.randn(steps * 8, CHANNELS, 4, 4, generator=torch.Generator().manual_seed(4)) * 1.5 + 0.8
    channels_last = x.contiguous(memory_format=torch.channels_last).unflatten(0, (steps, 8))
    assert not channels_last.is_contiguous()
    dense, dense_grads = _forward_and_grads(neuron, neuron, x.unflatten(0, (steps, 8)))
    strided, strided_grads = _forward_and_grads(neuron, neuron, channels_last)
    assert torch.equal(strided, dense)
    torch.testing.assert_close(strided_grads[0], dense_grads[0], rtol=1e-6, atol=1e-7)


def test_trainer_steps_in_channels_last_and_leaves_the_model_contiguous() -> None:
    from albsnn_compress.data import load_split
    from albsnn_compress.training.trainer import TrainConfig, Trainer

    torch.manual_seed(0)
    model = build_model(make_preset("digits-small", [1, 8, 8], 10, [0.5], [0.25]), timesteps=2)
    before = model.layers[0].weight.detach().clone()
    seen: list[bool] = []
    model.layers[0].register_forward_pre_hook(
        lambda _module, args: seen.append(args[0].flatten(0, 1).is_contiguous(memory_format=torch.channels_last))
    )
    trainer = Trainer(
        model, load_split("digits", None, "train"), TrainConfig(epochs=1, batch_size=32, channels_last=True)
    )
    loss = trainer.run(2)
    assert seen == [True, True]  # the convolutions saw channels-last images
    assert all(p.is_contiguous() for p in model.parameters())  # what is saved or exported keeps the standard layout
    assert not torch.equal(model.layers[0].weight, before) and math.isfinite(loss)
