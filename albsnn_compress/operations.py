"""What a model costs to run, measured on images: synaptic operations (AC and MAC), bytes moved, energy estimate.

Counted per inference (one image, all its time steps), averaged over the images given,
for every weighted layer (conv, linear):

* **dense** synaptic operations: ``fan-in x output elements x steps``, where ``steps`` is
  how often the layer runs for one image (``T`` for the layers after the first neuron,
  1 for the layers ahead of it, which :class:`~albsnn_compress.snn.spec.SpikingNet` runs
  once for all steps); the zero-padded border positions of a convolution are included.
* **effective** synaptic operations: only those whose input element is nonzero and whose
  weight is nonzero, counted exactly (each nonzero input element times the number of
  outputs it reaches through a nonzero weight, from the layer's own stride, padding and
  groups).
* An image's effective operations in a layer are **accumulates (AC)** when every value of
  that layer's input for the image is 0 or 1 (spikes: the weight is added where a spike
  arrived), **multiply-accumulates (MAC)** otherwise (the first layer over the image, a
  layer after an average pooling). A 1-bit layer over spikes adds ``+alpha`` or
  ``-alpha``: an AC like a float weight's (its popcount form on a chip, one popcount per
  output and one multiply by ``alpha``, costs less and is not modelled).
* **Bytes moved** per inference: every stored tensor of a weighted layer (packed signs and
  scales of a 1-bit layer, float32 weights and biases otherwise) read once per step the layer
  runs, plus its input read once per step (1 bit per element for spikes, 4 bytes otherwise)
  and its output written once per step (4 bytes per element).
* **Energy estimate**: ``AC x 0.9 pJ + MAC x 4.6 pJ`` (45 nm, 32-bit float: an add is 0.9 pJ,
  a multiply 3.7 pJ; Horowitz, ISSCC 2014): arithmetic only, no memory access.

Bias additions, batch norm, neuron updates, pooling and the global-average head are not
synaptic operations; the neuron updates and batch-norm elements are counted apart
(:attr:`ModelOperations.neuron_updates`, :attr:`ModelOperations.batch_norm_elements`).
The definitions follow NeuroBench's ``SynapticOperations`` where they overlap;
:data:`DEFINITIONS` says where they differ. ``docs/report.md`` (Operations and energy)
has the worked example the tests check.

The layers are watched with :func:`~albsnn_compress.snn.recording.record_outputs`, the one
way this package hooks modules; which layers are synapses is a table keyed by the layer
type's record name (:data:`SYNAPSE_COUNTERS`), so a registered binarizable type without an
entry is refused by name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from albsnn_compress.binarize import binarized_layers
from albsnn_compress.errors import CompressionError
from albsnn_compress.snn.layer_types import layer_type_of
from albsnn_compress.snn.recording import record_outputs
from albsnn_compress.storage import FLOAT_BITS, layer_storage

__all__ = [
    "AC_PJ",
    "MAC_PJ",
    "ENERGY_LABEL",
    "ENERGY_SOURCE",
    "DEFINITIONS",
    "MAX_IMAGES",
    "SPIKE_BITS",
    "SYNAPSE_COUNTERS",
    "SAVED_KEYS",
    "check_countable",
    "LayerOperations",
    "ModelOperations",
    "count_operations",
    "operations_section",
    "saved_percent",
]

AC_PJ = 0.9
"""Energy of one accumulate in picojoules: a 32-bit float add at 45 nm (Horowitz, ISSCC 2014)."""
MAC_PJ = 4.6
"""Energy of one multiply-accumulate in picojoules: a 32-bit float multiply (3.7 pJ) and add (0.9 pJ) at 45 nm."""
ENERGY_LABEL = "estimate (45 nm, Horowitz 2014)"
ENERGY_SOURCE = (
    "M. Horowitz, Computing's energy problem (and what we can do about it), ISSCC 2014: at 45 nm a 32-bit float "
    "add costs 0.9 pJ and a 32-bit float multiply 3.7 pJ, so an AC (one add) is 0.9 pJ and a MAC (a multiply and "
    "an add) 4.6 pJ, the constants used throughout the SNN literature"
)
MAX_IMAGES = 1000
"""The most images a compress run measures the operations on (the first ones of its split)."""
SPIKE_BITS = 1
"""Bits per input element moved when the input is spikes (0 or 1)."""
_FLOAT_BYTES = FLOAT_BITS // 8

DEFINITIONS: dict[str, str] = {
    "per_inference": "Per inference: one image, summed over its time steps, averaged over the images measured "
    "(NeuroBench reports SynapticOperations per sample the same way).",
    "synaptic_operation": "Synaptic operation: one weight applied to one input element of a conv or linear layer.",
    "dense": "Dense: fan-in × output elements × the steps the layer runs (T after the first neuron, 1 for the layers "
    "ahead of it, which run once for all steps), zero-padded border positions included.",
    "effective": "AC and MAC count effective operations only: those whose input element and weight are both "
    "nonzero, measured on the images (each nonzero input element times the outputs it reaches through a nonzero "
    "weight).",
    "ac": "AC (accumulate): the effective operations of an image in a layer whose input holds only 0 and 1 for "
    "that image (spikes: the weight is added where a spike arrived).",
    "mac": "MAC (multiply-accumulate): the effective operations of an image in a layer whose input holds other "
    "values (the first layer over the image, a layer after an average pooling).",
    "rate": "Rate: the fraction of a layer's input elements that are nonzero over all steps; for a layer over "
    "spikes, its input spike rate per neuron and step.",
    "binary_weights": "1-bit layers: over spikes, a 1-bit layer adds +alpha or -alpha where a spike arrived, "
    "counted as an AC like a float weight's add; on a chip its popcount form (one popcount per output, then one "
    "multiply by alpha) costs less than an AC per synapse, which is not modelled. Over analog input it is counted "
    "as MACs, though it needs only additions, subtractions and one multiply per output.",
    "excluded": "Not synaptic operations, so in neither AC, MAC nor the energy: bias additions, batch norm (folded "
    "into a scale and shift at deployment; its elements × steps are reported as batch-norm elements), neuron "
    "updates (neurons × steps, reported apart, as NeuroBench does), pooling and the global-average head.",
    "bytes_moved": "Bytes moved: every stored tensor of a weighted layer (1-bit signs and float32 scales of a "
    "binarized layer, float32 otherwise, biases included) read once per step the layer runs, no cache across "
    "steps; its input read once per step (1 bit per element for spikes, 4 bytes otherwise) and its output written "
    "once per step (4 bytes per element). Batch-norm tensors and neuron state are not counted.",
    "energy": "Energy: AC × 0.9 pJ + MAC × 4.6 pJ, an estimate of the arithmetic at 45 nm (Horowitz, ISSCC 2014); "
    "memory access energy is not included (bytes moved are reported apart).",
    "neurobench": "NeuroBench: the same as its SynapticOperations (Effective_ACs, Effective_MACs, Dense) where they "
    "overlap: per sample, summed over time steps, bias excluded, only nonzero inputs times nonzero weights, ACs for "
    "spiking inputs and MACs otherwise. Differences: NeuroBench's Dense runs the layer on an all-ones input, so it "
    "leaves out zero-padded border positions, which the dense count here includes; NeuroBench calls an input "
    "spiking when all its values are -1, 0 or 1 and decides per batch, here per image and for 0 and 1 only "
    "(neurons emit 0 and 1); bytes moved and the energy estimate are not NeuroBench metrics.",
}
"""The definitions a report records beside the counts (``operations.definitions``)."""


Fanout = Callable[[nn.Module, tuple[int, ...]], tuple[torch.Tensor, int, int]]
"""``(module, per-step input shape) -> (fan-out per input element, output elements per step, fan-in)``."""


def _weight_mask(module: nn.Module) -> torch.Tensor:
    """1.0 where the layer's weight (as the forward uses it: ``alpha * sign`` when binarized) is nonzero, float64."""
    weight = cast(torch.Tensor, module.weight).detach()
    return (weight != 0).to(torch.float64)


def _conv_fanout(module: nn.Module, shape: tuple[int, ...]) -> tuple[torch.Tensor, int, int]:
    """How many outputs each input element reaches through a nonzero weight: the gradient of the summed
    convolution of the weight mask, which follows the layer's own stride, padding, dilation and groups."""
    conv = cast(nn.Conv2d, module)
    mask = _weight_mask(conv)
    with torch.enable_grad():
        x = torch.zeros((1, *shape), dtype=torch.float64, device=mask.device, requires_grad=True)
        padded, padding = x, conv.padding
        if conv.padding_mode != "zeros":
            padded, padding = F.pad(x, conv._reversed_padding_repeated_twice, mode=conv.padding_mode), (0, 0)
        y = F.conv2d(padded, mask, None, conv.stride, padding, conv.dilation, conv.groups)
        (grad,) = torch.autograd.grad(y.sum(), x)
    return grad.reshape(-1), int(y[0].numel()), int(mask[0].numel())


def _linear_fanout(module: nn.Module, shape: tuple[int, ...]) -> tuple[torch.Tensor, int, int]:
    """Each input feature reaches the outputs whose weight row holds a nonzero entry for it."""
    mask = _weight_mask(module)
    return mask.sum(dim=0), int(mask.shape[0]), int(mask.shape[1])


SYNAPSE_COUNTERS: dict[str, Fanout] = {"conv": _conv_fanout, "linear": _linear_fanout}
"""The weighted layer types whose synaptic operations are counted, keyed by the layer type's record name."""


@dataclass(frozen=True)
class LayerOperations:
    """One weighted layer's operations and bytes per inference, averaged over the images measured.

    Attributes:
        name: module name (``layers.conv2``); ``kind``: the torch class (``Conv2d``).
        weight_bits: 1 for a binarized layer, 32 otherwise.
        steps: how often the layer runs for one image.
        fan_in: inputs per output; ``outputs_per_step``: output elements of one step.
        images: how many images were measured; ``spiking_images``: how many of them gave the layer an
            input of only 0 and 1 (its operations are ACs for those, MACs for the others).
        ac, mac: effective accumulates and multiply-accumulates per inference.
        input_rate: the fraction of input elements that were nonzero, over all steps and images.
        weight_bytes, activation_bytes: bytes moved per inference (see the module docstring).
    """

    name: str
    kind: str
    weight_bits: int
    steps: int
    fan_in: int
    outputs_per_step: int
    images: int
    spiking_images: int
    ac: float
    mac: float
    input_rate: float
    weight_bytes: float
    activation_bytes: float

    @property
    def dense(self) -> int:
        """Every synaptic operation of one inference: fan-in x output elements x steps."""
        return self.fan_in * self.outputs_per_step * self.steps

    @property
    def input(self) -> str:
        """``spikes`` (every image's input held only 0 and 1), ``analog`` (none did) or ``mixed``."""
        if self.spiking_images == self.images:
            return "spikes"
        return "analog" if self.spiking_images == 0 else "mixed"

    @property
    def energy_pj(self) -> float:
        """The estimate ``AC x 0.9 pJ + MAC x 4.6 pJ``."""
        return self.ac * AC_PJ + self.mac * MAC_PJ

    def as_dict(self) -> dict[str, Any]:
        """The report's ``operations.*.layers[*]`` entry."""
        return {
            "name": self.name,
            "type": self.kind,
            "weight_bits": self.weight_bits,
            "input": self.input,
            "spiking_images": self.spiking_images,
            "steps": self.steps,
            "fan_in": self.fan_in,
            "outputs_per_step": self.outputs_per_step,
            "dense": self.dense,
            "input_rate": self.input_rate,
            "ac": self.ac,
            "mac": self.mac,
            "energy_pj": self.energy_pj,
            "weight_bytes": self.weight_bytes,
            "activation_bytes": self.activation_bytes,
        }


@dataclass(frozen=True)
class ModelOperations:
    """A model's operations per inference: its weighted layers, and the neuron and batch-norm work counted apart."""

    layers: tuple[LayerOperations, ...]
    images: int
    neuron_updates: float = 0.0
    """Neurons x steps per inference (each LIF element at each step): not synaptic operations."""
    batch_norm_elements: float = 0.0
    """Batch-norm output elements x steps per inference: not synaptic operations."""

    @property
    def dense(self) -> int:
        return sum(layer.dense for layer in self.layers)

    @property
    def ac(self) -> float:
        return sum(layer.ac for layer in self.layers)

    @property
    def mac(self) -> float:
        return sum(layer.mac for layer in self.layers)

    @property
    def synaptic_ops(self) -> float:
        """Effective synaptic operations: AC + MAC."""
        return self.ac + self.mac

    @property
    def energy_pj(self) -> float:
        return sum(layer.energy_pj for layer in self.layers)

    @property
    def weight_bytes(self) -> float:
        return sum(layer.weight_bytes for layer in self.layers)

    @property
    def activation_bytes(self) -> float:
        return sum(layer.activation_bytes for layer in self.layers)

    @property
    def bytes_moved(self) -> float:
        return self.weight_bytes + self.activation_bytes

    def as_dict(self) -> dict[str, Any]:
        """The report's ``operations.input_model`` / ``operations.compressed_model`` entry."""
        return {
            "layers": [layer.as_dict() for layer in self.layers],
            "total": {
                "dense": self.dense,
                "ac": self.ac,
                "mac": self.mac,
                "synaptic_ops": self.synaptic_ops,
                "energy_pj": self.energy_pj,
                "weight_bytes": self.weight_bytes,
                "activation_bytes": self.activation_bytes,
                "bytes_moved": self.bytes_moved,
                "neuron_updates": self.neuron_updates,
                "batch_norm_elements": self.batch_norm_elements,
            },
        }


@dataclass
class _SynapseTally:
    """What one weighted layer did over the images so far (exact integer counts, as float64 sums)."""

    counter: Fanout
    fanout: torch.Tensor | None = None
    steps: int = 0
    fan_in: int = 0
    outputs_per_step: int = 0
    inputs_per_step: int = 0
    images: int = 0
    spiking_images: int = 0
    ac: float = 0.0
    mac: float = 0.0
    nonzero: float = 0.0

    def add(self, module: nn.Module, x: torch.Tensor) -> None:
        steps, batch = int(x.shape[0]), int(x.shape[1])
        shape = tuple(int(d) for d in x.shape[2:])
        if self.fanout is None:
            self.fanout, self.outputs_per_step, self.fan_in = self.counter(module, shape)
            self.steps, self.inputs_per_step = steps, int(self.fanout.numel())
        elif steps != self.steps:
            raise CompressionError(f"a layer ran {steps} steps in one pass and {self.steps} in another")
        per_image = x.detach().transpose(0, 1).reshape(batch, steps, -1)  # [B, steps, elements]
        spiking = ((per_image == 0) | (per_image == 1)).flatten(1).all(dim=1)
        nonzero = (per_image != 0).sum(dim=1, dtype=torch.float64)  # [B, elements]: steps each element was nonzero
        operations = nonzero @ self.fanout.to(nonzero.device)
        self.ac += float(operations[spiking].sum())
        self.mac += float(operations[~spiking].sum())
        self.nonzero += float(nonzero.sum())
        self.spiking_images += int(spiking.sum())
        self.images += batch

    def result(self, name: str, kind: str, weight_bits: int, stored_bytes: float) -> LayerOperations:
        images = max(self.images, 1)
        inputs = self.inputs_per_step * self.steps
        analog_images = self.images - self.spiking_images
        input_bytes = inputs * (self.spiking_images * SPIKE_BITS / 8 + analog_images * _FLOAT_BYTES) / images
        return LayerOperations(
            name=name,
            kind=kind,
            weight_bits=weight_bits,
            steps=self.steps,
            fan_in=self.fan_in,
            outputs_per_step=self.outputs_per_step,
            images=self.images,
            spiking_images=self.spiking_images,
            ac=self.ac / images,
            mac=self.mac / images,
            input_rate=self.nonzero / (inputs * images) if inputs else 0.0,
            weight_bytes=stored_bytes * self.steps,
            activation_bytes=input_bytes + self.outputs_per_step * self.steps * _FLOAT_BYTES,
        )


def check_countable(model: nn.Module) -> None:
    """Refuse a model with a weighted layer type :data:`SYNAPSE_COUNTERS` has no entry for (before a run's search).

    Raises:
        CompressionError: naming the layer and its type.
    """
    for name, module in model.named_modules():
        record = layer_type_of(module)
        if record is not None and "weight" in record.binarizable and record.name not in SYNAPSE_COUNTERS:
            raise CompressionError(
                f"layer {name} ({record.name}) has weights but no operation count; add its type to "
                "albsnn_compress.operations.SYNAPSE_COUNTERS"
            )


def count_operations(model: nn.Module, images: torch.Tensor, *, batch_size: int = 250) -> ModelOperations:
    """Run ``model`` (a :class:`~albsnn_compress.snn.spec.SpikingNet`) on ``images`` and count its operations.

    The model runs in eval mode without gradients, on the device of its parameters, and is
    left in the mode it was in. Every weighted layer's input is watched with
    :func:`~albsnn_compress.snn.recording.record_outputs`; nothing of the input tensors is kept.

    Args:
        model: the network; its layers take time-major inputs ``[steps, batch, ...]``.
        images: ``[N, C, H, W]`` as the model takes them (floats in ``[0, 1]`` for a SpikingNet).
        batch_size: images per forward pass.

    Returns:
        Per-inference averages over the ``N`` images.

    Raises:
        CompressionError: no image, or a binarizable layer type that :data:`SYNAPSE_COUNTERS` has no entry for.
    """
    if images.ndim < 1 or images.shape[0] == 0:
        raise CompressionError("counting operations needs at least one image")
    check_countable(model)
    storage = {row.name: row for row in layer_storage(model, binarized_layers(model))}
    synapses: dict[nn.Module, tuple[str, _SynapseTally]] = {}
    neurons: list[nn.Module] = []
    norms: list[nn.Module] = []
    for name, module in model.named_modules():
        record = layer_type_of(module)
        if record is None:
            continue
        if record.name in SYNAPSE_COUNTERS:
            synapses[module] = (name, _SynapseTally(SYNAPSE_COUNTERS[record.name]))
        elif record.temporal:
            neurons.append(module)
        elif record.name == "bn":
            norms.append(module)
    elements = {module: 0 for module in (*neurons, *norms)}

    def keep(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        if module in synapses:
            synapses[module][1].add(module, inputs[0])
        else:
            spikes = output[0] if isinstance(output, tuple) else output
            elements[module] += int(spikes.numel())

    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    count = int(images.shape[0])
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), record_outputs([*synapses, *neurons, *norms], keep):
            for start in range(0, count, batch_size):
                model(images[start : start + batch_size].to(device))
    finally:
        model.train(was_training)
    layers = []
    for name, tally in synapses.values():
        row = storage[name]
        layers.append(tally.result(name, row.kind, row.weight_bits, row.bits_after / 8))
    return ModelOperations(
        tuple(layers),
        count,
        neuron_updates=sum(elements[module] for module in neurons) / count,
        batch_norm_elements=sum(elements[module] for module in norms) / count,
    )


SAVED_KEYS = ("synaptic_ops", "ac", "mac", "energy_pj", "weight_bytes", "activation_bytes", "bytes_moved")
"""The totals whose saving (input model -> compressed model) the report states in percent."""


def saved_percent(before: float, after: float) -> float | None:
    """``100 x (before - after) / before``; ``None`` when there was nothing before."""
    return 100.0 * (before - after) / before if before else None


def operations_section(
    input_model: ModelOperations, compressed_model: ModelOperations, *, split: str, image_limit: int = MAX_IMAGES
) -> dict[str, Any]:
    """The report's ``operations`` section: both models on the same images, the definitions and the constants.

    Args:
        input_model: :func:`count_operations` of the float model the run started from.
        compressed_model: the same for the compressed model, on the same images.
        split: which split the images came from (``test``).
        image_limit: the most images a run measures (recorded beside the number measured).

    Raises:
        CompressionError: the two counts cover different images or different layers.
    """
    if input_model.images != compressed_model.images:
        raise CompressionError(
            f"the models were measured on {input_model.images} and {compressed_model.images} images; "
            "count both on the same images"
        )
    if [layer.name for layer in input_model.layers] != [layer.name for layer in compressed_model.layers]:
        raise CompressionError("the input and compressed models have different weighted layers")
    before, after = input_model.as_dict()["total"], compressed_model.as_dict()["total"]
    return {
        "split": split,
        "images": input_model.images,
        "image_limit": image_limit,
        "energy": {"ac_pj": AC_PJ, "mac_pj": MAC_PJ, "label": ENERGY_LABEL, "source": ENERGY_SOURCE},
        "definitions": dict(DEFINITIONS),
        "input_model": input_model.as_dict(),
        "compressed_model": compressed_model.as_dict(),
        "saved_percent": {key: saved_percent(before[key], after[key]) for key in SAVED_KEYS},
    }
