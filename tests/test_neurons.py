"""LIF dynamics against hand-computed values, and surrogate gradients against their formulas."""

from __future__ import annotations

import math

import pytest
import torch

from albsnn_compress.errors import SpecError
from albsnn_compress.snn.neurons import LIF
from albsnn_compress.snn.surrogate import ArcTan, Rectangular, make_surrogate


def _run(neuron: LIF, inputs: list[float]) -> list[float]:
    x = torch.tensor(inputs).view(len(inputs), 1, 1)
    return neuron(x).view(-1).tolist()


def test_hard_reset_by_hand() -> None:
    # tau=2, v_th=1: H1 = 1.5/2 = 0.75 (no spike), V1 = 0.75
    # H2 = 0.75 + (1.5 - 0.75)/2 = 1.125 -> spike, V2 = 0 (hard reset)
    # H3 = 0 + 1.5/2 = 0.75 -> no spike; H4 = 1.125 -> spike
    assert _run(LIF(tau=2.0, reset="hard"), [1.5, 1.5, 1.5, 1.5]) == [0.0, 1.0, 0.0, 1.0]


def test_soft_reset_by_hand() -> None:
    # tau=2: H1 = 1.2 -> spike, V1 = 0.2 (soft: subtract 1)
    # H2 = 0.2 + (0.4 - 0.2)/2 = 0.3 -> no spike, V2 = 0.3
    # H3 = 0.3 + (2.0 - 0.3)/2 = 1.15 -> spike
    assert _run(LIF(tau=2.0, reset="soft"), [2.4, 0.4, 2.0]) == [1.0, 0.0, 1.0]


def test_decay_without_input() -> None:
    neuron = LIF(tau=4.0, v_threshold=10.0)
    x = torch.tensor([4.0, 0.0, 0.0]).view(3, 1)
    v = None
    h_values = []
    for t in range(3):
        h = x[t] / neuron.tau if v is None else neuron.charge(v, x[t])
        h_values.append(float(h))
        v = neuron.reset_membrane(h, neuron.fire(h))
    assert h_values == pytest.approx([1.0, 0.75, 0.5625])  # decays by (1 - 1/tau) each step


def test_threshold_is_inclusive() -> None:
    assert _run(LIF(tau=1.0, v_threshold=1.0), [1.0]) == [1.0]
    assert _run(LIF(tau=1.0, v_threshold=1.0), [0.999]) == [0.0]


def test_integrate_and_fire_has_no_leak() -> None:
    # H = V + X: 0.6, 1.2 -> spike, hard reset to 0, then 0.6
    assert _run(LIF(leak=False, tau=5.0), [0.6, 0.6, 0.6]) == [0.0, 1.0, 0.0]


def test_decay_of_the_state_only() -> None:
    # no decay_input, tau=2: H1 = 0 + 0.8 = 0.8; H2 = 0.8 - 0.8/2 + 0.8 = 1.2 -> spike
    neuron = LIF(tau=2.0, decay_input=False)
    assert _run(neuron, [0.8, 0.8]) == [0.0, 1.0]
    assert _run(LIF(tau=2.0), [0.8, 0.8]) == [0.0, 0.0]  # decay_input: H2 = 0.4 + (0.8 - 0.4)/2 = 0.6


def test_strict_threshold_does_not_fire_at_equality() -> None:
    assert _run(LIF(tau=1.0, strict_threshold=True), [1.0]) == [0.0]
    assert _run(LIF(tau=1.0, strict_threshold=True), [1.001]) == [1.0]
    x = torch.tensor([1.0, 1.0, 0.5], requires_grad=True)
    LIF(tau=1.0, strict_threshold=True)(x.view(3, 1)).sum().backward()
    y = torch.tensor([1.0, 1.0, 0.5], requires_grad=True)
    LIF(tau=1.0)(y.view(3, 1)).sum().backward()
    assert torch.equal(x.grad, y.grad)  # the surrogate gradient is the same


def test_deferred_soft_reset_is_snntorch_order() -> None:
    # beta = 0.5 (tau 2, state decay): U_t = 0.5 U_{t-1} + X_t - S_{t-1}
    # U1 = 1.5 -> S1; U2 = 0.75 + 1.5 - 1 = 1.25 -> S2; U3 = 0.625 + 0 - 1 = -0.375; U4 = -0.1875 + 1 = 0.8125
    deferred = LIF(tau=2.0, decay_input=False, reset="soft_deferred", strict_threshold=True)
    assert _run(deferred, [1.5, 1.5, 0.0, 1.0]) == [1.0, 1.0, 0.0, 0.0]
    # an immediate soft reset decays the subtraction too: V1 = 0.5, U2 = 1.75, V2 = 0.75, U3 = 0.375, U4 = 1.1875
    assert _run(LIF(tau=2.0, decay_input=False, reset="soft"), [1.5, 1.5, 0.0, 1.0]) == [1.0, 1.0, 0.0, 1.0]


def test_no_reset_keeps_integrating() -> None:
    assert _run(LIF(leak=False, reset="none"), [0.6, 0.6, 0.0]) == [0.0, 1.0, 1.0]


def test_per_channel_time_constants_and_thresholds() -> None:
    neuron = LIF(per_channel=("tau", "v_threshold"), channel_shape=(2,))
    assert set(neuron.state_dict()) == {"tau", "v_threshold"}
    with torch.no_grad():
        neuron.tau.copy_(torch.tensor([1.0, 4.0]))
        neuron.v_threshold.copy_(torch.tensor([1.0, 0.2]))
    x = torch.tensor([[[1.0, 1.0]]])  # T=1, B=1, C=2: H = [1.0, 0.25]
    assert neuron(x).view(-1).tolist() == [1.0, 1.0]
    with torch.no_grad():
        neuron.v_threshold.copy_(torch.tensor([1.0, 0.3]))
    assert neuron(x).view(-1).tolist() == [1.0, 0.0]


def test_detach_reset_changes_gradient_only() -> None:
    x = torch.tensor([1.5, 1.5, 1.5]).view(3, 1).requires_grad_()
    outs = []
    grads = []
    for detach in (True, False):
        xi = x.detach().clone().requires_grad_()
        out = LIF(detach_reset=detach)(xi)
        out.sum().backward()
        outs.append(out.detach())
        grads.append(xi.grad.clone())
    assert torch.equal(outs[0], outs[1])
    assert not torch.allclose(grads[0], grads[1])


def test_bad_neuron_settings() -> None:
    with pytest.raises(SpecError, match="reset must be one of"):
        LIF(reset="sideways")
    with pytest.raises(SpecError, match="tau must be >= 1"):
        LIF(tau=0.5)
    with pytest.raises(SpecError, match="per_channel must list settings among"):
        LIF(per_channel=("v_reset",), channel_shape=(3,))
    with pytest.raises(SpecError, match="unknown surrogate"):
        make_surrogate("sigmoid-ish")


@pytest.mark.parametrize("surrogate", [ArcTan(2.0), ArcTan(4.0), Rectangular(1.0), Rectangular(0.5)])
def test_surrogate_backward_matches_smooth_function(surrogate) -> None:
    x = torch.linspace(-2, 2, 41, dtype=torch.float64)
    x_spike = x.clone().requires_grad_()
    spikes = surrogate(x_spike)
    spikes.sum().backward()
    assert torch.equal(spikes.detach(), (x >= 0).to(x.dtype))
    x_smooth = x.clone().requires_grad_()
    surrogate.smooth(x_smooth).sum().backward()
    torch.testing.assert_close(x_spike.grad, x_smooth.grad)


def test_arctan_gradient_formula() -> None:
    alpha = 2.0
    x = torch.tensor([0.0, 0.5, -1.0], requires_grad=True)
    ArcTan(alpha)(x).sum().backward()
    expected = [(alpha / 2) / (1 + (math.pi / 2 * alpha * v) ** 2) for v in (0.0, 0.5, -1.0)]
    assert x.grad.tolist() == pytest.approx(expected)


def test_rectangular_gradient_formula() -> None:
    x = torch.tensor([0.0, 0.49, 0.51, -0.3], requires_grad=True)
    Rectangular(1.0)(x).sum().backward()
    assert x.grad.tolist() == [1.0, 1.0, 0.0, 1.0]
