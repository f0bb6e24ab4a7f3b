"""The files of the C export, as text: the header, the model's source, the kernels and a README.

``albsnn_model.h`` is the interface other people's harnesses are written against:
``int albsnn_infer(const float *pixels, float *logits)`` and the ``ALBSNN_*``
macros. ``albsnn_model.c`` holds the const arrays (flash), the operations'
parameters, the one static arena (RAM) and the sequence of kernel calls;
``albsnn_kernels.c``/``.h`` are the same for every model except for one ``case``
per reset rule (:data:`~albsnn_compress.formats.c.plan.RESET_C`).
"""

from __future__ import annotations

from importlib import resources
from string import Template

from albsnn_compress.formats.c.ops import WORD_BYTES
from albsnn_compress.formats.c.plan import RESET_C, Plan
from albsnn_compress.formats.c.text import c_comment, render_array
from albsnn_compress.snn.spec import SpikingNet
from albsnn_compress.versions import __version__

__all__ = ["HEADER", "render_files"]

HEADER = "albsnn_model.h"
_TEMPLATES = "templates"  # data beside this module, shipped as package data (no __init__.py)
_RESET_MARK = "/*@RESET_CASES@*/"


def _template(name: str) -> str:
    return (resources.files("albsnn_compress.formats.c") / _TEMPLATES / name).read_text(encoding="utf-8")


def _title(model: SpikingNet, weights: str) -> str:
    return c_comment(
        f"{model.spec['name']} spiking network, T={model.timesteps}, weights={weights}, albsnn-compress {__version__}"
    )


def _header(model: SpikingNet, plan: Plan, weights: str) -> str:
    channels, height, width = model.spec["input"]["shape"]
    return f"""/* {HEADER}: {_title(model, weights)}.
 *
 * int albsnn_infer(const float *pixels, float *logits);
 *   pixels: ALBSNN_INPUT_C*H*W floats, channel-major, values in [0, 1] as for the ONNX export;
 *   logits: ALBSNN_NUM_CLASSES floats (time-mean of the last layer). Returns 0 on success.
 *
 * Compile every .c file of this folder with the program. Not reentrant: one static arena of
 * ALBSNN_ARENA_BYTES bytes holds every activation; the weights are const (flash).
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

#ifdef __cplusplus
extern "C" {{
#endif

int albsnn_infer(const float *pixels, float *logits);

#ifdef __cplusplus
}}
#endif

#endif /* ALBSNN_MODEL_H */
"""


def _pointer(offset: int | None) -> str:
    return "NULL" if offset is None else f"arena + {offset // WORD_BYTES}"


def _model_source(model: SpikingNet, plan: Plan, weights: str) -> str:
    parts = [f'/* albsnn_model.c: {_title(model, weights)}. */\n#include "{HEADER}"\n#include "albsnn_kernels.h"\n']
    for op in plan.ops:
        arrays = "".join("\n" + render_array(array) for array in op.arrays())
        declarations = op.declarations()
        parts.append(arrays + ("\n" + declarations if declarations else ""))
    calls = []
    for op, at in zip(plan.ops, plan.placements):
        calls.append(f"    /* {c_comment(op.label)}: {op.inp.describe()} -> {op.out.describe()} */")
        calls.append("    " + op.call(_pointer(at.x), _pointer(at.y), _pointer(at.scratch)))
    parts.append(
        f"\nstatic uint32_t albsnn_arena[ALBSNN_ARENA_BYTES / {WORD_BYTES}];\n\n"
        "int albsnn_infer(const float *pixels, float *logits)\n{\n"
        "    uint32_t *const arena = albsnn_arena;\n"
        "    if (pixels == NULL || logits == NULL) {\n        return -1;\n    }\n"
        + "\n".join(calls)
        + "\n    return 0;\n}\n"
    )
    return "".join(parts)


def _kernels_source() -> str:
    cases = "\n".join(
        f"    case {i}u: /* {name} */\n        return {expression};"
        for i, (name, expression) in enumerate(RESET_C.items())
    )
    return _template("albsnn_kernels.c").replace(_RESET_MARK, cases)


def _layer_table(plan: Plan) -> str:
    rows = ["| step | layers | input | output | kernel |", "|---|---|---|---|---|"]
    for i, op in enumerate(plan.ops):
        kernel = op.call("x", "y", "s").split("(", 1)[0]
        rows.append(f"| {i} | {c_comment(op.label)} | {op.inp.describe()} | {op.out.describe()} | `{kernel}` |")
    return "\n".join(rows)


def render_files(model: SpikingNet, plan: Plan, weights: str) -> dict[str, str]:
    """File name -> text of every file of the exported folder; the same model gives the same text."""
    channels, height, width = model.spec["input"]["shape"]
    readme = Template(_template("README.md")).substitute(
        title=_title(model, weights),
        input=f"{channels}x{height}x{width}",
        classes=model.spec["num_classes"],
        timesteps=model.timesteps,
        weight_bytes=plan.weight_bytes,
        arena_bytes=plan.arena_bytes,
        layers=_layer_table(plan),
    )
    return {
        HEADER: _header(model, plan, weights),
        "albsnn_model.c": _model_source(model, plan, weights),
        "albsnn_kernels.h": _template("albsnn_kernels.h"),
        "albsnn_kernels.c": _kernels_source(),
        "README.md": readme,
    }
