#!/usr/bin/env bash
# `make demo`: train a small SNN on the bundled digits, then compress it under 0.2- and 1.5-point budgets.
# Needs no dataset folder and no network; a few minutes on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin/albsnn-compress
OUT=${DEMO_OUT:-demo-out}
mkdir -p "$OUT"
echo "== 1/2 train a spiking network on the bundled digits (T=1)"
"$BIN" train --dataset digits --arch digits-small --timesteps 1 --epochs 20 --seed 0 -o "$OUT/digits.pt"
echo "== 2/3 compress it: binarize what a 0.2-point accuracy budget affords"
echo "   (the digits validation split has 144 images: one image is 0.69 points, so 0.2 allows no new error)"
"$BIN" "$OUT/digits.pt" --budget 0.2 --seed 0 -o "$OUT/digits-albsnn-0.2"
echo "== 3/3 the same with a 1.5-point budget (two more errors allowed)"
"$BIN" "$OUT/digits.pt" --budget 1.5 --seed 0 -o "$OUT/digits-albsnn-1.5"
echo "== outputs (open report.html in a browser)"
ls -l "$OUT"/digits-albsnn-*
