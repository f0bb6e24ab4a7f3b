"""The ``.albsnn`` architecture checks: the header's spec must fit the file and match its tensor table.

After :mod:`albsnn_compress.formats.container_header` has checked the framing,
this module measures the spec with integer arithmetic alone
(:func:`albsnn_compress.snn.spec.spec_bounds`), refuses one that cannot fit the
file, and only then builds a template model to list the tensors it needs, each
with its allowed kinds: a layer listed in ``binarized`` stores its binarizable
tensors (the layer type's record says which) as 1-bit ``binary`` plus a float32
``<tensor>_scale`` per output channel.
"""

from __future__ import annotations

from typing import Any

import torch

from albsnn_compress.errors import ContainerError, SpecError
from albsnn_compress.formats.container_header import TensorEntry
from albsnn_compress.snn.layer_types import layer_type_of
from albsnn_compress.snn.spec import SpikingNet, normalize_spec, spec_bounds

__all__ = ["MAX_ACTIVATION", "SCALE_SUFFIX", "Expected", "architecture_tensors", "check_tensor_set", "binarizable_tensors"]

MAX_ACTIVATION = 1 << 22  # elements of one layer's per-sample output (16 MiB as float32)
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


def _build_template(header: dict[str, Any], data_size: int | None) -> SpikingNet:
    """The header's model (random weights), built only once its size is known to fit the file.

    ``data_size=None`` (the writer, whose model exists) skips the fits-the-file bound.
    """
    try:
        spec = normalize_spec(header["spec"])
        params, largest = spec_bounds(spec)
        if largest > MAX_ACTIVATION:
            raise ContainerError(f"field 'spec': a layer outputs {largest} elements per sample (at most {MAX_ACTIVATION})")
        if data_size is not None and params > 8 * data_size:
            raise ContainerError(
                f"field 'spec': the architecture has {params} parameters, more than a {data_size}-byte data section can hold"
            )
        with torch.random.fork_rng(devices=[]):  # reading a file must not move the global RNG
            return SpikingNet(spec, header["timesteps"])
    except ContainerError:
        raise
    except SpecError as exc:
        raise ContainerError(f"field 'spec': {exc}") from None
    except (RuntimeError, ValueError, TypeError, OverflowError) as exc:
        raise ContainerError(f"field 'spec': cannot build the architecture ({type(exc).__name__}: {exc})") from None


def architecture_tensors(header: dict[str, Any], data_size: int | None) -> tuple[SpikingNet, Expected]:
    """Build the header's model and list the tensors it needs: ``name -> (allowed kinds, shape)``, in state order.

    Also checks ``binarized`` and ``class_names`` against the architecture.
    """
    model = _build_template(header, data_size)
    layers = binarizable_tensors(model)
    for name in header["binarized"]:
        if name not in layers:
            raise ContainerError(f"field 'binarized': {name!r} is not a binarizable layer of the architecture ({', '.join(layers)})")
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
