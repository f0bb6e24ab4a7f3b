"""Run a NIR file in snnTorch and SpikingJelly, and compare with our model; every disagreement traced to a tie.

The proof that an exported file means what our model computes is other people's runtimes:
:func:`snntorch_runner` imports the file with snnTorch's ``import_from_nir`` and
:func:`spikingjelly_runner` with SpikingJelly's ``nir_exchange.import_from_nir``; both feed the
same image at every one of ``T`` steps (direct encoding) and average the output over the steps,
as :class:`~albsnn_compress.snn.spec.SpikingNet` does. :func:`compare` runs a model and a
runner on the same images and explains each image whose logits differ by more than ``tol``:

Layer ``L`` at step ``t`` depends only on earlier layers and earlier steps. At the first
(layer, step) where the two runtimes' spikes differ, both saw the same spikes before, so their
membranes differ by float rounding only (sums in another order, batch norm folded): a spike can
flip there only if our membrane ``H`` is within ``tie_tol`` of ``v_threshold``. An image whose
logits differ with every spike equal, or whose first flip is farther from the threshold, is
*unexplained* and fails the check.

The frameworks are optional: each runner imports its framework when it is built.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from albsnn_compress.snn.neurons import LIF
from albsnn_compress.snn.recording import lif_modules, record_outputs
from albsnn_compress.snn.spec import SpikingNet

__all__ = [
    "Run",
    "Runner",
    "Agreement",
    "model_runner",
    "snntorch_runner",
    "spikingjelly_runner",
    "snntorch_model_runner",
    "spikingjelly_model_runner",
    "compare",
]


@dataclass
class Run:
    """One runtime's outputs on a batch: logits ``[B, K]`` and, when recorded, each neuron layer's spikes
    ``[T, B, ...]`` (and our model's charged membranes ``H``, same shapes)."""

    logits: torch.Tensor
    spikes: list[torch.Tensor] | None = None
    membranes: list[torch.Tensor] | None = None


Runner = Callable[[torch.Tensor, bool], Run]
"""``(images [B, C, H, W] in [0, 1], record) -> Run``; a file's runner reshapes each image to the graph's Input
shape (flattens it, for a flat network)."""


def model_runner(model: SpikingNet) -> Runner:
    """Our model as a :data:`Runner`; ``record`` also replays each LIF layer to keep its membranes."""

    neurons = lif_modules(model)

    def run(images: torch.Tensor, record: bool) -> Run:
        with record_outputs(neurons if record else [], keep=_first_input) as inputs, torch.inference_mode():
            logits = model(images)
        if not record:
            return Run(logits)
        replayed = [_replay(neuron, calls[0]) for neuron, calls in zip(neurons, inputs)]
        return Run(logits, [spikes for spikes, _ in replayed], [charged for _, charged in replayed])

    return run


def _first_input(_module: nn.Module, inputs: tuple[Any, ...], _output: Any) -> Any:
    """What :func:`record_outputs` keeps for a replay: the layer's input (``[T, B, ...]`` for our LIF)."""
    return inputs[0]


def _replay(neuron: LIF, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(spikes, H)`` of one LIF layer on its input ``[T, B, ...]``, step by step as :meth:`LIF.forward`."""
    spikes: list[torch.Tensor] = []
    charged: list[torch.Tensor] = []
    v: torch.Tensor | None = None
    with torch.inference_mode():
        for t in range(x.shape[0]):
            h = neuron.charge(v, x[t])
            if neuron.reset == "soft_deferred" and spikes:
                h = neuron.reset_membrane(h, spikes[-1])
            spike = neuron.fire(h)
            v = h if neuron.reset == "soft_deferred" else neuron.reset_membrane(h, spike)
            spikes.append(spike)
            charged.append(h)
    return torch.stack(spikes), torch.stack(charged)


def _quiet(build: Callable[[], Any]) -> Any:
    """Call ``build`` with its prints (snnTorch's "[warning] scaling weights") swallowed."""
    with contextlib.redirect_stdout(io.StringIO()):
        return build()


def snntorch_runner(path: str | Path, timesteps: int, neurons: list[str] | None = None) -> Runner:
    """The NIR file imported with snnTorch's ``import_from_nir``, run one image at a time.

    One image at a time: snnTorch maps NIR's ``Flatten(start_dim=0)`` (NIR shapes have no batch
    axis) to ``torch.nn.Flatten(0)``, which on a batch would flatten the batch too. Each image
    starts from zero membranes (``reset_mem``).

    Args:
        path: the ``.nir`` file.
        timesteps: steps per image.
        neurons: names of the graph's neuron nodes whose spikes ``record`` keeps; default every
            ``snn.Leaky`` in the imported module, in module order.
    """
    import nir
    import snntorch as snn
    from snntorch.import_nir import import_from_nir

    graph = nir.read(str(path))
    shape = _input_shape(graph)
    net = _quiet(lambda: import_from_nir(graph))
    net.eval()
    leaky = (
        [net.get_submodule(n) for n in neurons]
        if neurons is not None
        else [m for m in net.modules() if isinstance(m, snn.Leaky)]
    )

    def run(images: torch.Tensor, record: bool) -> Run:
        logits: list[torch.Tensor] = []
        spikes: list[list[torch.Tensor]] = []  # per image: [T, ...] per layer
        with record_outputs(leaky if record else []) as steps, torch.no_grad():
            for image in images.reshape(len(images), *shape):
                for module in leaky:
                    module.reset_mem()
                outputs = [net(image)[0] for _ in range(timesteps)]
                logits.append(torch.stack(outputs).mean(dim=0))
                if record:
                    spikes.append([torch.stack(s) for s in steps])
                    for s in steps:
                        s.clear()
        if not record:
            return Run(torch.stack(logits))
        return Run(torch.stack(logits), [torch.stack([image[k] for image in spikes], dim=1) for k in range(len(leaky))])

    return run


def spikingjelly_runner(path: str | Path, timesteps: int, neurons: list[str] | None = None) -> Runner:
    """The NIR file imported with SpikingJelly's ``nir_exchange.import_from_nir`` (multi-step mode), run in batches.

    Args:
        path: the ``.nir`` file.
        timesteps: steps per image.
        neurons: names of the graph's neuron nodes whose spikes ``record`` keeps; default every
            stateful neuron wrapper of the imported module, in module order.
    """
    import nir
    from spikingjelly.activation_based.nir_exchange import from_nir

    graph = nir.read(str(path))
    shape = _input_shape(graph)
    net = from_nir.import_from_nir(graph, step_mode="m")
    net.eval()
    wrappers = (
        [net.get_submodule(n) for n in neurons]
        if neurons is not None
        else [m for m in net.modules() if isinstance(m, from_nir._NIRStatefulModule)]
    )
    run = _sequence_runner(lambda x: net(x)[0], wrappers, timesteps)
    return lambda images, record: run(images.reshape(len(images), *shape), record)


def _input_shape(graph: Any) -> tuple[int, ...]:
    """The per-sample shape of the graph's Input node: what each image is reshaped to before it is fed (a flat
    network's images flattened row-major, as :meth:`SpikingNet.samples` does)."""
    import nir

    inputs = [node for node in graph.nodes.values() if isinstance(node, nir.Input)]
    if len(inputs) != 1:
        raise ValueError(f"a NIR chain has one Input node, this graph has {len(inputs)}")
    return tuple(int(size) for size in inputs[0].input_type["input"])


def spikingjelly_model_runner(net: nn.Module, timesteps: int, neurons: list[nn.Module]) -> Runner:
    """A SpikingJelly multi-step network itself (``step_mode='m'``) as a :data:`Runner`; resets it per batch."""
    from spikingjelly.activation_based import functional

    def forward(x: torch.Tensor) -> torch.Tensor:
        functional.reset_net(net)
        output: torch.Tensor = net(x)
        return output

    return _sequence_runner(forward, neurons, timesteps)


def snntorch_model_runner(net: nn.Module, timesteps: int) -> Runner:
    """An snnTorch ``nn.Sequential`` with ``init_hidden=True`` neurons itself as a :data:`Runner` (batched).

    Membranes start from zero for every batch; the network is called once per step.
    """
    import snntorch as snn

    leaky = [m for m in net.modules() if isinstance(m, snn.Leaky)]

    def run(images: torch.Tensor, record: bool) -> Run:
        with record_outputs(leaky if record else []) as steps, torch.no_grad():  # (spk, mem) -> spk
            for module in leaky:
                module.reset_mem()
            outputs = []
            for _ in range(timesteps):
                out = net(images)
                outputs.append(out[0] if isinstance(out, tuple) else out)
        return Run(torch.stack(outputs).mean(dim=0), [torch.stack(s) for s in steps] if record else None)

    return run


def _sequence_runner(
    forward: Callable[[torch.Tensor], torch.Tensor], neurons: list[nn.Module], timesteps: int
) -> Runner:
    """A multi-step network (all ``T`` steps in one call) as a :data:`Runner`; each neuron's spikes are its output
    (the first item of a ``(spikes, state)`` tuple, SpikingJelly's NIR wrappers)."""

    def run(images: torch.Tensor, record: bool) -> Run:
        with record_outputs(neurons if record else []) as recorded, torch.no_grad():
            outputs = forward(images.unsqueeze(0).repeat(timesteps, *([1] * images.dim())))
        return Run(outputs.mean(dim=0), [calls[0] for calls in recorded] if record else None)

    return run


@dataclass
class Agreement:
    """How a runtime agrees with our model on some images.

    Attributes:
        images: images compared.
        identical_predictions: images whose top-1 class is the same.
        max_logit_diff: the largest ``|logit difference|`` over all images.
        max_logit_diff_untied: the same over the images not explained by a tie (<= tol when ``ok``).
        ties: one entry per image whose logits differ by more than ``tol``, traced to its first
            spike flip: ``{"image", "layer", "step", "margin"}`` (``margin``: ``|H - v_th|`` there).
        unexplained: images whose logits differ with no tie to explain it.
    """

    images: int
    identical_predictions: int
    max_logit_diff: float
    max_logit_diff_untied: float
    ties: list[dict[str, Any]] = field(default_factory=list)
    unexplained: list[int] = field(default_factory=list)
    tol: float = 1e-4
    tie_tol: float = 1e-4

    @property
    def prediction_agreement(self) -> float:
        """Fraction of images with the same top-1 class."""
        return self.identical_predictions / self.images if self.images else 1.0

    def ok(self, min_agreement: float = 0.999) -> bool:
        """Predictions agree on at least ``min_agreement`` and every logit difference above ``tol`` is a tie."""
        return self.prediction_agreement >= min_agreement and not self.unexplained

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "prediction_agreement": self.prediction_agreement}


def _threshold(neuron: LIF, like: torch.Tensor) -> torch.Tensor:
    return (
        torch.as_tensor(neuron.v_threshold, dtype=like.dtype).expand_as(like)
        if not isinstance(neuron.v_threshold, torch.Tensor)
        else neuron.v_threshold.expand_as(like)
    )


def _trace(model: SpikingNet, ours: Run, theirs: Run, row: int, tie_tol: float) -> dict[str, Any] | None:
    """The first spike flip of image ``row`` (position in the recorded batch) if it is a tie, else ``None``."""
    if ours.spikes is None or ours.membranes is None or theirs.spikes is None:
        raise ValueError("tracing a spike flip needs runs made with record=True")
    for layer, (neuron, mine, other, h) in enumerate(
        zip(lif_modules(model), ours.spikes, theirs.spikes, ours.membranes)
    ):
        for step in range(mine.shape[0]):
            differ = (mine[step, row] > 0) != (other[step, row].reshape(mine[step, row].shape) > 0)
            if differ.any():
                charged = h[step, row]
                margin = float((charged - _threshold(neuron, charged))[differ].abs().max())
                return {"layer": layer, "step": step, "margin": margin} if margin <= tie_tol else None
    return None


def compare(
    model: SpikingNet,
    other: Runner,
    images: torch.Tensor,
    *,
    chunk: int = 256,
    tol: float = 1e-4,
    tie_tol: float = 1e-4,
    reference: torch.Tensor | None = None,
    logits: torch.Tensor | None = None,
) -> Agreement:
    """Compare ``other`` with ``model`` on ``images`` ``[N, C, H, W]`` in ``[0, 1]`` (see the module docs).

    Args:
        model: our network (the reference).
        other: the runtime under test.
        images: the images.
        chunk: images per batch; an image whose logits differ is traced again within its batch.
        tol: logits closer than this agree.
        tie_tol: a spike flip counts as a tie when our membrane is this close to the threshold.
        reference: our logits for ``images`` if already computed.
        logits: ``other``'s logits for ``images`` if already computed, in batches of ``chunk``
            (only the batches holding images that differ are run again, recording spikes).
    """
    mine = model_runner(model)
    if reference is None:
        reference = torch.cat([mine(batch, False).logits for batch in torch.split(images, chunk)])
    if logits is None:
        logits = torch.cat([other(batch, False).logits for batch in torch.split(images, chunk)])
    diff = (logits - reference).abs().amax(dim=1)
    off = torch.nonzero(diff > tol).flatten().tolist()
    ties, unexplained = [], []
    for first in sorted({row - row % chunk for row in off}):
        # traced in the batch it was first run in: a runtime's sums may depend on the batch (SpikingJelly's
        # convolutions), so a flip seen there may not recur among other images
        batch = images[first : first + chunk]
        ours_run, their_run = mine(batch, True), other(batch, True)
        for row in (row for row in off if first <= row < first + chunk):
            tie = _trace(model, ours_run, their_run, row - first, tie_tol)
            if tie is None:
                unexplained.append(row)
            else:
                ties.append({"image": row, **tie})
    untied = diff.clone()
    untied[[t["image"] for t in ties]] = 0.0
    return Agreement(
        images=len(images),
        identical_predictions=int((logits.argmax(dim=1) == reference.argmax(dim=1)).sum()),
        max_logit_diff=float(diff.max()) if len(diff) else 0.0,
        max_logit_diff_untied=float(untied.max()) if len(untied) else 0.0,
        ties=ties,
        unexplained=unexplained,
        tol=tol,
        tie_tol=tie_tol,
    )
