#!/usr/bin/env bash
# The pilot behind `music`'s default learning rates: one seed of every default run at the same
# learning rate for every cell and algorithm, 0.3, 1 and 3 (clipping threshold 5, 3000 updates),
# into results/music-pilot/lr<rate>/. The default takes, per cell, the rate of the best
# validation NLL: 0.3 for the tanh RNN (all three algorithms), 1 for the gated cells
# (experiments/README.md, `music`). About 2 min per rate on an idle core.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -e data/manifest.json ] || scripts/fetch-data.sh
cargo build --release --bin music
for lr in 0.3 1 3; do
  target/release/music --seeds 1 --lr-msgd "$lr" --lr-c "$lr" --lr-cr "$lr" --lr-gated "$lr" \
    --sample 0 --out "results/music-pilot/lr$lr" "$@"
done
