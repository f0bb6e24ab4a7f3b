"""The files of the C export, as text: the header, the model's source, the kernels and a README.

``albsnn_model.h`` is the interface other people's harnesses are written against:
``int albsnn_infer(const float *pixels, float *logits)``, its status codes and the
``ALBSNN_*`` macros, inside an ``extern "C"`` guard. ``albsnn_model.c`` holds the const
arrays (flash), the operations' parameters, the one static arena (RAM, a union of one
array per element type) and the sequence of kernel calls, each call's status checked.
``albsnn_kernels.c``/``.h`` are the templates as they are, the same for every model:
each compiles on its own.

Names come from the model's spec (layer names are identifiers; the model's ``name`` is any
printable text, ``*/`` and ``<script>`` included): in C they appear only inside comments,
through :func:`~albsnn_compress.formats.c.text.c_comment` (no ``*/``, ``/*``, trigraph or newline
survives, whatever the spec allowed), and in the README through
:func:`~albsnn_compress.files.safe_text.markdown_text` (no HTML, no heading, no table cell boundary).
"""

from __future__ import annotations

import re
from importlib import resources
from string import Template

from albsnn_compress.files.safe_text import markdown_text
from albsnn_compress.formats.c.ops import ARENA, ARENA_MEMBERS
from albsnn_compress.formats.c.plan import Plan, input_dims
from albsnn_compress.formats.c.text import c_comment, render_array
from albsnn_compress.snn.spec import SpikingNet, is_flat_input
from albsnn_compress.versions import __version__

__all__ = ["HEADER", "KERNELS_C", "KERNELS_H", "TEMPLATES", "render_files", "status_codes", "template"]

HEADER = "albsnn_model.h"
KERNELS_C = "albsnn_kernels.c"
KERNELS_H = "albsnn_kernels.h"
TEMPLATES = (KERNELS_C, KERNELS_H, "README.md")
_TEMPLATES = "templates"  # data beside this module, shipped as package data (no __init__.py)
_STATUS = re.compile(r"^#define (ALBSNN_(?:OK|ERR_[A-Z]+)) (\S+)(?: +/\* (.*) \*/)?$", re.M)


def template(name: str) -> str:
    """The text of one of :data:`TEMPLATES`."""
    return (resources.files("albsnn_compress.formats.c") / _TEMPLATES / name).read_text(encoding="utf-8")


def status_codes() -> dict[str, int]:
    """The status codes of the kernels and ``albsnn_infer``, name -> value, as ``albsnn_kernels.h`` defines them."""
    return {name: int(value.strip("()")) for name, value, _ in _STATUS.findall(template(KERNELS_H))}


def _status_macros() -> str:
    """``albsnn_kernels.h``'s status macros for the model header: the same replacement lists, so that a
    file including both headers sees identical (allowed) redefinitions."""
    lines = []
    for name, value, comment in _STATUS.findall(template(KERNELS_H)):
        lines.append(f"#define {name} {value}" + (f" /* {comment} */" if comment else ""))
    return "\n".join(lines)


def _title_text(model: SpikingNet, weights: str) -> str:
    """The export's title as plain text (the spec's name as it is): pass it through a medium's escaping."""
    return (
        f"{model.spec['name']} spiking network, T={model.timesteps}, weights={weights}, albsnn-compress {__version__}"
    )


def _title(model: SpikingNet, weights: str) -> str:
    """The title for a C comment."""
    return c_comment(_title_text(model, weights))


def _input_text(model: SpikingNet) -> str:
    """What ``pixels`` holds, for the header's comment."""
    if is_flat_input(model.spec):
        return (
            "ALBSNN_INPUT_C*H*W floats: the model's flat input, ALBSNN_INPUT_C features (H = W = 1),\n"
            " *     an image flattened row-major (channel, then row, then column), as for the ONNX export;"
        )
    return "ALBSNN_INPUT_C*H*W floats, channel-major, values in [0, 1] as for the ONNX export;"


def _input_shape(model: SpikingNet) -> str:
    """The input's shape for the README: ``1x8x8``, or ``[64]`` features for a flat input."""
    shape = model.spec["input"]["shape"]
    if is_flat_input(model.spec):
        return f"[{shape[0]}] (features: `ALBSNN_INPUT_C` = {shape[0]}, `ALBSNN_INPUT_H` = `ALBSNN_INPUT_W` = 1)"
    return "x".join(map(str, shape))


def _header(model: SpikingNet, plan: Plan, weights: str) -> str:
    channels, height, width = input_dims(model.spec)
    return f"""/* {HEADER}: {_title(model, weights)}.
 *
 * int albsnn_infer(const float *pixels, float *logits);
 *   pixels: {_input_text(model)}
 *   logits: ALBSNN_NUM_CLASSES floats (time-mean of the last layer).
 *   Returns ALBSNN_OK (0) on success, ALBSNN_ERR_NULL (-1) if pixels or logits is NULL (nothing is
 *   computed), or the negative status of a kernel that refused its arguments (the build is not the
 *   exported one; the logits are not valid then).
 *
 * Compile every .c file of this folder with the program (C99; the headers also work from C++).
 * Not reentrant: one static arena of ALBSNN_ARENA_BYTES bytes holds every activation and each
 * kernel call's scratch (at most ALBSNN_SCRATCH_BYTES of it); the weights are const (flash).
 */
#ifndef ALBSNN_MODEL_H
#define ALBSNN_MODEL_H

#define ALBSNN_INPUT_C {channels}
#define ALBSNN_INPUT_H {height}
#define ALBSNN_INPUT_W {width}
#define ALBSNN_NUM_CLASSES {model.spec["num_classes"]}
#define ALBSNN_TIMESTEPS {model.timesteps}
#define ALBSNN_WEIGHT_BYTES {plan.weight_bytes} /* const arrays: sign bits, float weights, scales, biases */
#define ALBSNN_ARENA_BYTES {plan.arena_bytes} /* the one static RAM buffer: the largest set of live activations */
#define ALBSNN_SCRATCH_BYTES {plan.scratch_bytes} /* the largest scratch of one kernel call, inside the arena */

/* Status codes of albsnn_infer (and of the kernels: albsnn_kernels.h defines the same). */
{_status_macros()}

#ifdef __cplusplus
extern "C" {{
#endif

int albsnn_infer(const float *pixels, float *logits);

#ifdef __cplusplus
}}
#endif

#endif /* ALBSNN_MODEL_H */
"""


def _arena() -> str:
    """The arena's definition: a union of one array per element type the kernels use."""
    members = "".join(
        f"    {ctype} {member}[ALBSNN_ARENA_BYTES / {size}];\n" for ctype, (member, size) in ARENA_MEMBERS.items()
    )
    return (
        "/* The one static arena (RAM, .bss). Every buffer lies at a 16-byte aligned offset and is read and\n"
        " * written through the member of the type it holds: float values, uint32_t bit planes, and the\n"
        " * popcount kernel's uint64_t receptive fields and int32_t sums. */\n"
        f"static union {{\n{members}}} {ARENA};\n"
    )


def _model_source(model: SpikingNet, plan: Plan, weights: str) -> str:
    parts = [f'/* albsnn_model.c: {_title(model, weights)}. */\n#include "{HEADER}"\n#include "{KERNELS_H}"\n']
    for op in plan.ops:
        arrays = "".join("\n" + render_array(array) for array in op.arrays())
        declarations = op.declarations()
        parts.append(arrays + ("\n" + declarations if declarations else ""))
    calls = []
    for op, at in zip(plan.ops, plan.placements):
        calls.append(f"    /* {c_comment(op.label)}: {op.inp.describe()} -> {op.out.describe()} */")
        calls.append(f"    status = {op.call(at.x, at.y, at.scratch)};")
        calls.append("    if (status != ALBSNN_OK) {\n        return status;\n    }")
    body = "\n".join(calls)
    parts.append(
        f"\n{_arena()}\n"
        "int albsnn_infer(const float *pixels, float *logits)\n{\n"
        "    int status;\n"
        "    if (pixels == NULL || logits == NULL) {\n        return ALBSNN_ERR_NULL;\n    }\n"
        f"{body}\n"
        "    return ALBSNN_OK;\n}\n"
    )
    return "".join(parts)


def _layer_table(plan: Plan) -> str:
    """One row per kernel call; a layer chosen by a measured input density shows it beside its kernel."""
    rows = ["| step | layers | input | output | kernel |", "|---|---|---|---|---|"]
    for i, op in enumerate(plan.ops):
        density = getattr(op, "density", None)
        chosen = "" if density is None else f" (input density {density:.3f})"
        rows.append(
            f"| {i} | {markdown_text(op.label)} | {markdown_text(op.inp.describe())} | "
            f"{markdown_text(op.out.describe())} | `{op.function}`{chosen} |"
        )
    return "\n".join(rows)


def render_files(model: SpikingNet, plan: Plan, weights: str) -> dict[str, str]:
    """File name -> text of every file of the exported folder; the same model gives the same text."""
    readme = Template(template("README.md")).substitute(
        title=markdown_text(_title_text(model, weights)),
        input=_input_shape(model),
        classes=model.spec["num_classes"],
        timesteps=model.timesteps,
        weight_bytes=plan.weight_bytes,
        arena_bytes=plan.arena_bytes,
        scratch_bytes=plan.scratch_bytes,
        layers=_layer_table(plan),
    )
    return {
        HEADER: _header(model, plan, weights),
        "albsnn_model.c": _model_source(model, plan, weights),
        KERNELS_H: template(KERNELS_H),
        KERNELS_C: template(KERNELS_C),
        "README.md": readme,
    }
