"""The ``.albsnn`` architecture checks: the header's spec must fit the file and match its tensor table.

After :mod:`albsnn_compress.formats.container.header` has checked the framing,
this module measures the spec with integer arithmetic alone
(:func:`albsnn_compress.snn.spec.spec_bounds`, :mod:`albsnn_compress.files.model_cost`),
refuses one that cannot fit the file or breaks a limit, and only then builds a
shape-only template (meta device) to list the tensors it needs, each with its
allowed kinds: a layer listed in ``binarized`` stores its binarizable
tensors (the layer type's record says which) as 1-bit ``binary`` plus a float32
``<tensor>_scale`` per output channel; a layer listed in ``precisions`` (version 2)
stores its ``weight`` as ``int2``, ``int4`` or ``int8`` codes plus a float32
``weight_clip`` per output channel.
"""

from __future__ import annotations

from typing import Any

import torch

from albsnn_compress.errors import ContainerError, SpecError
from albsnn_compress.files.model_cost import MAX_ACTIVATION, cost_problem
from albsnn_compress.formats.container.header import CODE_KINDS, PRECISIONS_FIELD, TensorEntry
from albsnn_compress.snn.layer_types import layer_type_of
from albsnn_compress.snn.spec import SpikingNet, normalize_spec, spec_bounds

__all__ = [
    "MAX_ACTIVATION",
    "SCALE_SUFFIX",
    "CLIP_SUFFIX",
    "Expected",
    "architecture_tensors",
    "instantiate",
    "check_tensor_set",
    "binarizable_tensors",
]

SCALE_SUFFIX = "_scale"
"""``<tensor>_scale``: the float32 per-channel scale of a binary tensor."""
CLIP_SUFFIX = "_clip"
"""``weight_clip``: the float32 per-channel clip of a k-bit weight (the magnitude of its largest code)."""
_CODE_KIND_OF = {bits: kind for kind, bits in CODE_KINDS.items()}

Expected = dict[str, tuple[tuple[str, ...], tuple[int, ...]]]
"""What an architecture needs: tensor name -> (allowed kinds, shape), in model state order."""


def binarizable_tensors(model: torch.nn.Module) -> dict[str, tuple[str, ...]]:
    """Layer name -> the tensor names its layer type may store at 1 bit, for every such layer."""
    found = {}
    for name, module in model.named_modules():
        record = layer_type_of(module)
        if record is not None and record.binarizable:
            found[name] = record.binarizable
    return found


def _template(header: dict[str, Any], data_size: int | None) -> SpikingNet:
    """The header's model as shapes only (meta device: nothing allocated), once its cost is known to fit.

    ``data_size=None`` (the writer, whose model exists) skips the fits-the-file bound.
    """
    try:
        spec = normalize_spec(header["spec"])
        problem = cost_problem(spec, header["timesteps"])
        if problem is not None:
            raise ContainerError(f"field {problem}")
        params, _ = spec_bounds(spec)
        if data_size is not None and params > 8 * data_size:
            raise ContainerError(
                f"field 'spec': the architecture has {params} parameters, more than a {data_size}-byte data section "
                "can hold"
            )
        with torch.device("meta"):
            return SpikingNet(spec, header["timesteps"])
    except ContainerError:
        raise
    except SpecError as exc:
        raise ContainerError(f"field 'spec': {exc}") from exc
    except (RuntimeError, ValueError, TypeError, OverflowError) as exc:
        raise ContainerError(f"field 'spec': cannot build the architecture ({type(exc).__name__}: {exc})") from exc


def instantiate(template: SpikingNet) -> SpikingNet:
    """A real model (CPU, randomly initialised) of ``template``'s architecture, for the reader to fill in place.

    The reader calls it only once the data section has passed every check; reading
    a file must not move the global RNG.
    """
    with torch.random.fork_rng(devices=[]), torch.device("cpu"):
        return SpikingNet(template.spec, template.timesteps)


def architecture_tensors(header: dict[str, Any], data_size: int | None) -> tuple[SpikingNet, Expected]:
    """The header's model as shapes (meta device) and the tensors it needs: ``name -> (allowed kinds, shape)``.

    Refuses, before anything is allocated, a spec that breaks a limit of
    :mod:`albsnn_compress.files.model_cost` (time steps, activation size, the memory of a
    forward pass of one image) or that has more parameters than ``8 * data_size``
    (every stored weight takes at least one bit). Also checks ``binarized``,
    ``precisions`` (version 2) and ``class_names`` against the architecture. Tensors
    are listed in state order, each per-channel scale or clip right after its weight.
    """
    model = _template(header, data_size)
    layers = binarizable_tensors(model)
    for name in header["binarized"]:
        if name not in layers:
            raise ContainerError(
                f"field 'binarized': {name!r} is not a binarizable layer of the architecture ({', '.join(layers)})"
            )
    precisions: dict[str, int] = header.get(PRECISIONS_FIELD, {})  # version 1 has no k-bit layers
    _check_precision_layers(precisions, header["binarized"], layers)
    names = header["class_names"]
    if names is not None and len(names) != model.spec["num_classes"]:
        raise ContainerError(f"field 'class_names': {len(names)} names for {model.spec['num_classes']} classes")
    binarized = set(header["binarized"])
    expected: Expected = {}
    for key, value in model.state_dict().items():
        module, _, attr = key.rpartition(".")
        if attr == "num_batches_tracked":
            continue
        shape = tuple(value.shape)
        if module in binarized and attr in layers[module]:
            expected[key] = (("binary",), shape)
            expected[key + SCALE_SUFFIX] = (("float32",), shape[:1])
        elif module in precisions and attr == "weight":
            expected[key] = ((_CODE_KIND_OF[precisions[module]],), shape)
            expected[key + CLIP_SUFFIX] = (("float32",), shape[:1])
        else:
            expected[key] = (("float32", "float16"), shape)
    return model, expected


def _check_precision_layers(
    precisions: dict[str, int], binarized: list[str], layers: dict[str, tuple[str, ...]]
) -> None:
    """Every k-bit layer is a conv or linear layer of the architecture (those whose weight is binarizable, the layers
    :func:`albsnn_compress.precision.set_precision_` takes) and is not also binarized: a layer has one precision."""
    for name in precisions:
        if "weight" not in layers.get(name, ()):
            choices = ", ".join(n for n, tensors in layers.items() if "weight" in tensors)
            raise ContainerError(
                f"field {PRECISIONS_FIELD!r}: {name!r} is not a conv or linear layer of the architecture ({choices})"
            )
        if name in binarized:
            raise ContainerError(
                f"field {PRECISIONS_FIELD!r}: {name!r} is also listed in 'binarized' (a layer has one precision)"
            )


def _per_channel_suffix(name: str, kinds: tuple[str, ...]) -> str:
    """``_scale`` or ``_clip`` when ``name`` is a binary or k-bit weight's per-channel float32 tensor, else ``""``."""
    if kinds == ("float32",):
        for suffix in (SCALE_SUFFIX, CLIP_SUFFIX):
            if name.endswith(suffix):
                return suffix
    return ""


def _kind_reason(entry: TensorEntry, kinds: tuple[str, ...]) -> str:
    """Why the architecture wants ``kinds`` for ``entry``: the header list its layer is (or is not) in."""
    if "binary" in kinds:
        return "its layer is listed in 'binarized'"
    if kinds[0] in CODE_KINDS:
        return f"its layer has {CODE_KINDS[kinds[0]]} bits in {PRECISIONS_FIELD!r}"
    suffix = _per_channel_suffix(entry.name, kinds)
    if suffix:
        return f"{suffix[1:]}s are float32"
    if entry.kind in CODE_KINDS:
        return f"its layer is not in {PRECISIONS_FIELD!r}"
    return "its layer is not in 'binarized'"


def check_tensor_set(entries: list[TensorEntry], expected: Expected) -> None:
    """Require exactly the architecture's tensors, each with an allowed kind and the right shape."""
    for entry in entries:
        where = f"tensor {entry.name!r}"
        if entry.name not in expected:
            raise ContainerError(f"{where}: not part of the architecture (unexpected tensor)")
        kinds, shape = expected[entry.name]
        if entry.kind not in kinds:
            raise ContainerError(
                f"{where}: kind {entry.kind!r}, expected {' or '.join(kinds)} ({_kind_reason(entry, kinds)})"
            )
        if entry.shape != shape:
            suffix = _per_channel_suffix(entry.name, kinds)
            if suffix:
                raise ContainerError(
                    f"{where}: shape {list(entry.shape)}, expected {list(shape)} (one {suffix[1:]} per output channel "
                    f"of {entry.name[: -len(suffix)]!r})"
                )
            raise ContainerError(f"{where}: shape {list(entry.shape)}, the architecture needs {list(shape)}")
    present = {entry.name for entry in entries}
    for name in expected:
        if name not in present:
            raise ContainerError(f"tensor {name!r}: required by the architecture but missing")
