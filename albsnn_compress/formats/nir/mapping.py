r"""Our neurons as NIR nodes and back, with the ``dt`` convention of NIR's importers.

NIR describes neurons in continuous time. ``nir.LIF`` is

.. math::

    \tau \dot v = (v_{leak} - v) + R\,I, \qquad z = [v > v_{th}], \qquad v \leftarrow v_{reset} \text{ where } z

and ``nir.IF`` is :math:`\dot v = R\,I` with the same threshold and reset. A
discrete simulator steps it with a time step ``dt``. snnTorch's and
SpikingJelly's importers both take ``dt = 1e-4`` s (:data:`DT`) and integrate
with one forward-Euler step per time step, the input held over the step:

.. math::

    v_t = v_{t-1} + \frac{dt}{\tau}\bigl(v_{leak} - v_{t-1} + R\,I_t\bigr) \quad\text{(LIF)}, \qquad
    v_t = v_{t-1} + dt\,R\,I_t \quad\text{(IF)}.

Our LIF (:class:`albsnn_compress.snn.neurons.LIF`, time constant
:math:`\tau_a`, in steps) charges

.. math::

    H_t = V_{t-1} + \tfrac{1}{\tau_a}\bigl(X_t - (V_{t-1} - V_{reset})\bigr) \;\text{(decay\_input)}, \qquad
    H_t = V_{t-1} - \tfrac{1}{\tau_a}(V_{t-1} - V_{reset}) + X_t \;\text{(no decay\_input)}, \qquad
    H_t = V_{t-1} + X_t \;\text{(IF)}.

Matching the coefficients of :math:`v_{t-1}`, the constant and :math:`I_t = X_t`:

=====================  ===========================  ==========  ====================
our neuron             ``tau``                      ``r``       ``v_leak``
=====================  ===========================  ==========  ====================
LIF, decay_input       :math:`\tau_a \cdot dt`      1           :math:`V_{reset}`
LIF, no decay_input    :math:`\tau_a \cdot dt`      :math:`\tau_a` (= tau / dt)  :math:`V_{reset}`
IF (no leak)           (nir.IF)                     1 / dt      (none)
=====================  ===========================  ==========  ====================

with ``v_threshold`` and ``v_reset`` as they are. So
:math:`dt/\tau = 1/\tau_a` and :math:`R\,dt/\tau` is the input gain: :math:`1/\tau_a`
with ``r = 1`` (SpikingJelly's ``decay_input=True``), 1 with ``r = tau/dt``
(snnTorch's ``U = beta U + X``, ``beta = 1 - dt/tau``). SpikingJelly's importer
reads exactly these two forms back (``tau/dt``, ``r`` is 1 or ``tau/dt``,
``v_leak = v_reset``); snnTorch's reads ``beta = 1 - dt/tau`` and, when the gain
``w = r dt/tau`` is not 1, runs :math:`U = \tau_a H` with the threshold divided
by ``w``: the same spikes, up to rounding.

What does not map (the writer refuses it, naming the layer): reset by
subtraction (``soft``, ``soft_deferred``) and no reset (``none``), since NIR's
spiking neurons only reset to ``v_reset`` and neither importer runs a recurrent
or ``LI`` + ``Threshold`` construction as those rules (:data:`RESET_REFUSALS`). NIR fires on ``v > v_th``; our
non-strict neurons fire on ``>=``: the two differ only where the membrane equals
the threshold exactly (SpikingJelly fires on ``>=``, snnTorch on ``>``). The
metadata key ``albsnn_threshold`` records which one the network was trained with.

``tau / dt`` is not always exactly :math:`\tau_a` in float64, so the writer also
stores :math:`\tau_a` itself (``albsnn_tau``); the reader uses it only if it
agrees with the node's ``tau / dt`` to 1e-12.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import nir
import numpy as np
import torch

from albsnn_compress.errors import ExportError, NirError
from albsnn_compress.formats.nir.params import NUMBER_KINDS, as_array
from albsnn_compress.snn.neurons import LIF

__all__ = [
    "DT",
    "NirError",
    "RESET_REFUSALS",
    "RTOL",
    "check_neuron",
    "neuron_node",
    "neuron_settings",
    "uniform_or_per_channel",
    "KBIT_TOLERANCE",
]

KBIT_TOLERANCE = 2.0**-20
"""How far a k-bit layer's NIR weight may be from ``q * scale[c]``, relative to ``|q * scale[c]|``: the
weights are float32 values of ``q`` times a float64 scale, rounded once or (a batch norm folded in)
twice, each rounding at most 2^-24 relative; the scale is written rounded to float32 too."""


DT = 1e-4
"""Seconds per time step: what snnTorch's and SpikingJelly's NIR importers assume."""

RTOL = 1e-6
"""Relative tolerance for "equal" between NIR parameters (``r`` against ``tau / dt``, ``r * dt`` against 1): the
float32 rounding of files written in float32 (snnTorch computes ``tau = dt / (1 - beta)`` in float32), and
SpikingJelly's importer's own tolerance. Anything farther apart is a different neuron and is refused."""

_META_RTOL = 1e-12


def _setting(neuron: LIF, key: str) -> float | torch.Tensor:
    """``tau`` or ``v_threshold``: a float, or a per-channel buffer."""
    value = getattr(neuron, key)
    return value if isinstance(value, torch.Tensor) else float(value)


def _full(value: float | torch.Tensor, shape: tuple[int, ...]) -> np.ndarray:
    """A neuron setting (scalar or per-channel buffer) as a float64 array of the layer's shape."""
    if isinstance(value, torch.Tensor):
        array: np.ndarray = value.detach().cpu().double().numpy()
        full: np.ndarray = np.broadcast_to(array, shape).copy()
        return full
    return np.full(shape, float(value), dtype=np.float64)


def _tau_values(neuron: LIF) -> np.ndarray | float:
    tau = _setting(neuron, "tau")
    if isinstance(tau, torch.Tensor):
        values: np.ndarray = tau.detach().cpu().double().numpy()
        return values.reshape(-1)
    return tau


RESET_REFUSALS: dict[str, str] = {
    "soft": (
        "NIR's spiking neurons (LIF, IF, CubaLIF) reset the membrane to v_reset, and a -v_threshold feedback edge "
        "around one is not a subtraction in either importer (SpikingJelly keeps the reset to v_reset and adds the "
        "feedback, snnTorch routes the layer's input through the feedback weight)"
    ),
    "soft_deferred": (
        "snnTorch's subtract reset (the previous step's spike subtracted after the decay) has no NIR neuron: LIF, IF "
        "and CubaLIF reset the membrane to v_reset, and the recurrent construction (a -v_threshold Linear from the "
        "neuron back to itself) runs in SpikingJelly as that reset plus the feedback, and in snnTorch with the "
        "layer's input routed through the feedback weight: neither is the subtraction"
    ),
    "none": (
        "a neuron that never resets is NIR's LI followed by a Threshold node, and neither snnTorch's nor "
        "SpikingJelly's importer reads LI or Threshold (LIF, IF and CubaLIF always reset to v_reset)"
    ),
}
"""Why each reset rule other than ``hard`` has no NIR form both importers run (``tests/test_nir_resets.py`` shows
each reason with the importers themselves)."""


def check_neuron(name: str, neuron: LIF) -> None:
    """Refuse a neuron NIR has no node for, in one line with the reason and the alternatives.

    Raises:
        ExportError: the reset rule is soft, soft_deferred or none (:data:`RESET_REFUSALS`).
    """
    if neuron.reset != "hard":
        reason = RESET_REFUSALS.get(neuron.reset, "NIR's spiking neurons only reset the membrane to v_reset")
        raise ExportError(
            f"layer {name}: reset {neuron.reset!r} cannot be written to NIR: {reason}; export ONNX or C, which keep "
            "every reset rule, or retrain with reset 'hard' (snnTorch: reset_mechanism='zero') to export NIR"
        )


def neuron_node(name: str, neuron: LIF, shape: tuple[int, ...], dt: float = DT) -> nir.NIRNode:
    """The ``nir.LIF`` or ``nir.IF`` node of one of our LIF layers, for a layer of per-sample ``shape``.

    Args:
        name: the layer's name (for messages and the node's metadata).
        neuron: the layer.
        shape: its per-sample input shape (``[C, H, W]`` or ``[F]``); NIR parameters are per neuron.
        dt: seconds per time step (see the module docs).

    Raises:
        ExportError: the reset rule has no NIR form (soft, soft_deferred, none).
    """
    check_neuron(name, neuron)
    metadata: dict[str, Any] = {
        "albsnn_layer": name,
        "albsnn_threshold": ">" if neuron.strict_threshold else ">=",
        "albsnn_per_channel": ",".join(neuron.per_channel),
        "albsnn_tau": np.asarray(_tau_values(neuron), dtype=np.float64).reshape(
            -1
        ),  # a 1-element array: HDF5 compresses no scalars
    }
    v_threshold = _full(_setting(neuron, "v_threshold"), shape)
    v_reset = _full(neuron.v_reset, shape)
    if not neuron.leak:
        return nir.IF(r=np.full(shape, 1.0 / dt), v_threshold=v_threshold, v_reset=v_reset, metadata=metadata)
    tau = _full(_setting(neuron, "tau"), shape)
    return nir.LIF(
        tau=tau * dt,
        r=np.ones(shape) if neuron.decay_input else tau,
        v_leak=v_reset.copy(),
        v_threshold=v_threshold,
        v_reset=v_reset,
        metadata=metadata,
    )


def _numbers(values: Any, where: str) -> np.ndarray:
    """A NIR parameter as a float64 array (any shape); bools, complex numbers, strings and other objects are refused."""
    array = as_array(values, where, "the parameter")
    if array.dtype.kind not in NUMBER_KINDS:
        raise NirError(f"{where}: must be numbers, got {array.dtype} of shape {list(array.shape)}")
    return array.astype(np.float64)


def uniform_or_per_channel(values: Any, shape: tuple[int, ...], where: str) -> float | np.ndarray:
    """A per-neuron NIR parameter as one number, or one value per channel (``[C]``) if it varies by channel.

    Raises:
        NirError: the value is not numbers, does not broadcast to ``shape``, is not finite, or varies within a channel.
    """
    numbers = _numbers(values, where)
    try:
        array = np.broadcast_to(numbers, shape)
    except ValueError as exc:  # what np.broadcast_to raises for shapes that do not broadcast
        raise NirError(f"{where}: shape {list(np.shape(values))} does not fit the layer's {list(shape)}") from exc
    if not np.isfinite(array).all():
        raise NirError(f"{where}: holds NaN or infinite values")
    flat = array.reshape(shape[0], -1)
    if (array == flat.flat[0]).all():
        return float(flat.flat[0])
    if (flat == flat[:, :1]).all():
        channels: np.ndarray = flat[:, 0].copy()
        return channels
    raise NirError(f"{where}: varies within a channel; our neurons hold one value per layer or per channel")


def _close(a: np.ndarray | float, b: np.ndarray | float, rtol: float = RTOL) -> bool:
    return bool(np.allclose(a, b, rtol=rtol, atol=0.0))


def _scalar(values: Any, shape: tuple[int, ...], where: str) -> float:
    value = uniform_or_per_channel(values, shape, where)
    if not isinstance(value, float):
        raise NirError(f"{where}: varies across neurons; our neurons hold one value per layer")
    return value


def _strict(metadata: Mapping[str, Any], strict_threshold: bool | None, where: str) -> bool:
    if strict_threshold is not None:
        return strict_threshold
    recorded = metadata.get("albsnn_threshold")
    if recorded is None:
        return True  # NIR's definition: z = v > v_threshold
    if not isinstance(recorded, str) or recorded not in (">", ">="):
        raise NirError(f"{where}: metadata albsnn_threshold must be '>' or '>=', got {recorded!r}")
    return recorded == ">"


def _exact_tau(tau: float | np.ndarray, metadata: Mapping[str, Any], where: str) -> float | np.ndarray:
    """Our writer's exact ``tau`` in steps where it agrees with the node's ``tau / dt``; else the node's value."""
    if metadata.get("albsnn_tau") is None:
        return tau
    recorded = _numbers(metadata["albsnn_tau"], f"{where} metadata albsnn_tau")
    exact = float(recorded.reshape(-1)[0]) if recorded.size == 1 else recorded.reshape(-1)
    if np.shape(exact) == np.shape(tau) and _close(exact, tau, _META_RTOL):
        return exact
    return tau


def neuron_settings(
    where: str,
    node: nir.NIRNode,
    shape: tuple[int, ...],
    dt: float = DT,
    strict_threshold: bool | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Our neuron settings for a ``nir.LIF``, ``nir.IF`` or ``nir.CubaLIF`` node (the inverse of :func:`neuron_node`).

    Args:
        where: names the node in messages (the reader's ``"net.nir: node 'lif1' (LIF)"``).
        node: the NIR neuron.
        shape: the per-sample shape of its input, as the chain computes it.
        dt: seconds per time step the graph was written for.
        strict_threshold: fire on ``>`` (NIR's definition) or ``>=``; ``None``: what our
            writer recorded, else NIR's ``>``.
        metadata: our writer's node metadata (exact ``tau``, threshold rule), or
            ``None`` for a file we did not write (its metadata is ignored).

    Returns:
        ``(settings, per_channel)``: a ``lif`` layer's neuron overrides, and the settings that
        vary by channel (``tau``, ``v_threshold``) as ``[C]`` float64 arrays.

    Raises:
        NirError: naming the node and the parameter that has no exact form in our LIF.
    """
    metadata = metadata if isinstance(metadata, Mapping) else {}
    settings: dict[str, Any] = {"reset": "hard"}
    settings["strict_threshold"] = _strict(metadata, strict_threshold, where)
    per_channel: dict[str, np.ndarray] = {}
    threshold = uniform_or_per_channel(node.v_threshold, shape, f"{where} v_threshold")
    settings["v_reset"] = _scalar(node.v_reset, shape, f"{where} v_reset")
    if isinstance(node, nir.IF):
        gain = _scalar(node.r, shape, f"{where} r") * dt
        if not _close(gain, 1.0):
            raise NirError(f"{where}: r * dt = {gain:g}; an IF neuron maps exactly only with r = 1/dt ({1 / dt:g})")
        settings["leak"] = False
    else:
        if isinstance(node, nir.CubaLIF):
            tau_node, gain_in = _cuba_synapse(node, shape, dt, where)
        else:
            tau_node, gain_in = node.tau, 1.0
        leak = _scalar(node.v_leak, shape, f"{where} v_leak")
        if not _close(leak, settings["v_reset"]):
            raise NirError(
                f"{where}: v_leak {leak:g} differs from v_reset {settings['v_reset']:g}; "
                "our LIF leaks toward its reset potential"
            )
        tau = uniform_or_per_channel(_numbers(tau_node, f"{where} tau") / dt, shape, f"{where} tau/dt")
        r = uniform_or_per_channel(_numbers(node.r, f"{where} r") * gain_in, shape, f"{where} r")
        if _close(r, 1.0):
            settings["decay_input"] = True
        elif _close(r, tau):
            settings["decay_input"] = False
        else:
            raise NirError(
                f"{where}: r must be 1 (input scaled by dt/tau, SpikingJelly's decay_input) or tau/dt (input added "
                "as is, snnTorch's form); another input gain has no exact form in our LIF"
            )
        tau = _exact_tau(tau, metadata, where)
        if np.min(tau) < 1.0:
            raise NirError(
                f"{where}: tau/dt = {np.min(tau):g} < 1 (a time constant shorter than one step of dt={dt:g} s)"
            )
        settings["leak"] = True
        _put(settings, per_channel, "tau", tau)
    _put(settings, per_channel, "v_threshold", threshold)
    return settings, per_channel


def _put(settings: dict[str, Any], per_channel: dict[str, np.ndarray], key: str, value: float | np.ndarray) -> None:
    if isinstance(value, np.ndarray):
        per_channel[key] = value
        settings[key] = float(value[0])  # the spec's scalar; the per-channel buffer overrides it
    else:
        settings[key] = value


def _cuba_synapse(node: nir.CubaLIF, shape: tuple[int, ...], dt: float, where: str) -> tuple[Any, float]:
    """A CubaLIF whose synaptic current lasts one step (``tau_syn = dt``) is an LIF with input gain ``w_in``."""
    tau_syn = _scalar(node.tau_syn, shape, f"{where} tau_syn")
    if not _close(tau_syn / dt, 1.0):
        raise NirError(
            f"{where}: tau_syn/dt = {tau_syn / dt:g}; a synaptic current that lasts beyond one step is a second state "
            "our LIF does not have (only tau_syn = dt, a current that decays within the step, maps, as a plain LIF)"
        )
    return node.tau_mem, _scalar(node.w_in, shape, f"{where} w_in")
