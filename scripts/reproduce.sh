#!/usr/bin/env bash
# Regenerate every experiment output and execute every notebook in place (with outputs).
# How long each step takes: experiments/README.md, "How long things take".
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || scripts/setup-notebooks.sh
cargo build --release --bins
target/release/spectral-sweep --out results/spectral-sweep
scripts/theory-n.sh   # the finite-n study of notebook 10 (results/theory-n/)
target/release/bifurcation --out results/bifurcation
target/release/pathological --out results/pathological
target/release/pathological --lengths 10,20,30,40 --out results/pathological-short
target/release/pathological --generalize --out results/pathological-generalization
target/release/agreement --out results/agreement
target/release/bidirectional --out results/bidirectional
target/release/depth --out results/depth
target/release/lstm-vs-gru --out results/lstm-vs-gru
scripts/bench-lstm-vs-gru.sh   # the seconds axis of notebook 07 (results/lstm-vs-gru/ms_per_update.csv)
[ -e data/manifest.json ] || scripts/fetch-data.sh   # the real data sets (PTB, chorales)
target/release/language-model --out results/language-model
target/release/music --out results/music
BPTT_RESULTS="$PWD/results" .venv/bin/python scripts/run_notebooks.py --inplace notebooks/*.ipynb
