"""Where an imported network comes from (a user's factory and weights file) and what its checkpoint records.

``albsnn-compress import --from snntorch --factory my_models.py:build_net --weights w.pt``
runs the user's own code by their explicit request: :func:`load_factory_net`
executes ``my_models.py`` and calls ``build_net()`` with no arguments. The weights
are still read with ``torch.load(..., weights_only=True)`` (no code in them runs),
then loaded strictly into the built network. :func:`import_metadata` checks the
imported model against the dataset it will be compressed on and returns the
checkpoint metadata ``compress`` needs (``dataset``, ``class_names``) plus where
the model came from.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from albsnn_compress.data.registry import dataset_info
from albsnn_compress.errors import InteropError, one_line
from albsnn_compress.snn.spec import SpikingNet, accepts_input_shape
from albsnn_compress.versions import package_versions

__all__ = ["parse_factory", "load_factory_net", "load_weights", "import_metadata"]


def parse_factory(factory: str) -> tuple[Path, str]:
    """``"my_models.py:build_net"`` as (file, function name).

    Raises:
        InteropError: not ``FILE.py:FUNCTION``, the file is missing, or the name is not an identifier.
    """
    path_text, _, function = factory.rpartition(":")
    path = Path(path_text)
    if not path_text or not function.isidentifier() or path.suffix != ".py":
        raise InteropError(f"--factory {factory!r}: expected FILE.py:FUNCTION, e.g. my_models.py:build_net")
    if not path.is_file():
        raise InteropError(f"--factory {factory!r}: {path} is not a file")
    return path, function


def load_factory_net(factory: str) -> nn.Module:
    """Run ``FILE.py`` (its folder first on ``sys.path`` meanwhile) and return what ``FUNCTION()`` builds.

    Raises:
        InteropError: the file or function is missing, running it fails, or it returns no ``nn.Module``.
    """
    path, function = parse_factory(factory)
    name = f"_albsnn_factory_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise InteropError(f"--factory {factory!r}: cannot load {path} as Python")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.resolve().parent))
    try:
        spec.loader.exec_module(module)
        build = getattr(module, function, None)
        if not callable(build):
            raise InteropError(f"--factory {factory!r}: {path} defines no function {function}()")
        net = build()
    except InteropError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's own code failed: quote it on one line, keep it as the cause
        raise InteropError(
            f"--factory {factory!r}: running it failed: {one_line(f'{type(exc).__name__}: {exc}')}"
        ) from exc
    finally:
        sys.path.remove(str(path.resolve().parent))
    if not isinstance(net, nn.Module):
        raise InteropError(f"--factory {factory!r}: {function}() returned {type(net).__name__}, expected an nn.Module")
    return net


def load_weights(net: nn.Module, weights: Path) -> None:
    """Load a state dict strictly into ``net``: ``torch.save(net.state_dict(), path)``, or a dict holding one under
    ``state_dict`` (a training checkpoint).

    Raises:
        InteropError: the file is not a weights-only torch file, holds no state dict, or does not fit ``net``.
    """
    try:
        payload = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a file torch cannot read fails in many types; all are the file's fault
        raise InteropError(
            f"{weights}: not a weights-only torch file ({one_line(f'{type(exc).__name__}: {exc}')}); "
            "save it with torch.save(net.state_dict(), path)"
        ) from exc
    if isinstance(payload, dict) and isinstance(payload.get("state_dict"), dict):
        payload = payload["state_dict"]
    if not isinstance(payload, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in payload.items()
    ):
        raise InteropError(f"{weights}: expected a state dict (names -> tensors), got {type(payload).__name__}")
    try:
        net.load_state_dict(payload, strict=True)
    except RuntimeError as exc:  # missing, unexpected or mis-shaped keys: torch lists them
        raise InteropError(f"{weights}: does not fit the factory's network: {one_line(exc, 400)}") from exc


def import_metadata(model: SpikingNet, dataset: str, source: dict[str, Any]) -> dict[str, Any]:
    """Checkpoint metadata for an imported ``model`` that will be compressed on ``dataset``.

    Raises:
        DatasetError: unknown dataset name.
        InteropError: the model does not take the dataset's images (its input shape, or for a flat model its
            number of features, differs; :func:`~albsnn_compress.snn.spec.accepts_input_shape`) or has another
            class count.
    """
    info = dataset_info(dataset)
    shape, classes = tuple(model.spec["input"]["shape"]), model.spec["num_classes"]
    if not accepts_input_shape(model.spec, info.input_shape) or classes != info.num_classes:
        raise InteropError(
            f"the imported model takes {list(shape)} images and has {classes} classes; dataset {dataset} has "
            f"{list(info.input_shape)} images and {info.num_classes} classes; "
            "pass the matching --dataset or --input-shape"
        )
    # {"source": {"framework", ...}, "layers": {...}} from an importer; a NIR model may carry none
    known = dict(getattr(model, "metadata", None) or {})
    origin = known.pop("source", {})
    return {
        "dataset": dataset,
        "class_names": list(info.class_names),
        "imported": {**(origin if isinstance(origin, dict) else {"source": origin}), **known, **source},
        "versions": package_versions(),
    }
