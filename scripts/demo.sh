#!/usr/bin/env bash
# `make demo`: train a small SNN on the bundled digits, then compress it under a 0.2-point budget.
# Needs no dataset folder and no network; a few minutes on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin/albsnn-compress
OUT=${DEMO_OUT:-demo-out}
mkdir -p "$OUT"
echo "== 1/2 train a spiking network on the bundled digits (T=1)"
"$BIN" train --dataset digits --arch digits-small --timesteps 1 --epochs 20 --seed 0 -o "$OUT/digits.pt"
echo "== 2/2 compress it: binarize what a 0.2-point accuracy budget affords"
"$BIN" "$OUT/digits.pt" --budget 0.2 --seed 0 -o "$OUT/digits-albsnn"
echo "== outputs in $OUT/digits-albsnn"
ls -l "$OUT/digits-albsnn"
