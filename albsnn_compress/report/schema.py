"""The report's JSON schema (versioned), its validator, and the safe reader.

The JSON document is the report: every other form (terminal, Markdown, HTML) is
rendered from it, so a saved ``report.json`` reproduces every figure. The schema
is a plain JSON Schema (draft 2020-12) dict, :data:`SCHEMA`; ``docs/report.md``
describes every field. :func:`validate_report` checks a document against it with
a small built-in validator (the subset of JSON Schema that :data:`SCHEMA` uses:
``type``, ``properties``, ``required``, ``additionalProperties``, ``items``,
``enum``, ``const``, ``minimum`` and local ``$ref``), so reading a report needs no
extra dependency; the tests check that ``jsonschema`` agrees with it. On top of
the schema it checks the accounting: every layer's tensors sum to the layer's
bits, and the layers sum to the totals.

Versioning: :data:`SCHEMA_VERSION` is bumped whenever a field is added, removed,
renamed or changes meaning; a reader accepts only the versions in
:data:`SUPPORTED_VERSIONS` and names the fix for any other. Each supported version is
validated against its own schema (:data:`SCHEMAS`): a version-2 document (no
``operations``) still reads, exactly as version 2 described it.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

from albsnn_compress import limits
from albsnn_compress.errors import ReportError, StrictJSONError
from albsnn_compress.files.strict_json import strict_loads

__all__ = [
    "SCHEMA",
    "SCHEMAS",
    "SCHEMA_ID",
    "SCHEMA_VERSION",
    "SUPPORTED_VERSIONS",
    "MAX_REPORT_BYTES",
    "validate_report",
    "parse_report",
    "load_report",
]

SCHEMA_ID = "albsnn-compress/report"
SCHEMA_VERSION = 3
SUPPORTED_VERSIONS = (2, 3)  # 1 named raw estimates as points; 2 lacks operations; see docs/report.md, Versioning
MAX_REPORT_BYTES = 64 * 1024 * 1024
_MAX_DEPTH = limits.MAX_JSON_DEPTH  # a report nests 5 levels; anything near this is not a report
_MAX_INT_DIGITS = 40  # bit counts fit in 20 digits

_COUNT = {"type": "integer", "minimum": 0}
_AMOUNT = {"type": "number", "minimum": 0}
_NUMBER = {"type": "number"}
_NUMBER_OR_NULL = {"type": ["number", "null"]}
_STRINGS = {"type": "array", "items": {"type": "string"}}


def _object(properties: dict[str, Any], optional: tuple[str, ...] = ()) -> dict[str, Any]:
    """A closed object schema whose properties are all required except ``optional``."""
    return {
        "type": "object",
        "required": [key for key in properties if key not in optional],
        "additionalProperties": False,
        "properties": properties,
    }


_FILE = _object({"path": {"type": ["string", "null"]}, "bytes": {"type": ["integer", "null"], "minimum": 0}})

_PAIRED = _object(
    {
        "images": _COUNT,
        "lost": _COUNT,
        "gained": _COUNT,
        "resolution_points": _NUMBER,
        "drop_points": _NUMBER,
        "interval_confidence": _NUMBER,
        "interval_points": {"type": "array", "items": _NUMBER, "minItems": 2, "maxItems": 2},
        "decision_confidence": _NUMBER_OR_NULL,
        "upper_bound_points": _NUMBER_OR_NULL,
        "method": {"type": "string"},
    }
)
"""One split's paired drop (:mod:`albsnn_compress.search.paired_drop`): counts, the drop and its exact interval."""

_TENSOR = _object(
    {
        "name": {"type": "string"},
        "elements": _COUNT,
        "precision_before": {"type": ["integer", "null"], "minimum": 1},
        "precision_after": {"type": "integer", "minimum": 1},
        "bits_before": _COUNT,
        "bits_after": _COUNT,
    }
)

_LAYER = _object(
    {
        "name": {"type": "string"},
        "type": {"type": "string"},
        "weight_shape": {"type": "array", "items": _COUNT},
        "weight_params": _COUNT,
        "params": _COUNT,
        "candidate": {"type": "boolean"},
        "binarized": {"type": "boolean"},
        "precision_before": {"type": "integer", "minimum": 1},
        "precision_after": {"type": "integer", "minimum": 1},
        "bits_before": _COUNT,
        "bits_after": _COUNT,
        "bytes_before": _NUMBER,
        "bytes_after": _NUMBER,
        "saved_bits": {"type": "integer"},
        "tensors": {"type": "array", "items": {"$ref": "#/$defs/tensor"}},
        "estimate_raw": _NUMBER_OR_NULL,
        "estimate_points": _NUMBER_OR_NULL,
        "measured_alone_points": _NUMBER_OR_NULL,
        "measured_increment_points": _NUMBER_OR_NULL,
        "reason": {"type": "string"},
    }
)

_STEP = _object(
    {
        "index": {"type": "integer"},
        "action": {"type": "string"},
        "layers": _STRINGS,
        "binarized": _STRINGS,
        "val_accuracy": _NUMBER,
        "drop_points": _NUMBER,
        "storage_bits": _COUNT,
        "storage_bytes": _NUMBER,
        "ratio": _NUMBER_OR_NULL,
        "estimates_points": {"type": "object", "additionalProperties": _NUMBER_OR_NULL},
        "estimates_raw": {"type": "object", "additionalProperties": _NUMBER_OR_NULL},
        "seconds": _NUMBER,
        "lost": _COUNT,
        "gained": _COUNT,
        "interval_points": {"type": "array", "items": _NUMBER, "minItems": 2, "maxItems": 2},
    },
    optional=("lost", "gained", "interval_points"),
)

_NIR = _object(
    {  # present when the run wrote a NIR file (optional: schema version 2 still)
        "binary_scaled_layers": _STRINGS,
        "weight_precision": {"type": "integer", "minimum": 1},
        "note": {"type": "string"},
    }
)

_C_EXPORT = _object(
    {  # the C export's memory (``export --format c``); optional: schema version 2 still
        "flash_bytes": {"type": ["integer", "null"], "minimum": 0},
        "ram_bytes": {"type": ["integer", "null"], "minimum": 0},
        "refused": {"type": ["string", "null"]},
    }
)

_OPERATIONS_LAYER = _object(
    {  # one weighted layer's operations per inference (albsnn_compress.operations.LayerOperations)
        "name": {"type": "string"},
        "type": {"type": "string"},
        "weight_bits": {"type": "integer", "minimum": 1},
        "input": {"type": "string", "enum": ["spikes", "analog", "mixed"]},
        "spiking_images": _COUNT,
        "steps": {"type": "integer", "minimum": 1},
        "fan_in": _COUNT,
        "outputs_per_step": _COUNT,
        "dense": _COUNT,
        "input_rate": _AMOUNT,
        "ac": _AMOUNT,
        "mac": _AMOUNT,
        "energy_pj": _AMOUNT,
        "weight_bytes": _AMOUNT,
        "activation_bytes": _AMOUNT,
    }
)

_OPERATIONS_MODEL = _object(
    {
        "layers": {"type": "array", "items": {"$ref": "#/$defs/operations_layer"}},
        "total": _object(
            {
                "dense": _COUNT,
                "ac": _AMOUNT,
                "mac": _AMOUNT,
                "synaptic_ops": _AMOUNT,
                "energy_pj": _AMOUNT,
                "weight_bytes": _AMOUNT,
                "activation_bytes": _AMOUNT,
                "bytes_moved": _AMOUNT,
                "neuron_updates": _AMOUNT,
                "batch_norm_elements": _AMOUNT,
            }
        ),
    }
)

OPERATIONS_TOTALS = ("synaptic_ops", "ac", "mac", "energy_pj", "weight_bytes", "activation_bytes", "bytes_moved")
"""The totals whose saving ``operations.saved_percent`` states."""

_OPERATIONS = _object(
    {  # added in version 3: what each model costs to run on the same images (docs/report.md, Operations)
        "split": {"type": "string"},
        "images": {"type": "integer", "minimum": 1},
        "image_limit": {"type": "integer", "minimum": 1},
        "energy": _object(
            {"ac_pj": _AMOUNT, "mac_pj": _AMOUNT, "label": {"type": "string"}, "source": {"type": "string"}}
        ),
        "definitions": {"type": "object", "additionalProperties": {"type": "string"}},
        "input_model": _OPERATIONS_MODEL,
        "compressed_model": _OPERATIONS_MODEL,
        "saved_percent": _object({key: _NUMBER_OR_NULL for key in OPERATIONS_TOTALS}),
    }
)

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": f"albsnn-compress/report/v{SCHEMA_VERSION}",
    "title": "albsnn-compress storage report",
    "$defs": {
        "tensor": _TENSOR,
        "layer": _LAYER,
        "step": _STEP,
        "file": _FILE,
        "operations_layer": _OPERATIONS_LAYER,
    },
    **_object(
        {
            "schema": {"const": SCHEMA_ID},
            "schema_version": {"const": SCHEMA_VERSION},
            "model": _object(
                {
                    "name": {"type": "string"},
                    "timesteps": {"type": ["integer", "null"], "minimum": 1},
                    "input_shape": {"type": "array", "items": _COUNT},
                    "num_classes": {"type": ["integer", "null"], "minimum": 1},
                }
            ),
            "search": _object(
                {
                    "strategy": {"type": "string"},
                    "estimator": {"type": "string"},
                    "seed": {"type": "integer"},
                    "budget_points": _NUMBER,
                    "finetune_epochs": _NUMBER,
                    "candidates": _STRINGS,
                    "binarized": _STRINGS,
                    "config": {"type": "object"},
                }
            ),
            "accuracy": _object(
                {
                    "val_before": _NUMBER,
                    "val_after": _NUMBER,
                    "test_before": _NUMBER_OR_NULL,
                    "test_after": _NUMBER_OR_NULL,
                    "val_drop_points": _NUMBER,
                    "test_drop_points": _NUMBER_OR_NULL,
                    "val_floor": _NUMBER,
                    "within_budget": {"type": "boolean"},
                    # control: the float control's validation drop (optional: schema version 3 still)
                    "paired": _object(
                        {"val": _PAIRED, "test": _PAIRED, "control": _PAIRED}, optional=("test", "control")
                    ),
                },
                optional=("paired",),
            ),
            "storage": _object(
                {
                    "computed": _object(
                        {
                            "params": _COUNT,
                            "bits_before": _COUNT,
                            "bits_after": _COUNT,
                            "bytes_before": _NUMBER,
                            "bytes_after": _NUMBER,
                            "ratio": _NUMBER_OR_NULL,
                            "saved_percent": _NUMBER_OR_NULL,
                            "binarized_layers": _COUNT,
                            "binarized_weight_params": _COUNT,
                        }
                    ),
                    "on_disk": _object(
                        {
                            "input_checkpoint": {"$ref": "#/$defs/file"},
                            "container": {"$ref": "#/$defs/file"},
                            "onnx": {"$ref": "#/$defs/file"},
                            "nir": {"$ref": "#/$defs/file"},
                        },
                        optional=("nir",),
                    ),
                    "on_disk_ratio": _object(
                        {"container": _NUMBER_OR_NULL, "onnx": _NUMBER_OR_NULL, "nir": _NUMBER_OR_NULL},
                        optional=("nir",),
                    ),
                    "nir": _NIR,
                    "c_export": _C_EXPORT,
                },
                optional=("nir", "c_export"),
            ),
            "layers": {"type": "array", "items": {"$ref": "#/$defs/layer"}},
            "trajectory": {"type": "array", "items": {"$ref": "#/$defs/step"}},
            "timings": {"type": "object", "additionalProperties": _NUMBER},
            "versions": {"type": "object", "additionalProperties": {"type": "string"}},
            "operations": _OPERATIONS,
        },
        optional=("operations",),
    ),
}
"""The current version's schema (the one :func:`validate_report` holds a version-3 document to)."""


def _version_2() -> dict[str, Any]:
    """Version 2: the same document without ``operations``."""
    schema = copy.deepcopy(SCHEMA)
    schema["$id"] = "albsnn-compress/report/v2"
    del schema["$defs"]["operations_layer"]
    del schema["properties"]["operations"]
    schema["properties"]["schema_version"] = {"const": 2}
    return schema


SCHEMAS: dict[int, dict[str, Any]] = {2: _version_2(), SCHEMA_VERSION: SCHEMA}
"""The schema of every version this reader reads."""

_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "integer": lambda v: type(v) is int,
    "number": lambda v: type(v) in (int, float) and math.isfinite(v),
}


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if ref is None:
        return node
    definition: dict[str, Any] = SCHEMA["$defs"][ref.rsplit("/", 1)[-1]]
    return definition


def _check(value: Any, node: dict[str, Any], where: str) -> None:
    """Raise :class:`ReportError` at the first place ``value`` breaks schema ``node``."""
    node = _resolve(node)
    at = where or "/"
    if "const" in node and (type(value) is not type(node["const"]) or value != node["const"]):
        raise ReportError(f"at {at}: expected {node['const']!r}, found {value!r}")
    if "enum" in node and value not in node["enum"]:
        raise ReportError(f"at {at}: expected one of {node['enum']}, found {value!r}")
    if "type" in node:
        allowed = node["type"] if isinstance(node["type"], list) else [node["type"]]
        if not any(_TYPES[name](value) for name in allowed):
            raise ReportError(f"at {at}: expected {' or '.join(allowed)}, found {_describe(value)}")
    if "minimum" in node and type(value) in (int, float) and value < node["minimum"]:
        raise ReportError(f"at {at}: expected a value >= {node['minimum']}, found {value!r}")
    if isinstance(value, dict) and node.get("type") == "object":
        _check_object(value, node, where)
    if isinstance(value, list) and "items" in node:
        for index, item in enumerate(value):
            _check(item, node["items"], f"{where}/{index}")


def _check_object(value: dict[str, Any], node: dict[str, Any], where: str) -> None:
    properties = node.get("properties", {})
    for key in node.get("required", []):
        if key not in value:
            raise ReportError(f"at {where or '/'}: missing field {key!r}")
    extra = node.get("additionalProperties", True)
    for key, item in value.items():
        if key in properties:
            _check(item, properties[key], f"{where}/{key}")
        elif extra is False:
            raise ReportError(f"at {where or '/'}: unknown field {key!r}")
        elif isinstance(extra, dict):
            _check(item, extra, f"{where}/{key}")


def _describe(value: Any) -> str:
    """``str "x"``, ``float NaN``: the type and the start of the value, for messages."""
    return f"{type(value).__name__} {json.dumps(value, default=repr)[:40]}"


def _check_accounting(report: dict[str, Any]) -> None:
    """Every bit is accounted: tensors sum to their layer, layers to the totals."""
    for index, layer in enumerate(report["layers"]):
        for phase in ("before", "after"):
            parts = sum(t[f"bits_{phase}"] for t in layer["tensors"])
            if parts != layer[f"bits_{phase}"]:
                raise ReportError(
                    f"at /layers/{index} ({layer['name']}): tensors sum to {parts} bits {phase}, "
                    f"layer says {layer[f'bits_{phase}']}"
                )
    computed = report["storage"]["computed"]
    for phase in ("before", "after"):
        total = sum(layer[f"bits_{phase}"] for layer in report["layers"])
        if total != computed[f"bits_{phase}"]:
            raise ReportError(
                f"at /storage/computed/bits_{phase}: layers sum to {total} bits, total says {computed[f'bits_{phase}']}"
            )


def _close(total: float, parts: float) -> bool:
    return math.isclose(total, parts, rel_tol=1e-9, abs_tol=1e-9)


def _check_operations(operations: dict[str, Any]) -> None:
    """The operations add up: layers to each model's totals, AC + MAC to the synaptic operations, each layer's
    energy to its counts at the recorded constants; both models list the same layers."""
    energy = operations["energy"]
    names = {
        model: [layer["name"] for layer in operations[model]["layers"]] for model in ("input_model", "compressed_model")
    }
    if names["input_model"] != names["compressed_model"]:
        raise ReportError("at /operations: the input and compressed models list different layers")
    for model in ("input_model", "compressed_model"):
        layers, total = operations[model]["layers"], operations[model]["total"]
        where = f"/operations/{model}"
        for index, layer in enumerate(layers):
            expected = layer["ac"] * energy["ac_pj"] + layer["mac"] * energy["mac_pj"]
            if not _close(layer["energy_pj"], expected):
                raise ReportError(
                    f"at {where}/layers/{index}/energy_pj: {layer['energy_pj']!r}, but AC and MAC at the recorded "
                    f"constants give {expected!r}"
                )
        dense = sum(layer["dense"] for layer in layers)
        if dense != total["dense"]:
            raise ReportError(f"at {where}/total/dense: layers sum to {dense}, total says {total['dense']}")
        for key in ("ac", "mac", "energy_pj", "weight_bytes", "activation_bytes"):
            parts = math.fsum(layer[key] for layer in layers)
            if not _close(total[key], parts):
                raise ReportError(f"at {where}/total/{key}: layers sum to {parts!r}, total says {total[key]!r}")
        for key, parts in (
            ("synaptic_ops", total["ac"] + total["mac"]),
            ("bytes_moved", total["weight_bytes"] + total["activation_bytes"]),
        ):
            if not _close(total[key], parts):
                raise ReportError(f"at {where}/total/{key}: {total[key]!r}, but its parts sum to {parts!r}")


def validate_report(report: Any) -> None:
    """Check a report document against :data:`SCHEMA` and its bit accounting.

    Raises:
        ReportError: naming the JSON path (e.g. ``/layers/3/bits_after``), what was
            expected and what was found.
    """
    if not isinstance(report, dict):
        raise ReportError(f"a report must be a JSON object, found {type(report).__name__}")
    if report.get("schema") != SCHEMA_ID:
        raise ReportError(
            f"not an albsnn-compress report: field 'schema' is {report.get('schema')!r}, expected {SCHEMA_ID!r}"
        )
    version = report.get("schema_version")
    if type(version) is not int or version not in SUPPORTED_VERSIONS:
        newer = type(version) is int and version > SCHEMA_VERSION
        fix = "upgrade albsnn-compress to read it" if newer else "regenerate it with this albsnn-compress"
        raise ReportError(
            f"report schema version {version!r} is not supported (this reader reads {list(SUPPORTED_VERSIONS)}); {fix}"
        )
    _check(report, SCHEMAS[version], "")
    _check_accounting(report)
    if "operations" in report:
        _check_operations(report["operations"])


def parse_report(data: bytes | str, source: str = "report") -> dict[str, Any]:
    """Parse and validate report JSON text.

    Rejects what Python's ``json`` would silently accept (see
    :mod:`albsnn_compress.files.strict_json`): duplicate keys, ``NaN``/``Infinity``,
    integers with thousands of digits, absurd nesting.

    Raises:
        ReportError: ``"<source>: <what is wrong>"``.
    """
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        document: dict[str, Any] = strict_loads(text, max_depth=_MAX_DEPTH, max_int_digits=_MAX_INT_DIGITS)
        validate_report(document)
    except StrictJSONError as exc:
        raise ReportError(f"{source}: {exc}; pass the report.json a compress run wrote") from exc
    except ReportError as exc:
        raise ReportError(f"{source}: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ReportError(
            f"{source}: not UTF-8 text (byte {exc.start}); pass the report.json a compress run wrote"
        ) from exc
    return document


def load_report(path: str | Path) -> dict[str, Any]:
    """Read and validate a ``report.json`` file.

    Raises:
        ReportError: if the file cannot be read, is larger than
            :data:`MAX_REPORT_BYTES`, is not JSON, or does not match the schema.
    """
    path = Path(path)
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_REPORT_BYTES + 1)
    except OSError as exc:
        raise ReportError(f"{path}: cannot read the report ({exc.strerror or exc})") from exc
    if len(data) > MAX_REPORT_BYTES:
        raise ReportError(f"{path}: larger than {MAX_REPORT_BYTES} bytes; not a report this tool wrote")
    return parse_report(data, str(path))
