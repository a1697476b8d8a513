#!/usr/bin/env bash
# The finite-n study of notebooks/10_theory.ipynb: the spectral sweep of the four vanilla cells
# (Gaussian ensemble, the default 21 radii × 20 matrices, T = 100, B = 16, m = 32) at
# n = 64, 128, 256 and 512, with the top Lyapunov exponent, into results/theory-n/n<N>/, and
# beyond the grid (ρ up to 3) at n = 128 and 512 into results/theory-n/saturation-n<N>/. The
# mean-field prediction is an n → ∞ statement; how far the measured decay rate lies from it at
# each n is the notebook's finite-size figure. About 17 min of one core in all (n = 512 is most
# of it; experiments/README.md, "How long things take"). Extra arguments (e.g. --threads 1,
# --resume) are passed on.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin spectral-sweep
for n in 64 128 256 512; do
  echo "== theory-n: n = $n"
  target/release/spectral-sweep --cells rnn-tanh,rnn-sigmoid,rnn-relu,rnn-linear --hidden "$n" \
    --lyapunov 1 --quiet --out "results/theory-n/n$n" "$@"
done
# Beyond the default grid: ρ from 1.5 to 3 (strong recurrence against the unit input drive:
# saturated tanh and sigmoid units, exploding ReLU), at n = 128 and 512.
for n in 128 512; do
  echo "== theory-n: saturation, n = $n"
  target/release/spectral-sweep --cells rnn-tanh,rnn-sigmoid,rnn-relu --hidden "$n" --rho 1.5:3:0.25 \
    --lyapunov 1 --quiet --out "results/theory-n/saturation-n$n" "$@"
done
