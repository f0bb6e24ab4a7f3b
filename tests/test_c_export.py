"""C export: the folder compiles with -Werror -pedantic, agrees with PyTorch on the digits test split,
runs clean under ASan/UBSan, is byte-identical for the same model, and refuses what it cannot express.

The C itself: every object is read through a pointer of its own type and aligned for it (strict
aliasing warnings and the alignment sanitizer are clean), the kernels return a status on bad
arguments and ``albsnn_infer`` passes it on, the scratch-size functions agree with the planner,
the headers work from C++ (``extern "C"``), and each template compiles on its own."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from albsnn_compress.binarize import binarize_, binarized_layers, candidate_layers
from albsnn_compress.checkpoint import load_checkpoint
from albsnn_compress.data import load_split
from albsnn_compress.errors import ExportError
from albsnn_compress.formats.bitpack import pack_signs
from albsnn_compress.formats.c.export import build_c_sources, export_c
from albsnn_compress.formats.c.ops import ConvOp
from albsnn_compress.formats.c.plan import C_EMITTERS, RESET_C, plan_model
from albsnn_compress.formats.c.source import HEADER, KERNELS_C, KERNELS_H, TEMPLATES, render_files, status_codes
from albsnn_compress.formats.c.text import render_array
from albsnn_compress.formats.c.trace import TRACE_HOOK_C, TRACE_RECORD, first_flip
from albsnn_compress.formats.container.file import read_container, write_container
from albsnn_compress.snn.layer_types import LAYER_TYPES, LayerType, registered, same_shape
from albsnn_compress.snn.neurons import LIF, RESET_MODES, ResetMode
from albsnn_compress.snn.onnx_mapping import GraphEmitter
from albsnn_compress.snn.spec import SpikingNet
from albsnn_compress.training.train_model import resolve_architecture
from tests.clihelp import run_cli

CC = shutil.which("cc") or "cc"
CXX = shutil.which("g++") or shutil.which("c++")
pytestmark = [
    pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler (cc) on PATH"),
    pytest.mark.subprocess,  # compiles and runs C, sanitizers included
]
needs_cxx = pytest.mark.skipif(CXX is None, reason="no C++ compiler (g++) on PATH")

STRICT = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-pedantic"]
SANITIZE = [
    "-std=c99",
    "-O1",
    "-g",
    "-fsanitize=address,undefined",
    "-fno-sanitize-recover=all",
    "-fno-omit-frame-pointer",
]
# Type-based alias analysis on, with every warning it has (level 1 also flags casts through void * that
# are then dereferenced as another type) and casts that raise the required alignment.
STRICT_ALIASING = [*STRICT, "-fstrict-aliasing", "-Wstrict-aliasing=1", "-Wcast-align=strict", "-Wcast-qual"]
# The same optimizations under UBSan, alignment checks named explicitly.
SANITIZE_ALIGNMENT = [
    "-std=c99",
    "-O2",
    "-fstrict-aliasing",
    "-g",
    "-fsanitize=undefined,alignment",
    "-fno-sanitize-recover=all",
]
CXX_STRICT = ["-std=c++11", "-O2", "-Wall", "-Wextra", "-Werror", "-pedantic"]
STATUS = {"ALBSNN_OK": 0, "ALBSNN_ERR_NULL": -1, "ALBSNN_ERR_SCRATCH": -2, "ALBSNN_ERR_DESCRIPTOR": -3}
TIE_MARGIN = 1e-4  # a flipped spike must sit this close to the threshold to count as a tie

# Reads float32 images from argv[1], writes float32 logits to argv[2]; built with -DALBSNN_TRACE (and
# TRACE_HOOK_C) it also writes every neuron's trace record to argv[3].
HARNESS = r"""
#include <stdio.h>
#include "albsnn_model.h"

#ifdef ALBSNN_TRACE
extern FILE *albsnn_trace_file;
#endif

int main(int argc, char **argv)
{
    static float pixels[ALBSNN_INPUT_C * ALBSNN_INPUT_H * ALBSNN_INPUT_W];
    float logits[ALBSNN_NUM_CLASSES];
    const size_t n = sizeof pixels / sizeof pixels[0];
    FILE *in, *out;
    if (argc < 3 || (in = fopen(argv[1], "rb")) == NULL || (out = fopen(argv[2], "wb")) == NULL) {
        return 2;
    }
#ifdef ALBSNN_TRACE
    if (argc < 4 || (albsnn_trace_file = fopen(argv[3], "wb")) == NULL) {
        return 2;
    }
#endif
    while (fread(pixels, sizeof pixels[0], n, in) == n) {
        if (albsnn_infer(pixels, logits) != 0) {
            return 3;
        }
        fwrite(logits, sizeof logits[0], ALBSNN_NUM_CLASSES, out);
    }
    if (albsnn_infer(NULL, logits) != -1 || albsnn_infer(pixels, NULL) != ALBSNN_ERR_NULL) {
        return 4;
    }
    return fclose(in) | fclose(out);
}
"""

# HARNESS for C++: the same reads and writes, including albsnn_model.h and albsnn_kernels.h.
HARNESS_CXX = r"""
#include <cstdio>
#include "albsnn_model.h"
#include "albsnn_kernels.h"

int main(int argc, char **argv)
{
    static float pixels[ALBSNN_INPUT_C * ALBSNN_INPUT_H * ALBSNN_INPUT_W];
    float logits[ALBSNN_NUM_CLASSES];
    const std::size_t n = sizeof pixels / sizeof pixels[0];
    if (argc < 3) {
        return 2;
    }
    std::FILE *in = std::fopen(argv[1], "rb"), *out = std::fopen(argv[2], "wb");
    if (in == nullptr || out == nullptr) {
        return 2;
    }
    while (std::fread(pixels, sizeof pixels[0], n, in) == n) {
        if (albsnn_infer(pixels, logits) != ALBSNN_OK) {
            return 3;
        }
        std::fwrite(logits, sizeof logits[0], ALBSNN_NUM_CLASSES, out);
    }
    if (albsnn_infer(nullptr, logits) != ALBSNN_ERR_NULL || albsnn_conv_rows_scratch(nullptr) != 0u) {
        return 4;
    }
    return std::fclose(in) | std::fclose(out);
}
"""

# Calls every kernel with good and bad arguments on small hand-made descriptors: a bad argument gives its
# status and leaves the output untouched. Prints "ok" or one line per failed expectation.
BAD_ARGUMENTS = r"""
#include <stdio.h>
#include "albsnn_kernels.h"

static int failures = 0;

#define EXPECT(call, want)                                                                          \
    do {                                                                                            \
        const int got_ = (int)(call);                                                               \
        if (got_ != (want)) {                                                                       \
            printf("line %d: %s gave %d, expected %d\n", __LINE__, #call, got_, (want));            \
            ++failures;                                                                             \
        }                                                                                           \
    } while (0)

/* every element still 7 (what fill put there) */
#define EXPECT_UNTOUCHED(buffer)                                                                    \
    do {                                                                                            \
        size_t i_;                                                                                  \
        for (i_ = 0; i_ < sizeof(buffer) / sizeof((buffer)[0]); ++i_) {                             \
            if ((buffer)[i_] != 7) {                                                                \
                printf("line %d: a refused call wrote %s[%u]\n", __LINE__, #buffer, (unsigned)i_);  \
                ++failures;                                                                         \
                break;                                                                              \
            }                                                                                       \
        }                                                                                           \
    } while (0)

static void fill_floats(float *y, size_t n)
{
    size_t i;
    for (i = 0; i < n; ++i) {
        y[i] = 7.0f;
    }
}

static void fill_words(uint32_t *y, size_t n)
{
    size_t i;
    for (i = 0; i < n; ++i) {
        y[i] = 7u;
    }
}

int main(void)
{
    static const float w[2 * 9] = {1.0f, 0.0f, -1.0f, 0.5f, 0.5f, 0.5f, 0.0f, 1.0f, 0.0f,
                                   0.0f, 1.0f, 0.0f, 1.0f, 1.0f, 1.0f, -0.5f, 0.0f, 0.5f};
    static const uint8_t bits[3] = {0xA5u, 0x3Cu, 0x80u}; /* 2 x 1 x 3 x 3 sign bits */
    /* 2 output lanes per tap (ky, kx, c), 8 bytes each */
    static const uint8_t masks[9 * 8] = {0x01u, 0, 0, 0, 0, 0, 0, 0, 0x02u, 0, 0, 0, 0, 0, 0, 0, 0x03u};
    static const float scale[2] = {1.0f, 0.5f}, bias[2] = {0.0f, 0.25f}, mean[1] = {0.5f}, std[1] = {0.25f};
    static const float taus[1] = {2.0f};
    static const albsnn_lif hard = {2.0f, 1.0f, 0.0f, 0.5f, ALBSNN_CHARGE_DECAY_INPUT, ALBSNN_RESET_HARD, 0u, 0u,
                                    NULL, NULL, NULL};
    static const albsnn_lif bad_reset = {2.0f, 1.0f, 0.0f, 0.5f, ALBSNN_CHARGE_DECAY_INPUT, ALBSNN_RESET_RULES, 0u, 0u,
                                         NULL, NULL, NULL};
    static const albsnn_lif bad_charge = {2.0f, 1.0f, 0.0f, 0.5f, ALBSNN_CHARGE_RULES, ALBSNN_RESET_HARD, 0u, 0u,
                                          NULL, NULL, NULL};
    static const albsnn_lif no_inverses = {2.0f, 1.0f, 0.0f, 0.5f, ALBSNN_CHARGE_DECAY_INPUT, ALBSNN_RESET_HARD, 0u, 0u,
                                           taus, NULL, NULL}; /* per-channel taus without their reciprocals */
    const albsnn_tensor image = {1u, 4u, 4u, 1u, 0u, 1u, 0u, 0u}, maps = {2u, 4u, 4u, 1u, 0u, 1u, 0u, 0u};
    const albsnn_tensor spikes_in = {1u, 4u, 4u, 1u, 1u, 1u, 0u, 0u}, spikes_out = {2u, 4u, 4u, 1u, 1u, 1u, 0u, 0u};
    const albsnn_tensor pooled = {2u, 2u, 2u, 1u, 0u, 1u, 0u, 0u};
    albsnn_conv conv = {{1u, 4u, 4u, 1u, 0u, 1u, 0u, 0u}, {2u, 4u, 4u, 1u, 0u, 1u, 0u, 0u}, 3u, 1u, 1u, 1u,
                        NULL, w, scale, bias, NULL, NULL};
    albsnn_conv bconv = {{1u, 4u, 4u, 1u, 1u, 1u, 0u, 0u}, {2u, 4u, 4u, 1u, 1u, 1u, 0u, 0u}, 3u, 1u, 1u, 1u,
                         bits, NULL, scale, bias, &hard, NULL};
    albsnn_conv fconv = {{1u, 4u, 4u, 1u, 1u, 1u, 0u, 0u}, {2u, 4u, 4u, 1u, 0u, 1u, 0u, 0u}, 3u, 1u, 1u, 1u,
                         NULL, w, scale, bias, NULL, NULL};
    albsnn_pool pool = {{2u, 4u, 4u, 1u, 0u, 1u, 0u, 0u}, {2u, 2u, 2u, 1u, 0u, 1u, 0u, 0u}, 2u, 2u, 0u};
    float pixels[16], x[16], y[32], small[8], scratch[128];
    uint32_t planes[1] = {0xF00F0000u}, out_planes[2];
    uint64_t words[128];
    int32_t counts[64];
    size_t n_rows, n_words, n_counts;
    fill_floats(pixels, 16);
    fill_floats(x, 16);

    EXPECT(albsnn_normalize(NULL, mean, std, &image, x), ALBSNN_ERR_NULL);
    EXPECT(albsnn_normalize(pixels, mean, std, &image, NULL), ALBSNN_ERR_NULL);
    EXPECT(albsnn_normalize(pixels, mean, std, &spikes_in, x), ALBSNN_ERR_DESCRIPTOR);
    EXPECT(albsnn_normalize(pixels, mean, std, &image, x), ALBSNN_OK);

    /* the float kernel: its scratch size, then NULLs, short scratch, inconsistent descriptors */
    n_rows = albsnn_conv_rows_scratch(&conv);
    EXPECT(n_rows, 4 + 2 + 2 * 4); /* a padded input row, one output row per channel */
    EXPECT(albsnn_conv_rows_scratch(NULL), 0);
    fill_floats(y, 32);
    EXPECT(albsnn_conv_rows(NULL, x, y, scratch, n_rows), ALBSNN_ERR_NULL);
    EXPECT(albsnn_conv_rows(&conv, NULL, y, scratch, n_rows), ALBSNN_ERR_NULL);
    EXPECT(albsnn_conv_rows(&conv, x, NULL, scratch, n_rows), ALBSNN_ERR_NULL);
    EXPECT(albsnn_conv_rows(&conv, x, y, NULL, n_rows), ALBSNN_ERR_NULL);
    EXPECT(albsnn_conv_rows(&conv, x, y, scratch, n_rows - 1u), ALBSNN_ERR_SCRATCH);
    EXPECT_UNTOUCHED(y);
    conv.out.h = 3u; /* does not follow from 4 rows, kernel 3, padding 1 */
    EXPECT(albsnn_conv_rows(&conv, x, y, scratch, 64u), ALBSNN_ERR_DESCRIPTOR);
    EXPECT(albsnn_conv_rows_scratch(&conv), 0);
    conv.out.h = 4u;
    conv.groups = 0u;
    EXPECT(albsnn_conv_rows(&conv, x, y, scratch, 64u), ALBSNN_ERR_DESCRIPTOR);
    conv.groups = 2u; /* one input channel does not split into two groups */
    EXPECT(albsnn_conv_rows(&conv, x, y, scratch, 64u), ALBSNN_ERR_DESCRIPTOR);
    conv.groups = 1u;
    conv.stride = 0u;
    EXPECT(albsnn_conv_rows(&conv, x, y, scratch, 64u), ALBSNN_ERR_DESCRIPTOR);
    conv.stride = 1u;
    conv.weight = NULL;
    EXPECT(albsnn_conv_rows(&conv, x, y, scratch, 64u), ALBSNN_ERR_NULL);
    conv.weight = w;
    conv.lif = &hard; /* neurons write a spike map, not floats */
    EXPECT(albsnn_conv_rows(&conv, x, y, scratch, 64u), ALBSNN_ERR_DESCRIPTOR);
    conv.out = spikes_out;
    conv.lif = &bad_reset;
    EXPECT(albsnn_conv_rows(&conv, x, y, scratch, 64u), ALBSNN_ERR_DESCRIPTOR);
    EXPECT_UNTOUCHED(y);
    conv.lif = NULL;
    conv.out = maps;
    EXPECT(albsnn_conv_rows(&conv, x, y, scratch, n_rows), ALBSNN_OK);

    /* the popcount kernel */
    n_words = albsnn_conv_bits_scratch_words(&bconv);
    n_counts = albsnn_conv_bits_scratch_counts(&bconv);
    EXPECT(n_words, 1 * (1 + 4) + 4); /* a weight word, 4 fields of 1 word, 4 partial sums */
    EXPECT(n_counts, 4 + 4 * 2);      /* 4 popcounts, 4 agreements, 4 sums */
    fill_words(out_planes, 2);
    EXPECT(albsnn_conv_bits(&bconv, NULL, out_planes, words, n_words, counts, n_counts), ALBSNN_ERR_NULL);
    EXPECT(albsnn_conv_bits(&bconv, planes, out_planes, NULL, n_words, counts, n_counts), ALBSNN_ERR_NULL);
    EXPECT(albsnn_conv_bits(&bconv, planes, out_planes, words, n_words, NULL, n_counts), ALBSNN_ERR_NULL);
    EXPECT(albsnn_conv_bits(&bconv, planes, out_planes, words, n_words - 1u, counts, n_counts), ALBSNN_ERR_SCRATCH);
    EXPECT(albsnn_conv_bits(&bconv, planes, out_planes, words, n_words, counts, n_counts - 1u), ALBSNN_ERR_SCRATCH);
    EXPECT_UNTOUCHED(out_planes);
    bconv.in = image; /* floats in: the popcount kernel needs bit planes */
    EXPECT(albsnn_conv_bits(&bconv, planes, out_planes, words, 64u, counts, 64u), ALBSNN_ERR_DESCRIPTOR);
    EXPECT(albsnn_conv_bits_scratch_words(&bconv), 0);
    bconv.in = spikes_in;
    bconv.bits = NULL;
    EXPECT(albsnn_conv_bits(&bconv, planes, out_planes, words, 64u, counts, 64u), ALBSNN_ERR_NULL);
    bconv.bits = bits;
    EXPECT_UNTOUCHED(out_planes);
    EXPECT(albsnn_conv_bits(&bconv, planes, out_planes, words, n_words, counts, n_counts), ALBSNN_OK);

    /* the event-driven kernels: 1-bit weights as lane masks (bit-sliced counters), float weights tap-major */
    bconv.bits = masks;
    n_words = albsnn_conv_bit_events_scratch_words(&bconv);
    n_counts = albsnn_conv_bit_events_scratch_counts(&bconv);
    EXPECT(n_words, 4 * 2 + 3 + (5 + 16)); /* 4 pixel rows of 2 words, 3 row starts, 5 counter planes, a tree */
    EXPECT(n_counts, 2);                   /* one output's sums: no firing range, so unpacked */
    fill_words(out_planes, 2);
    EXPECT(albsnn_conv_bit_events(&bconv, NULL, out_planes, words, n_words, counts, n_counts), ALBSNN_ERR_NULL);
    EXPECT(albsnn_conv_bit_events(&bconv, planes, NULL, words, n_words, counts, n_counts), ALBSNN_ERR_NULL);
    EXPECT(albsnn_conv_bit_events(&bconv, planes, out_planes, NULL, n_words, counts, n_counts), ALBSNN_ERR_NULL);
    EXPECT(albsnn_conv_bit_events(&bconv, planes, out_planes, words, n_words, NULL, n_counts), ALBSNN_ERR_NULL);
    EXPECT(albsnn_conv_bit_events(&bconv, planes, out_planes, words, n_words - 1u, counts, n_counts),
           ALBSNN_ERR_SCRATCH);
    EXPECT(albsnn_conv_bit_events(&bconv, planes, out_planes, words, n_words, counts, n_counts - 1u),
           ALBSNN_ERR_SCRATCH);
    bconv.in = image;
    EXPECT(albsnn_conv_bit_events(&bconv, planes, out_planes, words, 64u, counts, 64u), ALBSNN_ERR_DESCRIPTOR);
    EXPECT(albsnn_conv_bit_events_scratch_counts(&bconv), 0);
    bconv.in = spikes_in;
    bconv.out.w = 5u; /* does not follow from 4 columns, kernel 3, padding 1 */
    EXPECT(albsnn_conv_bit_events(&bconv, planes, out_planes, words, 64u, counts, 64u), ALBSNN_ERR_DESCRIPTOR);
    bconv.out.w = 4u;
    EXPECT_UNTOUCHED(out_planes);
    EXPECT(albsnn_conv_bit_events(&bconv, planes, out_planes, words, n_words, counts, n_counts), ALBSNN_OK);
    fconv.in = spikes_in;
    n_words = albsnn_conv_events_scratch_words(&fconv);
    n_rows = albsnn_conv_events_scratch_floats(&fconv);
    EXPECT(n_words, 4 * 2 + 3 + 65); /* the pixel rows, 3 row starts, a batch of 64 event positions and its end */
    EXPECT(n_rows, 2 + 64 + 2);      /* one output's sums, the batch's values, 2 count values */
    fill_floats(y, 32);
    EXPECT(albsnn_conv_events(NULL, planes, y, words, n_words, scratch, n_rows), ALBSNN_ERR_NULL);
    EXPECT(albsnn_conv_events(&fconv, planes, y, NULL, n_words, scratch, n_rows), ALBSNN_ERR_NULL);
    EXPECT(albsnn_conv_events(&fconv, planes, y, words, n_words, NULL, n_rows), ALBSNN_ERR_NULL);
    EXPECT(albsnn_conv_events(&fconv, planes, y, words, n_words - 1u, scratch, n_rows), ALBSNN_ERR_SCRATCH);
    EXPECT(albsnn_conv_events(&fconv, planes, y, words, n_words, scratch, n_rows - 1u), ALBSNN_ERR_SCRATCH);
    fconv.in = image; /* floats in: events need bit planes */
    EXPECT(albsnn_conv_events(&fconv, planes, y, words, 128u, scratch, 128u), ALBSNN_ERR_DESCRIPTOR);
    EXPECT(albsnn_conv_events_scratch_floats(&fconv), 0);
    fconv.in = spikes_in;
    fconv.weight = NULL;
    EXPECT(albsnn_conv_events(&fconv, planes, y, words, 128u, scratch, 128u), ALBSNN_ERR_NULL);
    fconv.weight = w;
    EXPECT_UNTOUCHED(y);
    EXPECT(albsnn_conv_events(&fconv, planes, y, words, n_words, scratch, n_rows), ALBSNN_OK);

    /* pooling, batch norm, neurons, the head */
    fill_floats(small, 8);
    pool.kernel = 0u;
    EXPECT(albsnn_pool2d(&pool, y, small), ALBSNN_ERR_DESCRIPTOR);
    pool.kernel = 2u;
    pool.out.c = 3u;
    EXPECT(albsnn_pool2d(&pool, y, small), ALBSNN_ERR_DESCRIPTOR);
    pool.out.c = 2u;
    EXPECT(albsnn_pool2d(NULL, y, small), ALBSNN_ERR_NULL);
    EXPECT(albsnn_pool2d(&pool, y, NULL), ALBSNN_ERR_NULL);
    EXPECT(albsnn_affine(&maps, y, NULL, bias, y), ALBSNN_ERR_NULL);
    EXPECT(albsnn_gap(&pooled, NULL, small), ALBSNN_ERR_NULL);
    EXPECT(albsnn_step_mean(&pooled, y, NULL), ALBSNN_ERR_NULL);
    EXPECT(albsnn_step_mean(NULL, y, small), ALBSNN_ERR_NULL);
    EXPECT_UNTOUCHED(small);
    fill_words(out_planes, 2);
    EXPECT(albsnn_lif_layer(&image, x, &bad_reset, &spikes_in, out_planes), ALBSNN_ERR_DESCRIPTOR);
    EXPECT(albsnn_lif_layer(&image, x, &bad_charge, &spikes_in, out_planes), ALBSNN_ERR_DESCRIPTOR);
    EXPECT(albsnn_lif_layer(&image, x, &no_inverses, &spikes_in, out_planes), ALBSNN_ERR_DESCRIPTOR);
    EXPECT(albsnn_lif_layer(&image, x, &hard, &spikes_out, out_planes), ALBSNN_ERR_DESCRIPTOR); /* 16 in, 32 out */
    EXPECT(albsnn_lif_layer(&image, x, NULL, &spikes_in, out_planes), ALBSNN_ERR_NULL);
    EXPECT_UNTOUCHED(out_planes);
    EXPECT(albsnn_pool2d(&pool, y, small), ALBSNN_OK);
    EXPECT(albsnn_lif_layer(&image, x, &hard, &spikes_in, out_planes), ALBSNN_OK);
    EXPECT(albsnn_gap(&pooled, small, x), ALBSNN_OK);
    if (failures == 0) {
        printf("ok\n");
    }
    return failures != 0;
}
"""


@pytest.fixture(scope="module")
def digits() -> dict[str, torch.Tensor]:
    """The digits test split (all 359 images) and a few training images for batch-norm statistics."""
    return {
        "test": load_split("digits", None, "test").as_float(),
        "train": load_split("digits", None, "train").as_float()[:256],
    }


def _trained(checkpoint: Path, timesteps: int, reset: str, binarize: str) -> SpikingNet:
    """The trained digits network at ``timesteps`` with ``reset``.

    ``binarize``: ``middle`` binarizes conv3, ``candidates`` all three candidates.
    """
    base = load_checkpoint(checkpoint)
    spec = copy.deepcopy(base.spec)
    spec["neuron"]["reset"] = reset
    model = SpikingNet(spec, timesteps)
    model.load_state_dict(base.state_dict())
    binarize_(model, ["layers.conv3"] if binarize == "middle" else candidate_layers(model))
    return model.eval()


def _pool_head_spec() -> dict[str, Any]:
    """Grouped, strided and 5x5 convs with bias, max pooling, a lone batch norm, BN1d, a linear head; odd neurons."""
    spec = resolve_architecture("digits-fc", "digits")
    spec["neuron"] = {"tau": 1.5, "v_threshold": 0.8, "v_reset": -0.25, "reset": "hard"}
    spec["layers"] = [
        {"type": "conv", "out_channels": 8, "kernel_size": 3, "padding": 1},
        {"type": "bn"},
        {"type": "lif"},
        {"type": "conv", "out_channels": 16, "kernel_size": 3, "stride": 2, "padding": 1, "groups": 4, "bias": True},
        {"type": "bn"},
        {"type": "lif"},
        {"type": "conv", "out_channels": 16, "kernel_size": 5, "padding": 2, "groups": 2},
        {"type": "maxpool", "kernel_size": 2},
        {"type": "bn"},
        {"type": "lif"},
        {"type": "flatten"},
        {"type": "linear", "out_features": 32, "bias": False},
        {"type": "bn"},
        {"type": "lif"},
        {"type": "linear", "out_features": 10},
    ]
    return spec


def _small_spec() -> dict[str, Any]:
    """digits-small: an average pool of spikes (count planes) feeding a binarized conv, a GAP head."""
    return resolve_architecture("digits-small", "digits")


def _spike_pool_spec() -> dict[str, Any]:
    """Max and average pooling of spikes between event-driven convs (pixel-major in one step), strided, 5x5, no
    padding, a linear head."""
    spec = resolve_architecture("digits-fc", "digits")
    spec["layers"] = [
        {"type": "conv", "out_channels": 24, "kernel_size": 3, "padding": 1},
        {"type": "bn"},
        {"type": "lif"},
        {"type": "maxpool", "kernel_size": 2},
        {"type": "conv", "out_channels": 80, "kernel_size": 5, "padding": 2},
        {"type": "bn"},
        {"type": "lif"},
        {"type": "avgpool", "kernel_size": 3, "stride": 1},
        {"type": "conv", "out_channels": 16, "kernel_size": 2, "stride": 2},
        {"type": "bn"},
        {"type": "lif"},
        {"type": "flatten"},
        {"type": "linear", "out_features": 10},
    ]
    return spec


def _no_lif_spec() -> dict[str, Any]:
    """A stateless network: every step computes the same thing."""
    spec = resolve_architecture("digits-fc", "digits")
    spec["layers"] = [
        {"type": "conv", "out_channels": 8, "kernel_size": 3, "padding": 1},
        {"type": "bn"},
        {"type": "avgpool", "kernel_size": 2},
        {"type": "conv", "out_channels": 10, "kernel_size": 1},
        {"type": "gap"},
    ]
    return spec


def _lively(spec: dict[str, Any], timesteps: int, images: torch.Tensor, reset: str = "hard") -> SpikingNet:
    """A random network with lively spikes, every conv/linear binarized (the first too): BN stats from real images."""
    torch.manual_seed(0)
    spec = {**spec, "neuron": {**spec.get("neuron", {}), "reset": reset}}
    model = SpikingNet(spec, timesteps)
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        for norm in norms:
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(0.5, 1.5)
            norm.momentum = None  # the running statistics are the plain average over the batches below
    binarize_(model, candidate_layers(model, include_first_last=True))
    model.train()
    with torch.no_grad():
        for batch in torch.split(images, 64):
            model(batch)
    return model.eval()


def _export(model: SpikingNet, folder: Path, weights: str = "packed", kernels: str = "auto") -> dict[str, str]:
    """The folder of ``plan_model(model, weights=..., kernels=...)`` (``export_c`` with a kernel choice)."""
    files = render_files(model, plan_model(model, weights=weights, kernels=kernels), weights)
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return files


def _compile(folder: Path, flags: list[str], output: Path, extra: tuple[str, ...] = ()) -> Path:
    """The harness and the folder's C files; with ``-DALBSNN_TRACE`` in ``extra`` also the trace hook."""
    (folder.parent / "harness.c").write_text(HARNESS)
    (folder.parent / "trace_hook.c").write_text(TRACE_HOOK_C)
    sources = [folder.parent / "harness.c", *sorted(folder.glob("*.c"))]
    if "-DALBSNN_TRACE" in extra:
        sources.append(folder.parent / "trace_hook.c")
    done = subprocess.run(
        [CC, *flags, *extra, "-I", str(folder), *map(str, sources), "-o", str(output)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return output


def _build(command: list[str | Path]) -> None:
    """Run a compiler command; it must succeed."""
    done = subprocess.run([str(part) for part in command], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def _run(binary: Path, images: torch.Tensor, work: Path, *trace: str) -> tuple[np.ndarray, str]:
    images.numpy().astype(np.float32).tofile(work / "images.f32")
    done = subprocess.run(
        [str(binary), str(work / "images.f32"), str(work / "logits.f32"), *trace],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr}"
    return np.fromfile(work / "logits.f32", dtype=np.float32).reshape(len(images), -1), done.stderr


def _check_flips_are_ties(
    model: SpikingNet, trace_binary: Path, images: torch.Tensor, rows: np.ndarray, work: Path
) -> None:
    """Each image in ``rows`` must first differ from PyTorch in a spike whose C membrane sits on the threshold.

    See :mod:`albsnn_compress.formats.c.trace`: at the first differing (layer, step) both
    saw the same spikes, so a flip there is a tie or a bug.
    """
    for row in rows:
        _run(trace_binary, images[row : row + 1], work, str(work / "trace.bin"))
        flip = first_flip(
            model, images[row], (work / "trace.bin").read_bytes(), batch=images, row=int(row)
        )  # the reference's batch
        assert flip is not None, f"image {row}: logits differ although every spike agrees"
        assert flip.margin <= TIE_MARGIN, (
            f"image {row}: spike flip {flip.margin:.3g} away from the threshold (layer {flip.layer}, step {flip.step})"
        )


def _agreement(model: SpikingNet, folder: Path, images: torch.Tensor, work: Path) -> None:
    """The compiled folder's logits against PyTorch: >= 99.9 % identical predictions, 1e-4 except ties."""
    binary = _compile(folder, STRICT, work / "model")
    logits, _ = _run(binary, images, work)
    with torch.inference_mode():
        reference = model(images).numpy()
    assert len(np.unique(reference.argmax(axis=1))) > 2, "degenerate model: (nearly) every image gets the same class"
    agree = (logits.argmax(axis=1) == reference.argmax(axis=1)).mean()
    assert agree >= 0.999, f"predictions agree on {agree:.2%}"
    tolerance = 1e-4 * max(1.0, float(np.abs(reference).max()))
    off = np.flatnonzero(np.abs(logits - reference).max(axis=1) > tolerance)
    assert len(off) <= 0.01 * len(images), f"logits differ on {len(off)} of {len(images)} images"
    if len(off):
        _check_flips_are_ties(model, _compile(folder, STRICT, work / "traced", ("-DALBSNN_TRACE",)), images, off, work)


# (id, how to build the model, weights)
CASES = [
    ("trained-T1-hard-middle", lambda ckpt, d: _trained(ckpt, 1, "hard", "middle"), "packed"),
    ("trained-T4-hard", lambda ckpt, d: _trained(ckpt, 4, "hard", "candidates"), "packed"),
    ("trained-T4-soft", lambda ckpt, d: _trained(ckpt, 4, "soft", "candidates"), "packed"),
    ("trained-T4-float-weights", lambda ckpt, d: _trained(ckpt, 4, "hard", "candidates"), "float"),
    ("maxpool-linear-T2-hard", lambda ckpt, d: _lively(_pool_head_spec(), 2, d["train"]), "packed"),
    ("maxpool-linear-T3-soft", lambda ckpt, d: _lively(_pool_head_spec(), 3, d["train"], "soft"), "packed"),
    ("no-lif-T2", lambda ckpt, d: _lively(_no_lif_spec(), 2, d["train"]), "packed"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_compiled_c_matches_pytorch_on_the_digits_test_split(
    case: tuple[Any, ...], digits_checkpoint: Path, digits: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    _, make, weights = case
    model = make(digits_checkpoint, digits)
    assert binarized_layers(model)
    export_c(model, tmp_path / "model_c", weights=weights)
    _agreement(model, tmp_path / "model_c", digits["test"], tmp_path)


# (id, how to build the model, weights, the kernels the event plan must use): between them every event kernel
# path (one step and several, firing ranges and unpacked sums, spikes and count planes, groups, strides, 5x5,
# linear layers, float outputs) against the dense kernels
EVENT_CASES = [
    ("trained-T1-middle", lambda ckpt, d: _trained(ckpt, 1, "hard", "middle"), "packed", {"albsnn_conv_bit_events"}),
    ("trained-T4-soft", lambda ckpt, d: _trained(ckpt, 4, "soft", "candidates"), "packed", {"albsnn_conv_bit_events"}),
    (
        "trained-T4-float-weights",
        lambda ckpt, d: _trained(ckpt, 4, "hard", "candidates"),
        "float",
        {"albsnn_conv_events"},
    ),
    (
        "trained-T1-float-weights",
        lambda ckpt, d: _trained(ckpt, 1, "hard", "candidates"),
        "float",
        {"albsnn_conv_events"},
    ),
    (
        "maxpool-linear-T2",
        lambda ckpt, d: _lively(_pool_head_spec(), 2, d["train"]),
        "packed",
        {"albsnn_conv_bit_events"},
    ),
    (
        "maxpool-linear-T1",
        lambda ckpt, d: _lively(_pool_head_spec(), 1, d["train"]),
        "packed",
        {"albsnn_conv_bit_events"},
    ),
    (
        "maxpool-linear-T1-float",
        lambda ckpt, d: _lively(_pool_head_spec(), 1, d["train"]),
        "float",
        {"albsnn_conv_events"},
    ),
    (
        "maxpool-linear-T3-float",
        lambda ckpt, d: _lively(_pool_head_spec(), 3, d["train"], "soft"),
        "float",
        {"albsnn_conv_events"},
    ),
    ("counts-T1", lambda ckpt, d: _lively(_small_spec(), 1, d["train"]), "packed", {"albsnn_conv_bit_events"}),
    (
        "spike-pools-T1",
        lambda ckpt, d: _lively(_spike_pool_spec(), 1, d["train"]),
        "packed",
        {"albsnn_conv_bit_events"},
    ),
    (
        "spike-pools-T1-float",
        lambda ckpt, d: _lively(_spike_pool_spec(), 1, d["train"]),
        "float",
        {"albsnn_conv_events"},
    ),
    ("counts-T2-float", lambda ckpt, d: _lively(_small_spec(), 2, d["train"]), "float", {"albsnn_conv_events"}),
]


@pytest.mark.parametrize("case", EVENT_CASES, ids=[c[0] for c in EVENT_CASES])
def test_event_kernels_give_the_dense_kernels_bits(
    case: tuple[Any, ...], digits_checkpoint: Path, digits: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    """Event-driven and dense kernels compute the same thing: the same logits bit for bit, and every neuron's
    traced membrane and spike identical (float sums in the same order, integer sums exact). In one time step
    the event-driven kernels pass spikes as pixel-major rows (the dense ones never do)."""
    _, make, weights, kernels = case
    model = make(digits_checkpoint, digits)
    images = digits["test"][:48]
    traces = {}
    for variant in ("dense", "events"):
        files = _export(model, tmp_path / variant, weights, variant)
        used = set(re.findall(r"status = (albsnn_conv_\w+)\(", files["albsnn_model.c"]))
        assert (used & kernels) == (kernels if variant == "events" else set()), used
        pixel_major = re.search(r"(spikes|counts/\d+) pixel-major", files["albsnn_model.c"]) is not None
        assert pixel_major == (variant == "events" and model.timesteps == 1)
        logits, _ = _run(_compile(tmp_path / variant, STRICT, tmp_path / f"{variant}.bin"), images, tmp_path)
        traced = _compile(tmp_path / variant, STRICT, tmp_path / f"{variant}-traced.bin", ("-DALBSNN_TRACE",))
        _run(traced, images, tmp_path, str(tmp_path / "trace.bin"))
        records = np.fromfile(tmp_path / "trace.bin", dtype=TRACE_RECORD)
        traces[variant] = (logits, records)
    np.testing.assert_array_equal(traces["events"][0], traces["dense"][0])
    per_image = [len(r) // len(images) for _, r in traces.values()]
    assert per_image[0] == per_image[1] > 0
    for variant, (_, records) in traces.items():  # one image after another: order each image's records
        image = np.repeat(np.arange(len(images)), per_image[0])
        traces[variant] = (None, records[np.lexsort((records["index"], records["step"], records["layer"], image))])
    dense, events = traces["dense"][1], traces["events"][1]
    for field in ("layer", "step", "index", "spike"):
        np.testing.assert_array_equal(events[field], dense[field])
    np.testing.assert_array_equal(events["h"].view(np.uint32), dense["h"].view(np.uint32))  # bit for bit


def test_integer_firing_ranges_give_the_float_decision(
    digits_checkpoint: Path, digits: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    """With one time step the popcount layers fire on an integer range; the traced float membranes must agree."""
    model = _trained(digits_checkpoint, 1, "hard", "candidates")
    export = export_c(model, tmp_path / "model_c")
    assert "_fires[" in export.files["albsnn_model.c"]
    traced = _compile(tmp_path / "model_c", STRICT, tmp_path / "traced", ("-DALBSNN_TRACE",))
    _run(traced, digits["test"][:40], tmp_path, str(tmp_path / "trace.bin"))
    records = np.fromfile(tmp_path / "trace.bin", dtype=TRACE_RECORD)
    assert len(records) > 40 * 1000
    np.testing.assert_array_equal(records["spike"] > 0, records["h"] >= np.float32(model.spec["neuron"]["v_threshold"]))


@pytest.mark.parametrize("case", [CASES[1], CASES[4]], ids=[CASES[1][0], CASES[4][0]])
def test_sanitized_build_runs_clean(
    case: tuple[Any, ...], digits_checkpoint: Path, digits: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    model = case[1](digits_checkpoint, digits)
    export_c(model, tmp_path / "model_c")
    binary = _compile(tmp_path / "model_c", SANITIZE, tmp_path / "sanitized")
    logits, stderr = _run(binary, digits["test"][:6], tmp_path)
    assert stderr == ""
    with torch.inference_mode():
        np.testing.assert_allclose(logits, model(digits["test"][:6]).numpy(), rtol=0, atol=1e-4)


def test_flip_check_rejects_a_wrong_threshold(digits: dict[str, torch.Tensor], tmp_path: Path) -> None:
    model = _lively(_pool_head_spec(), 2, digits["train"])
    shifted = copy.deepcopy(model)
    for neuron in shifted.modules():
        if isinstance(neuron, LIF):
            # the export computes with 0.85, PyTorch with 0.8; LIF sets v_threshold with setattr, so mypy
            # sees the type torch's nn.Module.__getattr__ declares (Tensor | Module)
            neuron.v_threshold = 0.85  # type: ignore[assignment]
    export_c(shifted, tmp_path / "model_c")
    images = digits["test"][:40]
    logits, _ = _run(_compile(tmp_path / "model_c", STRICT, tmp_path / "model"), images, tmp_path)
    with torch.inference_mode():
        off = np.flatnonzero(np.abs(logits - model(images).numpy()).max(axis=1) > 1e-4)
    assert len(off) > 0.5 * len(images)
    traced = _compile(tmp_path / "model_c", STRICT, tmp_path / "traced", ("-DALBSNN_TRACE",))
    with pytest.raises(AssertionError, match="spike flip .* away from the threshold"):
        _check_flips_are_ties(model, traced, images, off[:3], tmp_path)


def test_same_model_gives_the_same_bytes(digits_checkpoint: Path, tmp_path: Path) -> None:
    model = _trained(digits_checkpoint, 4, "hard", "candidates")
    first, second = export_c(model, tmp_path / "a"), export_c(copy.deepcopy(model), tmp_path / "b")
    names = sorted(p.name for p in (tmp_path / "a").iterdir() if p.name != "manifest.json")  # the set's record
    assert names == ["README.md", "albsnn_kernels.c", "albsnn_kernels.h", "albsnn_model.c", "albsnn_model.h"]
    for name in names:
        assert (
            (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes() == first.files[name].encode()
        )
    assert first == second
    export_c(model, tmp_path / "a")  # into an existing folder: replaced in place, nothing left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == sorted([*names, "manifest.json"])


def _array_bytes(source: str, name: str) -> bytes:
    body = re.search(rf"{name}\[\d+\] = \{{(.*?)\}};", source, re.S)
    assert body is not None, name
    return bytes(int(v, 16) for v in re.findall(r"0x[0-9a-f]{2}", body.group(1)))


def _macros(header: str) -> dict[str, int]:
    return {k: int(v) for k, v in re.findall(r"#define (ALBSNN_\w+) (\d+)", header)}


def test_header_macros_and_packed_bits(digits_checkpoint: Path) -> None:
    model = _trained(digits_checkpoint, 4, "hard", "candidates")
    packed, floats = build_c_sources(model), build_c_sources(model, weights="float")
    macros = _macros(packed.files["albsnn_model.h"])
    plan = plan_model(model)
    assert macros == {
        "ALBSNN_INPUT_C": 1,
        "ALBSNN_INPUT_H": 8,
        "ALBSNN_INPUT_W": 8,
        "ALBSNN_NUM_CLASSES": 10,
        "ALBSNN_TIMESTEPS": 4,
        "ALBSNN_WEIGHT_BYTES": packed.weight_bytes,
        "ALBSNN_ARENA_BYTES": packed.arena_bytes,
        "ALBSNN_SCRATCH_BYTES": plan.scratch_bytes,
        "ALBSNN_OK": 0,
    }
    assert 0 < plan.scratch_bytes == max(op.scratch_bytes for op in plan.ops) < plan.arena_bytes
    assert "int albsnn_infer(const float *pixels, float *logits);" in packed.files["albsnn_model.h"]
    # the status codes: the kernels header's, repeated with identical replacement lists in the model header
    assert status_codes() == STATUS
    for header in (packed.files["albsnn_model.h"], packed.files[KERNELS_H]):
        defined = dict(re.findall(r"^#define (ALBSNN_(?:OK|ERR_\w+)) (\S+)", header, re.M))
        assert defined == {name: str(value) if value >= 0 else f"({value})" for name, value in STATUS.items()}
    source = packed.files["albsnn_model.c"]
    dense = render_files(model, plan_model(model, kernels="dense"), "packed")["albsnn_model.c"]
    for index, (name, module) in enumerate(model.layers.named_children()):
        if f"layers.{name}" in binarized_layers(model):
            weight = module.weight
            assert isinstance(weight, torch.Tensor)
            assert _array_bytes(dense, f"l{index}_{name}_bits") == pack_signs(weight)  # the container's bytes
            # the event kernel's lane masks: the same sign bits, [ky][kx][c][out c] in 64-bit words, LSB first
            masks = np.frombuffer(_array_bytes(source, f"l{index}_{name}_masks"), np.uint8)
            lanes = np.unpackbits(masks, bitorder="little").reshape(*weight.shape[2:], weight.shape[1], -1)
            signs = (weight.detach() >= 0).numpy().transpose(2, 3, 1, 0)
            np.testing.assert_array_equal(lanes[..., : weight.shape[0]], signs)
            assert not lanes[..., weight.shape[0] :].any()
            assert f"l{index}_{name}_w[" not in source and f"l{index}_{name}_bits[" not in source
    assert "l0_conv1_w[" in source and "_bits[" not in floats.files["albsnn_model.c"]
    assert "_masks[" not in floats.files["albsnn_model.c"] and "_wt[" in floats.files["albsnn_model.c"]
    assert packed.weight_bytes * 4 < floats.weight_bytes
    for text in packed.files.values():
        assert "#include <" not in text.replace("#include <stddef.h>", "").replace("#include <stdint.h>", "")
        assert "malloc" not in text and " main(" not in text


def test_arena_holds_each_operation_without_overlap(digits_checkpoint: Path, digits: dict[str, torch.Tensor]) -> None:
    for model in (_trained(digits_checkpoint, 4, "hard", "candidates"), _lively(_pool_head_spec(), 3, digits["train"])):
        plan = plan_model(model)
        largest = 0
        for op, at in zip(plan.ops, plan.placements):
            spans = [(at.scratch, op.scratch_bytes)]
            if at.x is not None:
                spans.append((at.x, op.inp.nbytes))
            if at.y is not None and not op.in_place:
                spans.append((at.y, op.out.nbytes))
            spans = sorted((start, start + size) for start, size in spans if size)
            assert all(0 <= start and end <= plan.arena_bytes for start, end in spans), op.label
            assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), f"{op.label}: buffers overlap {spans}"
            largest = max(largest, sum(end - start for start, end in spans))
        assert largest <= plan.arena_bytes <= largest + 48  # the live set, up to 16-byte alignment of three buffers


def _no_onnx(_graph: GraphEmitter, _name: str, _module: Any, _x: str) -> str:
    raise NotImplementedError("a layer type made up for a test has no ONNX form")


def test_unsupported_layers_and_reset_rules_are_refused(
    digits: dict[str, torch.Tensor], monkeypatch: pytest.MonkeyPatch
) -> None:
    model = _lively(_no_lif_spec(), 2, digits["train"])
    with pytest.raises(ExportError, match=r"unknown weights mode 'half'; choose one of \['packed', 'float'\]"):
        build_c_sources(model, weights="half")
    not_a_net: Any = nn.Sequential()  # the wrong type is the point
    with pytest.raises(ExportError, match=r"expected a SpikingNet .* got Sequential"):
        build_c_sources(not_a_net)
    broken = copy.deepcopy(model)
    broken.layers.gap1 = nn.Identity()
    supported = ", ".join(C_EMITTERS)
    with pytest.raises(
        ExportError, match=rf"layer gap1: the C export cannot express Identity; supported layer types: {supported}$"
    ):
        build_c_sources(broken)
    record = LayerType(
        name="gain",
        modules=(nn.Hardtanh,),
        fields={},
        build=lambda *_: nn.Hardtanh(),
        output_shape=same_shape,
        onnx=_no_onnx,
    )
    with registered(record):
        broken.layers.gap1 = nn.Hardtanh()
        with pytest.raises(
            ExportError, match=r"layer gap1: the C export cannot express Hardtanh \(layer type gain\)"
        ) as caught:
            build_c_sources(broken)
    assert "\n" not in str(caught.value) and "gain" not in LAYER_TYPES
    monkeypatch.setitem(RESET_MODES, "halve", ResetMode(update=lambda _n, h, _s: h / 2, onnx=lambda *_: ""))
    spiking = _lively(_pool_head_spec(), 2, digits["train"][:64], reset="halve")
    rules = r"\['hard', 'soft', 'soft_deferred', 'none'\]"
    refusal = rf"layer lif1: reset rule 'halve' has no C form; the C export supports {rules}$"
    with pytest.raises(ExportError, match=refusal):
        build_c_sources(spiking)


def test_cli_exports_a_folder_and_refuses_a_file(digits_checkpoint: Path, tmp_path: Path) -> None:
    model = _trained(digits_checkpoint, 1, "hard", "middle")
    write_container(tmp_path / "m.albsnn", model)
    result = run_cli(["export", str(tmp_path / "m.albsnn"), "--format", "c", "-o", str(tmp_path / "m_c")])
    expected = build_c_sources(read_container(tmp_path / "m.albsnn").model)
    assert expected == build_c_sources(model)
    written = {p.name: p.read_text() for p in (tmp_path / "m_c").iterdir() if p.name != "manifest.json"}
    assert written == expected.files
    assert f"{expected.weight_bytes} bytes const (flash), {expected.arena_bytes} bytes arena (RAM)" in result.stdout
    (tmp_path / "file").write_text("x")
    result = run_cli(["export", str(tmp_path / "m.albsnn"), "--format", "c", "-o", str(tmp_path / "file")], 2)
    assert result.stderr.count("\n") == 1 and "is a file; the C export writes a folder" in result.stderr
    result = run_cli(["export", str(tmp_path / "m.albsnn"), "--format", "c", "-o", str(tmp_path / "no" / "m_c")], 2)
    assert result.stderr.count("\n") == 1 and "does not exist; create it first" in result.stderr
    result = run_cli(
        ["export", str(tmp_path / "m.albsnn"), "-o", str(tmp_path / "m_c")], 2
    )  # onnx into a folder: as before
    assert "File" in result.stderr and "is a directory." in result.stderr


# -- the C itself: types, statuses, scratch sizes, C++, templates ----------------------------------

TEMPLATE_DIR = Path(str(resources.files("albsnn_compress.formats.c") / "templates"))

# A pointer cast through void * (how a reinterpretation hides from the compiler), and any cast to a data pointer.
DOUBLE_CAST = re.compile(r"\(\s*(?:const\s+)?\w+\s*\*\s*\)\s*\(\s*(?:const\s+)?void\s*\*\s*\)")
POINTER_CAST = re.compile(r"\(\s*(?:const\s+)?(?:float|u?int\d+_t|void)\s*\*\s*\)")

# (id, how to build the model, weights, kernels): between them every kernel and both kinds of input of each
ALIASING_CASES = [
    ("maxpool-linear-T3-soft", lambda d: _lively(_pool_head_spec(), 3, d["train"], "soft"), "packed", "auto"),
    ("maxpool-linear-T1-dense", lambda d: _lively(_pool_head_spec(), 1, d["train"]), "packed", "dense"),
    ("small-T2", lambda d: _lively(_small_spec(), 2, d["train"]), "packed", "auto"),
    ("small-T1", lambda d: _lively(_small_spec(), 1, d["train"]), "packed", "auto"),
    ("small-T2-dense", lambda d: _lively(_small_spec(), 2, d["train"]), "packed", "dense"),
    ("small-T1-float-weights", lambda d: _lively(_small_spec(), 1, d["train"]), "float", "auto"),
    ("small-T1-float-weights-dense", lambda d: _lively(_small_spec(), 1, d["train"]), "float", "dense"),
    ("no-lif-T2", lambda d: _lively(_no_lif_spec(), 2, d["train"]), "packed", "auto"),
]


@pytest.mark.parametrize("case", ALIASING_CASES, ids=[c[0] for c in ALIASING_CASES])
def test_strict_aliasing_warnings_and_the_alignment_sanitizer_are_clean(
    case: tuple[Any, ...], digits: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    """Each object is read and written through a pointer of its own type, aligned for it, so the same
    logits come out with -fstrict-aliasing -Wstrict-aliasing=1 -Wcast-align=strict and under UBSan."""
    _, make, weights, kernels = case
    folder = tmp_path / "model_c"
    files = _export(make(digits), folder, weights, kernels)
    model_c = files["albsnn_model.c"]
    assert re.search(r"static union \{\n(    \w+ \w+\[ALBSNN_ARENA_BYTES / \d\];\n){4}\} albsnn_arena;", model_c)
    assert POINTER_CAST.search(model_c) is None  # every pointer into the arena comes from the member of its type
    assert DOUBLE_CAST.search(files[KERNELS_C]) is None
    images = digits["test"][:24]
    reference, _ = _run(_compile(folder, STRICT, tmp_path / "plain"), images, tmp_path)
    aliased, _ = _run(_compile(folder, STRICT_ALIASING, tmp_path / "aliasing"), images, tmp_path)
    checked, stderr = _run(_compile(folder, SANITIZE_ALIGNMENT, tmp_path / "ubsan"), images, tmp_path)
    assert stderr == ""
    np.testing.assert_array_equal(aliased, reference)
    np.testing.assert_array_equal(checked, reference)


def test_kernels_return_a_status_on_bad_arguments(tmp_path: Path) -> None:
    (tmp_path / "bad.c").write_text(BAD_ARGUMENTS)
    binary = tmp_path / "bad"
    warnings = ["-Wall", "-Wextra", "-Werror", "-pedantic"]
    _build([CC, *SANITIZE, *warnings, "-I", TEMPLATE_DIR, tmp_path / "bad.c", TEMPLATE_DIR / KERNELS_C, "-o", binary])
    done = subprocess.run([str(binary)], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (0, "ok\n", "")


STATUS_MAIN = r"""
#include <stdio.h>
#include "albsnn_model.h"

int main(void)
{
    static float pixels[ALBSNN_INPUT_C * ALBSNN_INPUT_H * ALBSNN_INPUT_W];
    float logits[ALBSNN_NUM_CLASSES];
    printf("%d\n", albsnn_infer(pixels, logits));
    return 0;
}
"""


def test_infer_returns_the_status_of_a_kernel_that_refuses_its_arguments(
    digits: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    """A build whose generated calls no longer match the kernels (edited by hand) fails loudly, not silently."""
    export = export_c(_lively(_pool_head_spec(), 2, digits["train"][:64]), tmp_path / "model_c")
    source = export.files["albsnn_model.c"]
    call = re.search(r"(status = albsnn_conv_rows\(&l0_conv1, [^;]*, )(\d+)u\);", source)
    assert call is not None
    short = source.replace(call.group(0), f"{call.group(1)}{int(call.group(2)) - 1}u);")
    assert source.count("ALBSNN_RESET_HARD") > 1
    unknown = source.replace("ALBSNN_RESET_HARD", "ALBSNN_RESET_RULES", 1)
    (tmp_path / "main.c").write_text(STATUS_MAIN)
    for name, text, status in [
        ("as-exported", source, STATUS["ALBSNN_OK"]),
        ("scratch-one-short", short, STATUS["ALBSNN_ERR_SCRATCH"]),
        ("unknown-reset", unknown, STATUS["ALBSNN_ERR_DESCRIPTOR"]),
    ]:
        (tmp_path / "model_c" / "albsnn_model.c").write_text(text)
        binary = tmp_path / name
        _build(
            [
                CC,
                *STRICT,
                "-I",
                tmp_path / "model_c",
                tmp_path / "main.c",
                *sorted((tmp_path / "model_c").glob("*.c")),
                "-o",
                binary,
            ]
        )
        done = subprocess.run([str(binary)], capture_output=True, text=True, timeout=60)
        assert done.stdout == f"{status}\n", name


# Each kernel's scratch-size functions (floats; uint64_t words and int32_t counts), by kernel name.
SCRATCH_FUNCTIONS: dict[str, tuple[str | None, ...]] = {
    "albsnn_conv_rows": ("albsnn_conv_rows_scratch", None, None),
    "albsnn_conv_events": ("albsnn_conv_events_scratch_floats", "albsnn_conv_events_scratch_words", None),
    "albsnn_conv_bits": (None, "albsnn_conv_bits_scratch_words", "albsnn_conv_bits_scratch_counts"),
    "albsnn_conv_bit_events": (None, "albsnn_conv_bit_events_scratch_words", "albsnn_conv_bit_events_scratch_counts"),
}


def _scratch_program(ops: list[ConvOp], functions: dict[str, tuple[str | None, ...]] = SCRATCH_FUNCTIONS) -> str:
    """A C file with the ops' arrays and descriptors that prints each one's scratch sizes (floats, words, counts)
    from the scratch-size functions of its kernel (``functions``: kernel name -> those functions)."""
    parts = ['#include <stdio.h>\n#include "albsnn_kernels.h"\n']
    for op in ops:
        parts += [render_array(array) for array in op.arrays()] + [op.declarations()]
    parts.append("int main(void)\n{\n")
    for op in ops:
        sizes = ", ".join(
            "0ul" if function is None else f"(unsigned long){function}(&{op.ident})"
            for function in functions[op.function]
        )
        parts.append(f'    printf("%lu %lu %lu\\n", {sizes});\n')
    parts.append("    return 0;\n}\n")
    return "".join(parts)


def test_scratch_size_functions_agree_with_the_plan(digits: dict[str, torch.Tensor], tmp_path: Path) -> None:
    """albsnn_conv_*_scratch from the descriptors give what the planner reserved for each call, for every
    kernel (dense and event-driven, float and 1-bit weights, spikes and count planes, one step and several)."""
    functions = set()
    for timesteps, spec, weights, kernels in [
        (3, _pool_head_spec(), "packed", "events"),
        (3, _pool_head_spec(), "packed", "dense"),
        (1, _pool_head_spec(), "packed", "events"),
        (2, _small_spec(), "packed", "events"),
        (1, _small_spec(), "packed", "events"),
        (2, _small_spec(), "packed", "dense"),
        (2, _small_spec(), "float", "events"),
        (2, _small_spec(), "float", "dense"),
    ]:
        plan = plan_model(_lively(spec, timesteps, digits["train"][:64]), weights=weights, kernels=kernels)
        ops = [op for op in plan.ops if isinstance(op, ConvOp)]
        assert any(op.uses_popcount for op in ops) == (weights == "packed" and kernels == "dense")
        assert any(op.uses_bit_events for op in ops) == (weights == "packed" and kernels == "events")
        functions |= {op.function for op in ops}
        (tmp_path / "scratch.c").write_text(_scratch_program(ops))
        binary = tmp_path / "scratch"
        _build([CC, *STRICT, "-I", TEMPLATE_DIR, tmp_path / "scratch.c", TEMPLATE_DIR / KERNELS_C, "-o", binary])
        lines = subprocess.run([str(binary)], capture_output=True, text=True, check=True).stdout.splitlines()
        for op, line in zip(ops, lines, strict=True):
            floats, words, counts = map(int, line.split())
            assert (floats, words, counts) == (op.scratch_floats, op.scratch_words, op.scratch_counts), op.label
            assert op.scratch_bytes == 4 * floats + 8 * words + 4 * counts > 0, op.label
    assert functions == set(SCRATCH_FUNCTIONS)


@needs_cxx
def test_a_cpp_program_includes_the_headers_and_links(digits: dict[str, torch.Tensor], tmp_path: Path) -> None:
    """The extern "C" guards: a C++ program links against the folder compiled as C (and, without the
    guards, does not); the folder also compiles as C++. Every build gives the same logits."""
    assert CXX is not None
    folder = tmp_path / "model_c"
    export = export_c(_lively(_pool_head_spec(), 2, digits["train"]), folder)
    for name in (HEADER, KERNELS_H):
        assert '#ifdef __cplusplus\nextern "C" {\n#endif' in export.files[name]
    images = digits["test"][:24]
    reference, _ = _run(_compile(folder, STRICT, tmp_path / "c"), images, tmp_path)
    sources = sorted(folder.glob("*.c"))
    objects = [tmp_path / f"{source.stem}.o" for source in sources]
    for source, target in zip(sources, objects):
        _build([CC, *STRICT, "-c", source, "-o", target])
    harness = tmp_path / "harness.cpp"
    harness.write_text(HARNESS_CXX)
    _build([CXX, *CXX_STRICT, "-I", folder, harness, *objects, "-o", tmp_path / "cpp"])
    logits, _ = _run(tmp_path / "cpp", images, tmp_path)
    np.testing.assert_array_equal(logits, reference)
    _build([CXX, *CXX_STRICT, "-I", folder, harness, "-x", "c++", *sources, "-o", tmp_path / "all-cpp"])
    logits, _ = _run(tmp_path / "all-cpp", images, tmp_path)
    np.testing.assert_array_equal(logits, reference)
    unguarded = tmp_path / "unguarded"
    unguarded.mkdir()
    for name in (HEADER, KERNELS_H):
        text = re.sub(r'#ifdef __cplusplus\n(extern "C" \{|\})\n#endif\n', "", export.files[name])
        assert 'extern "C" {' not in text
        (unguarded / name).write_text(text)
    done = subprocess.run(
        [CXX, *CXX_STRICT, "-I", str(unguarded), str(harness), *map(str, objects), "-o", str(tmp_path / "bad")],
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0 and "undefined reference to `albsnn_infer(float const*, float*)'" in done.stderr


def test_each_template_compiles_alone(digits: dict[str, torch.Tensor], tmp_path: Path) -> None:
    """albsnn_kernels.c as shipped (no markers to fill in) and albsnn_kernels.h on their own, with and without
    ALBSNN_TRACE; the exported folder holds them byte for byte."""
    assert sorted(path.name for path in TEMPLATE_DIR.iterdir()) == sorted(TEMPLATES)
    kernels, header = TEMPLATE_DIR / KERNELS_C, TEMPLATE_DIR / KERNELS_H
    for extra in ([], ["-DALBSNN_TRACE"]):
        _build([CC, *STRICT, *extra, "-c", kernels, "-o", tmp_path / "kernels.o"])
        _build([CC, *STRICT, *extra, "-fsyntax-only", "-x", "c", header])
        if CXX is not None:
            _build([CXX, *CXX_STRICT, *extra, "-fsyntax-only", "-x", "c++", header])
    export = build_c_sources(_lively(_no_lif_spec(), 1, digits["train"][:64]))
    assert export.files[KERNELS_C] == kernels.read_text() and export.files[KERNELS_H] == header.read_text()


def test_every_c_reset_rule_has_its_constant_and_case_in_the_templates() -> None:
    header, kernels = (TEMPLATE_DIR / KERNELS_H).read_text(), (TEMPLATE_DIR / KERNELS_C).read_text()
    constants = {name: int(value) for name, value in re.findall(r"#define (ALBSNN_RESET_\w+) (\d+)u", header)}
    assert constants.pop("ALBSNN_RESET_RULES") == len(RESET_C)
    assert set(constants) == set(RESET_C.values()) and sorted(constants.values()) == list(range(len(RESET_C)))
    assert sorted(re.findall(r"case (ALBSNN_RESET_\w+):", kernels)) == sorted(RESET_C.values())
    assert set(RESET_C) <= set(RESET_MODES)
