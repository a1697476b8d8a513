#!/usr/bin/env bash
# Fig. 7 at a tenth of the paper's budget: the long temporal-order grid of
# notebooks/03_pathological_tasks.ipynb — smart tanh × T ∈ {200, 150, 100, 50} × 5 seeds, 500,000
# updates per run (100× the default grid's 5000; the paper: up to 5,000,000), f32 updates, one
# output per algorithm, in this order (after the pilot, results/pathological-pilot/: four runs up
# to 1,000,000 updates): results/pathological-long/sgd-cr/ (the headline), then
# the paper's generalisation run (…/generalization/), then …/sgd-c/ and …/sgd/. A run stops at
# success, so the cost is that of the runs that fail: hours on 2 cores (run times in
# experiments/README.md, "How long things take").
#
# Too long for one sitting, so every invocation runs with --resume: run this script again to
# continue. The driver hands runs out in plan order (T = 200 first), so a stopped grid has finished
# a prefix of its plan. Until an algorithm's grid completes, its finished runs are the files of
# results/pathological-long/<alg>/chunks/, which are committed (a few kB a run: curves are logged
# every 5000 updates), so the grid continues from a fresh clone; the invocations recorded there
# (and, at the end, in the sidecar) name the commit of each sitting. The three algorithms' runs of
# one seed start from the same weights and see the same minibatches (the random streams do not
# depend on the algorithm), as in one grid. Extra arguments (e.g. --threads 1) are passed on;
# arguments that would change the plan are refused by --resume.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin pathological
long=(--resume --tasks temporal-order --inits smart-tanh --seeds 5 --updates 500000 --dtype f32
  --eval-every 1000 --log-every 5000)
grid() {
  echo "== pathological-long: $1"
  target/release/pathological "${long[@]}" --out "results/pathological-long/$1" --algorithms "$1" \
    --lengths 200,150,100,50 "${@:2}"
}
# the pilot: SGD-C and SGD-CR at T = 100 and 200, seed 0, up to 1,000,000 updates
echo "== pathological-long: pilot"
target/release/pathological --resume --out results/pathological-pilot --tasks temporal-order \
  --inits smart-tanh --algorithms sgd-c,sgd-cr --lengths 100,200 --seeds 1 --updates 1000000 \
  --dtype f32 --eval-every 1000 --log-every 1000 "$@"
grid sgd-cr "$@"
# the paper's generalisation experiment at the same budget: SGD-CR trained on lengths 50–200,
# tested at 50 … 5000
echo "== pathological-long: generalization"
target/release/pathological "${long[@]}" --out results/pathological-long/generalization \
  --algorithms sgd-cr --generalize "$@"
grid sgd-c "$@"
grid sgd "$@"
