#!/usr/bin/env bash
# Table 1's next-character rows at ten times the default budget: 8000 updates per run (10 epochs
# of PTB's training characters at B = 32 streams × T = 200 steps), the three algorithms on the
# paper's 500-unit sigmoid RNN, then the LSTM and the GRU of its parameter count — in this order
# (the driver hands runs out in plan order), into results/language-model-long/. Hours per run
# (run times in experiments/README.md, "How long things take"), so every invocation runs with
# --resume: run this script again to continue. A finished run's rows are the files of
# results/language-model-long/chunks/, which are committed; the run in progress continues from
# its checkpoint (results/language-model-long/checkpoints/, git-ignored, every 100 updates) on
# this machine, or from its start on a fresh clone. Extra arguments (e.g. --threads 1) are passed
# on; arguments that would change the plan are refused by --resume.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -e data/manifest.json ] || scripts/fetch-data.sh
cargo build --release --bin language-model
target/release/language-model --resume --out results/language-model-long --ahead 1 \
  --runs rnn-sigmoid:msgd-c,rnn-sigmoid:msgd-cr,rnn-sigmoid:msgd,lstm:msgd-c,gru:msgd-c \
  --updates 8000 --eval-every 400 --log-every 20 --checkpoint-every 100 "$@"
