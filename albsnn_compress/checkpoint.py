"""Safe checkpoints: a plain dict of tensors and JSON-able values, never a pickled object.

Layout (what ``torch.load(path, weights_only=True)`` returns)::

    {
      "format": "albsnn-checkpoint", "version": 1,
      "spec": {...},                 # the architecture, see albsnn_compress.snn.spec
      "timesteps": 1,
      "binarized": ["layers.conv3"], # layers whose weights are alpha * sign(W)
      "precisions": {"layers.conv4": 4},  # k-bit layers (k >= 2), weights as codes * scale; optional
      "state_dict": {name: tensor},
      "metadata": {"dataset": ..., "class_names": [...], "accuracy": {...}, "seed": ..., "versions": {...}},
    }

Loading always uses ``weights_only=True`` and never falls back. Before
``torch.load`` sees a file, its first bytes must be a zip archive's, and the
archive must be neither TorchScript (CVE-2025-32434) nor compressed, so loading
allocates at most the file's size. The spec is then measured with integers alone
(its limits and its parameters against the file's size) and every value is
checked against the architecture and for finiteness before a model is built.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from albsnn_compress.binarize import binarize_, binarized_layers, candidate_layers
from albsnn_compress.errors import CheckpointError, SpecError, one_line
from albsnn_compress.files.atomic import atomic_write
from albsnn_compress.files.file_kind import HEAD_BYTES, sniff
from albsnn_compress.files.model_cost import cost_problem
from albsnn_compress.precision import FLOAT_BITS, PRECISIONS, layer_bits, set_precision_
from albsnn_compress.snn.spec import SpikingNet, normalize_spec, spec_bounds

__all__ = [
    "Checkpoint",
    "save_checkpoint",
    "read_checkpoint",
    "load_checkpoint",
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
]

CHECKPOINT_FORMAT = "albsnn-checkpoint"
CHECKPOINT_VERSION = 1
_ALLOWED_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int64)
_HOW_TO_SAVE = "save models with albsnn_compress.save_checkpoint or `albsnn-compress train`"
_MIN_BYTES_PER_VALUE = 2  # the narrowest allowed dtype (float16, bfloat16), stored uncompressed
_CHUNK = 1 << 18  # values checked at a time (1 MiB of float32)
# What zipfile may raise on a damaged archive (NotImplementedError: a "zip version" byte from the future).
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    OSError,
    EOFError,
    ValueError,
    NotImplementedError,
    struct.error,
    OverflowError,
    KeyError,
    IndexError,
)
# What a spec check may raise on a value no JSON file could hold but a pickle can (a tensor, a set, ...); caught
# around the check of the raw spec only, never around code that runs on the normalized one.
_SPEC_ESCAPES = (ValueError, TypeError, AttributeError, RuntimeError, OverflowError, KeyError, IndexError)


@dataclass
class Checkpoint:
    """A validated checkpoint's content."""

    spec: dict[str, Any]
    timesteps: int
    state_dict: dict[str, torch.Tensor]
    binarized: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    precisions: dict[str, int] = field(default_factory=dict)

    def build(self) -> SpikingNet:
        """The model, weights loaded, binarized and k-bit layers re-marked (bit-exact: both are idempotent),
        in eval mode."""
        model = SpikingNet(self.spec, self.timesteps)
        model.load_state_dict(self.state_dict)
        binarize_(model, self.binarized)
        set_precision_(model, self.precisions)
        return model.eval()


def _effective_state_dict(model: SpikingNet) -> dict[str, torch.Tensor]:
    """State dict with the weights as the model computes them (binarized ones as alpha*sign)."""
    clean = SpikingNet(model.spec, model.timesteps)
    state = {}
    with torch.no_grad():
        for name, module in model.named_modules():
            for key, value in list(module.named_parameters(recurse=False)) + list(module.named_buffers(recurse=False)):
                state[f"{name}.{key}" if name else key] = value.detach().cpu().clone()
            if hasattr(module, "parametrizations"):
                state[f"{name}.weight"] = module.weight.detach().cpu().clone()
    expected = clean.state_dict().keys()
    return {key: state[key].contiguous() for key in expected}


def save_checkpoint(path: str | Path, model: SpikingNet, metadata: dict[str, Any] | None = None) -> None:
    """Write ``model`` and ``metadata`` to ``path`` atomically (temp file, fsync, rename)."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "spec": model.spec,
        "timesteps": model.timesteps,
        "binarized": binarized_layers(model),
        "state_dict": _effective_state_dict(model),
        "metadata": dict(metadata or {}),
    }
    quantized = {name: bits for name, bits in layer_bits(model).items() if 1 < bits < FLOAT_BITS}
    if quantized:  # only then: a float or binary model's file is what it was before k-bit layers existed
        payload["precisions"] = quantized
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    with atomic_write(path) as stream:
        stream.write(buffer.getvalue())


def _sniff(path: Path) -> int:
    """Refuse, from its first bytes, a file that is not a zip archive (what ``torch.save`` writes); return its size.

    So random bytes, text, a raw pickle or a container are named for what they are,
    and ``torch.load`` (which would print warnings, or allocate what a legacy-format
    file declares) only ever sees a zip.
    """
    with open(path, "rb") as stream:
        size = os.fstat(stream.fileno()).st_size
        found = sniff(stream.read(HEAD_BYTES))
    if found.kind == "zip":
        return size
    if found.kind == "container":
        raise CheckpointError(
            f"{path}: is {found.description}, not a model.pt checkpoint; read it with read_container "
            "(eval and inspect take it)"
        )
    if found.kind == "damaged-container":
        raise CheckpointError(f"{path}: starts like {found.description}; copy it again in binary mode")
    if found.kind == "pickle":
        raise CheckpointError(
            f"{path}: is {found.description}, not a checkpoint (a zip archive expected); "
            f"pickles are never unpickled; {_HOW_TO_SAVE}"
        )
    raise CheckpointError(
        f"{path}: is {found.description}, not a PyTorch checkpoint (a zip archive expected); {_HOW_TO_SAVE}"
    )


def _check_archive(path: Path, size: int) -> None:
    """Refuse a damaged zip, a TorchScript archive (CVE-2025-32434) and compressed members (a zip bomb).

    ``torch.save`` stores every member uncompressed, so the archive's content can
    never exceed the file: ``torch.load`` then allocates at most the file's size.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except _ZIP_ERRORS as exc:
        raise CheckpointError(
            f"{path}: is a truncated or damaged zip archive, not a readable PyTorch checkpoint ({exc}); "
            "copy the file again"
        ) from exc
    names = [member.filename for member in members]
    if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
        raise CheckpointError(f"{path}: is a TorchScript archive, not an albsnn checkpoint; {_HOW_TO_SAVE}")
    for member in members:
        if member.compress_type != zipfile.ZIP_STORED:
            raise CheckpointError(
                f"{path}: member {member.filename!r} is compressed; torch.save writes uncompressed archives "
                f"(a compressed one could expand far beyond the file's size); {_HOW_TO_SAVE}"
            )
    declared = sum(member.file_size for member in members)
    if declared > size:
        raise CheckpointError(
            f"{path}: the archive declares {declared} bytes of content in a {size}-byte file; the file is corrupt"
        )


def _torch_load(path: Path) -> Any:
    try:
        with warnings.catch_warnings():  # our error below is the one line the user needs
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - every failure mode becomes one clear error
        text = one_line(exc)
        if "Weights only load failed" in str(exc) or "Unsupported global" in str(exc):
            # from None, deliberately: torch's message repeats the pickle's global names (text the file's author
            # chose) and advises loading it with weights_only=False, which would run that pickle's code
            raise CheckpointError(
                f"{path}: holds pickled Python objects (e.g. a whole nn.Module), which are never unpickled; "
                f"{_HOW_TO_SAVE}"
            ) from None
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint (a damaged zip archive: {text}); copy the file again"
        ) from exc


def _shown(value: Any) -> str:
    """A payload value for a one-line message: plain values as repr (shortened), anything else by its type."""
    plain = (bool, int, float, str, type(None))
    flat = type(value) in (list, tuple) and all(type(item) in plain for item in value)
    mapping = type(value) is dict and all(type(k) in plain and type(v) in plain for k, v in value.items())
    if type(value) in plain or flat or mapping:
        text = repr(value)
        return text if len(text) <= 80 else text[:77] + "..."
    return type(value).__name__


def _spec(path: Path, payload: dict[str, Any], size: int) -> tuple[dict[str, Any], int]:
    """The normalized spec and time steps, measured (integers only) and refused before anything is built."""
    timesteps = payload.get("timesteps")
    if type(timesteps) is not int or timesteps < 1:
        raise CheckpointError(f"{path}: 'timesteps' must be an integer >= 1, got {_shown(timesteps)}")
    try:
        spec = normalize_spec(payload.get("spec"))
    except SpecError as exc:
        raise CheckpointError(f"{path}: bad architecture spec: {one_line(exc)}") from exc
    except _SPEC_ESCAPES as exc:  # a check that lets a pickled value through unnamed (e.g. keys that are not strings)
        raise CheckpointError(f"{path}: bad architecture spec ({type(exc).__name__}: {one_line(exc)})") from exc
    try:  # on the normalized spec: only a SpecError is the file's fault, anything else a bug of ours
        problem = cost_problem(spec, timesteps)
        params, _ = spec_bounds(spec)
    except SpecError as exc:
        raise CheckpointError(f"{path}: bad architecture spec: {one_line(exc)}") from exc
    if problem is not None:
        raise CheckpointError(f"{path}: {problem}")
    if params * _MIN_BYTES_PER_VALUE > size:
        raise CheckpointError(
            f"{path}: 'spec': the architecture has {params} parameters, more than a {size}-byte checkpoint can hold "
            f"(every value takes at least {_MIN_BYTES_PER_VALUE} bytes); the spec does not belong to these weights"
        )
    return spec, timesteps


def _check_state_dict(path: Path, state: Any, model: SpikingNet) -> dict[str, torch.Tensor]:
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: 'state_dict' must be a dict of tensors, got {type(state).__name__}")
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        raise CheckpointError(
            f"{path}: state_dict does not match the architecture (missing {missing[:3]}, unexpected {extra[:3]})"
        )
    for key, value in state.items():
        if not isinstance(value, torch.Tensor) or value.layout != torch.strided or value.is_meta:
            raise CheckpointError(f"{path}: state_dict[{key!r}] must be a dense tensor, got {type(value).__name__}")
        if value.dtype not in _ALLOWED_DTYPES:
            raise CheckpointError(
                f"{path}: state_dict[{key!r}] has dtype {value.dtype}, expected one of {_ALLOWED_DTYPES}"
            )
        if value.shape != expected[key].shape:
            raise CheckpointError(
                f"{path}: state_dict[{key!r}] has shape {list(value.shape)}, "
                f"the architecture needs {list(expected[key].shape)}"
            )
    converted = {key: value.to(expected[key].dtype) for key, value in state.items()}
    for key, value in converted.items():
        _check_finite(path, key, value)
    return converted


def _first_bad(values: torch.Tensor, nonnegative: bool) -> float | None:
    """The first value that is not finite (or, with ``nonnegative``, below zero), or ``None``; chunked."""
    flat = values.reshape(-1)
    for start in range(0, flat.numel(), _CHUNK):
        part = flat[start : start + _CHUNK]
        good = torch.isfinite(part)
        if nonnegative:
            good &= part >= 0
        if not bool(good.all()):
            return float(part[~good][0])
    return None


def _check_finite(path: Path, key: str, value: torch.Tensor) -> None:
    """A NaN or inf weight or statistic (or a negative variance) makes a model that cannot work: refuse it, named."""
    if not value.is_floating_point():
        return
    variance = key.endswith(".running_var")
    bad = _first_bad(value, nonnegative=variance)
    if bad is None:
        return
    if variance:
        raise CheckpointError(
            f"{path}: state_dict[{key!r}] is a batch-norm variance and must be finite and >= 0, found {bad}"
        )
    raise CheckpointError(
        f"{path}: state_dict[{key!r}] must hold finite values, found {bad} (a diverged training run?); "
        "retrain the model"
    )


def read_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Load and validate a checkpoint file without building the model.

    Order: the file's first bytes (a zip archive), the archive (not TorchScript,
    members uncompressed), ``torch.load(weights_only=True)``, the format tag, the
    spec measured by integer arithmetic (its limits, :mod:`albsnn_compress.files.model_cost`,
    and its parameters against the file's size), then every tensor against a
    shape-only template (meta device) and every float value for finiteness.

    Raises:
        CheckpointError: the file is missing, foreign, truncated, pickled code, too
            costly for its size, or inconsistent; the message names the file and the field.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file; pass a model.pt written by `albsnn-compress train`")
    try:
        size = _sniff(path)
        _check_archive(path, size)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    payload = _torch_load(path)
    tag = payload.get("format") if isinstance(payload, dict) else None
    if not (isinstance(tag, str) and tag == CHECKPOINT_FORMAT):
        found = _shown(tag) if isinstance(payload, dict) else repr(type(payload).__name__)
        raise CheckpointError(f"{path}: format tag is {found}, expected {CHECKPOINT_FORMAT!r}; {_HOW_TO_SAVE}")
    version = payload.get("version")
    if type(version) is not int or version != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint version {_shown(version)} is not supported (expected {CHECKPOINT_VERSION})"
        )
    spec, timesteps = _spec(path, payload, size)
    try:  # from the normalized spec: only a SpecError (e.g. the last layer's shape) is the file's fault
        with torch.device("meta"):  # shapes only: nothing is allocated
            template = SpikingNet(spec, timesteps)
    except SpecError as exc:
        raise CheckpointError(f"{path}: bad architecture spec: {one_line(exc)}") from exc
    state = _check_state_dict(path, payload.get("state_dict"), template)
    binarized = payload.get("binarized", [])
    candidates = set(candidate_layers(template, include_first_last=True))
    if not isinstance(binarized, list) or not all(isinstance(n, str) and n in candidates for n in binarized):
        raise CheckpointError(
            f"{path}: 'binarized' must list binarizable layer names {sorted(candidates)}, got {_shown(binarized)}"
        )
    precisions = _precisions(path, payload.get("precisions", {}), candidates, set(binarized))
    metadata = payload.get("metadata", {})
    if not isinstance(metadata, dict):
        raise CheckpointError(f"{path}: 'metadata' must be a dict, got {type(metadata).__name__}")
    return Checkpoint(template.spec, timesteps, state, binarized, metadata, precisions)


def _precisions(path: Path, value: object, candidates: set[str], binarized: set[str]) -> dict[str, int]:
    """The file's ``precisions``: binarizable layers (not also binarized) to a registered precision of 2+ bits."""
    quantized = sorted(key for key in PRECISIONS if 1 < int(key))
    if not isinstance(value, dict) or not all(
        isinstance(name, str)
        and name in candidates
        and name not in binarized
        and type(bits) is int
        and str(bits) in quantized
        for name, bits in value.items()
    ):
        raise CheckpointError(
            f"{path}: 'precisions' must map binarizable layer names {sorted(candidates)} that are not binarized to "
            f"bits {quantized}, got {_shown(value)}"
        )
    return dict(value)


def load_checkpoint(path: str | Path) -> SpikingNet:
    """The model stored at ``path``, ready to run (eval mode, CPU).

    Its metadata is available as ``model.metadata``.
    """
    checkpoint = read_checkpoint(path)
    model = checkpoint.build()
    model.metadata = checkpoint.metadata
    return model
