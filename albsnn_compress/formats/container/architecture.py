"""The ``.albsnn`` architecture checks: the header's spec must fit the file and match its tensor table.

After :mod:`albsnn_compress.formats.container.header` has checked the framing,
this module measures the spec with integer arithmetic alone
(:func:`albsnn_compress.snn.spec.spec_bounds`, :mod:`albsnn_compress.files.model_cost`),
refuses one that cannot fit the file or breaks a limit, and only then builds a
shape-only template (meta device) to list the tensors it needs, each with its
allowed kinds: a layer listed in ``binarized`` stores its binarizable
tensors (the layer type's record says which) as 1-bit ``binary`` plus a float32
``<tensor>_scale`` per output channel.
"""

from __future__ import annotations

from typing import Any

import torch

from albsnn_compress.errors import ContainerError, SpecError
from albsnn_compress.files.model_cost import MAX_ACTIVATION, cost_problem
from albsnn_compress.formats.container.header import TensorEntry
from albsnn_compress.snn.layer_types import layer_type_of
from albsnn_compress.snn.spec import SpikingNet, normalize_spec, spec_bounds

__all__ = [
    "MAX_ACTIVATION",
    "SCALE_SUFFIX",
    "Expected",
    "architecture_tensors",
    "instantiate",
    "check_tensor_set",
    "binarizable_tensors",
]

SCALE_SUFFIX = "_scale"

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
    (every stored weight takes at least one bit). Also checks ``binarized`` and
    ``class_names`` against the architecture. Tensors are listed in state order.
    """
    model = _template(header, data_size)
    layers = binarizable_tensors(model)
    for name in header["binarized"]:
        if name not in layers:
            raise ContainerError(
                f"field 'binarized': {name!r} is not a binarizable layer of the architecture ({', '.join(layers)})"
            )
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
        else:
            expected[key] = (("float32", "float16"), shape)
    return model, expected


def check_tensor_set(entries: list[TensorEntry], expected: Expected) -> None:
    """Require exactly the architecture's tensors, each with an allowed kind and the right shape."""
    for entry in entries:
        where = f"tensor {entry.name!r}"
        if entry.name not in expected:
            raise ContainerError(f"{where}: not part of the architecture (unexpected tensor)")
        kinds, shape = expected[entry.name]
        if entry.kind not in kinds:
            if "binary" in kinds:
                reason = "its layer is listed in 'binarized'"
            elif entry.name.endswith(SCALE_SUFFIX):
                reason = "scales are float32"
            else:
                reason = "its layer is not in 'binarized'"
            raise ContainerError(f"{where}: kind {entry.kind!r}, expected {' or '.join(kinds)} ({reason})")
        if entry.shape != shape:
            if entry.name.endswith(SCALE_SUFFIX) and kinds == ("float32",):
                raise ContainerError(
                    f"{where}: shape {list(entry.shape)}, expected {list(shape)} (one scale per output channel of "
                    f"{entry.name[: -len(SCALE_SUFFIX)]!r})"
                )
            raise ContainerError(f"{where}: shape {list(entry.shape)}, the architecture needs {list(shape)}")
    present = {entry.name for entry in entries}
    for name in expected:
        if name not in present:
            raise ContainerError(f"tensor {name!r}: required by the architecture but missing")
