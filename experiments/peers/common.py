"""Definitions shared by the peer benchmarks in this folder.

* the `sweep-tanh-128` workload: its sizes, the rho grid, the nominal operation count, the
  canonical numpy inputs, the per-rho summary, the CSV writer and the closing report line;
* the training workloads (`train_step_torch.py`, `train_nets_torch.py`): torch set-up, random
  one-hot batches and the timed update loop;
* the thread environment and the command-line parser every script uses.

numpy, torch and jax are imported inside the functions only: every script sets the BLAS/OpenMP
thread variables (`set_thread_env`) before any of them is loaded.
"""
import argparse
import os
import sys
import time

THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def set_thread_env(threads):
    """Set the BLAS/OpenMP thread counts; must run before numpy/torch/jax are imported."""
    for k in THREAD_ENV:
        os.environ[k] = str(threads)


def parser(doc):
    """An argument parser whose --help starts with the script's docstring (the workload)."""
    return argparse.ArgumentParser(description=doc,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


# =======================================================================================
# sweep-tanh-128 (float64): h_t = tanh(W_h h_{t-1} + W_x x_t), 2100 random W_h, BPTT norms.
WORKLOAD = "sweep-tanh-128"
N_HID = 128          # n, hidden units
N_IN = 32            # m, inputs
T_STEPS = 100        # T
B_SEQ = 16           # B, sequences per matrix
N_RHO = 21           # radii in linspace(RHO_LO, RHO_HI, N_RHO)
RHO_LO, RHO_HI = 0.5, 1.5
MATRICES_PER_RHO = 100
EIG_COEFF = 25.0     # flops of one eigenvalue problem = EIG_COEFF * n^3


def rho_grid():
    import numpy as np
    return np.linspace(RHO_LO, RHO_HI, N_RHO)


def sweep_args(doc, peer, extra=None, argv=None):
    """Parse the flags every sweep peer has (plus those `extra(ap)` adds)."""
    ap = parser(doc)
    ap.add_argument("--matrices-per-rho", type=int, default=MATRICES_PER_RHO,
                    help=f"matrices per radius (default {MATRICES_PER_RHO}: "
                    f"{MATRICES_PER_RHO * N_RHO} matrices, the workload)")
    ap.add_argument("--threads", type=int, default=2, help="cores to use (default 2)")
    ap.add_argument("--out", default=None, help="CSV path (rho,matrix,k,log10_grad_norm); "
                    "a summary is written next to it as <out without .csv>.summary.csv")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quiet", action="store_true", help="do not print the per-rho summary")
    if extra is not None:
        extra(ap)
    args = ap.parse_args(argv)
    args.peer = peer
    if args.matrices_per_rho < 1 or args.threads < 1:
        ap.error("--matrices-per-rho and --threads must be >= 1")
    return args


def flops_per_matrix(n=N_HID, m=N_IN, T=T_STEPS, B=B_SEQ, eig_coeff=EIG_COEFF):
    """Nominal float64 operation count of one matrix (random numbers not counted).

    eig: eig_coeff * n^3 (25 n^3 is the conventional dense nonsymmetric estimate;
         eigenvalues only, Hessenberg + Francis QR, is nearer 10 n^3)
    rescale n^2; input projection 2 n m B T; forward recurrence 2 n^2 B T + n B T (add U)
    + n B T (tanh, counted as 1 flop); 1 - h^2: 2 n B T; backward: n B T (g * D) + 2 n^2 B T;
    norms: 2 n B (T+1) (square and add), log10/mean 2 B (T+1).
    Returns (total, parts); total = 171,850,912 at the workload's sizes.
    """
    parts = {
        "eig": eig_coeff * n ** 3,
        "rescale": n * n,
        "input_proj": 2 * n * m * B * T,
        "forward": 2 * n * n * B * T + 2 * n * B * T,
        "one_minus_h2": 2 * n * B * T,
        "backward": 2 * n * n * B * T + n * B * T,
        "norms": 2 * n * B * (T + 1) + 2 * B * (T + 1),
    }
    return sum(parts.values()), parts


def total_flops(matrices_per_rho):
    return flops_per_matrix()[0] * matrices_per_rho * N_RHO


# ---------------------------------------------------------------------------------------
# Canonical numpy inputs: the numpy peer's, and the torch / jax peers' with --rng numpy, so
# that all of them can be compared on identical inputs (check_agreement.py).
def make_v(seed):
    """The loss direction v: a random unit vector, the same for every matrix and peer."""
    import numpy as np
    rng = np.random.default_rng([seed, 1 << 30])
    v = rng.standard_normal(N_HID)
    return v / np.linalg.norm(v)


def make_inputs_np(seed, rho_index, matrix_index):
    """W (n,n) ~ N(0,1/n), W_x (n,m) ~ N(0,1/m), X (T,B,m) ~ N(0,1), drawn in this order
    from one generator per matrix, np.random.default_rng([seed, rho_index, matrix_index])."""
    import numpy as np
    rng = np.random.default_rng([seed, rho_index, matrix_index])
    W = rng.standard_normal((N_HID, N_HID)) * (1.0 / np.sqrt(N_HID))
    Wx = rng.standard_normal((N_HID, N_IN)) * (1.0 / np.sqrt(N_IN))
    X = rng.standard_normal((T_STEPS, B_SEQ, N_IN))
    return W, Wx, X


def make_inputs_np_global(seed, g, matrices_per_rho):
    """The canonical inputs of global matrix index g (rho index g // M, matrix g % M)."""
    return make_inputs_np(seed, g // matrices_per_rho, g % matrices_per_rho)


# ---------------------------------------------------------------------------------------
def summarize(logn):
    """logn (N_RHO, M, T+1) -> per rho: the least-squares slope of the mean log10 norm
    against T-k over k = 0..T (equal to the mean of the per-matrix slopes), its standard
    error from the spread of the per-matrix slopes (NaN for M = 1), and the mean curve."""
    import numpy as np
    T = logn.shape[-1] - 1
    s = T - np.arange(T + 1, dtype=float)                  # steps back from T
    sc = s - s.mean()
    per_matrix = (logn * sc).sum(-1) / (sc * sc).sum()     # (N_RHO, M)
    mean_curve = logn.mean(1)
    slope = (mean_curve * sc).sum(-1) / (sc * sc).sum()
    M = logn.shape[1]
    se = per_matrix.std(1, ddof=1) / np.sqrt(M) if M > 1 else np.full(len(slope), np.nan)
    return slope, se, mean_curve


def summary_path(csv_path):
    return (csv_path[:-4] if csv_path.endswith(".csv") else csv_path) + ".summary.csv"


def write_outputs(path, logn, rhos, quiet=False):
    """Print the per-rho summary (unless quiet); write the CSV (rho,matrix,k,log10_grad_norm,
    values at 12 significant digits) and its summary if path is given. Returns the seconds
    spent writing (not part of the timed work)."""
    import numpy as np
    slope, se, mean_curve = summarize(logn)
    if not quiet:
        print("rho   slope_log10/step  stderr    factor/step  mean_log10_at_k=0")
        for r, a, e, c in zip(rhos, slope, se, mean_curve[:, 0]):
            print(f"{r:.2f}  {a:+.6f}        {e:.6f}  {10**a:.5f}      {c:+.3f}")
    if path is None:
        return 0.0
    t0 = time.perf_counter()
    R, M, K = logn.shape
    rho_col = np.array([f"{r:.2f}" for r in rhos])[np.repeat(np.arange(R), M * K)]
    matrix_col = np.tile(np.repeat(np.arange(M), K), R).astype(str)
    k_col = np.tile(np.arange(K), R * M).astype(str)
    vals = np.char.mod("%.12g", logn.reshape(-1))
    lines = rho_col
    for col in (matrix_col, k_col, vals):
        lines = np.char.add(np.char.add(lines, ","), col)
    with open(path, "w") as f:
        f.write("rho,matrix,k,log10_grad_norm\n")
        f.write("\n".join(lines.tolist()))
        f.write("\n")
    with open(summary_path(path), "w") as f:
        f.write("rho,slope_log10_per_step,stderr,factor_per_step,mean_log10_norm_k0\n")
        for r, a, e, c in zip(rhos, slope, se, mean_curve[:, 0]):
            f.write(f"{r:.2f},{a:.8f},{e:.8f},{10**a:.8f},{c:.6f}\n")
    return time.perf_counter() - t0


def read_csv(path):
    """A peer's CSV -> (logn (N_RHO, M, T+1), the (rho, matrix, k) key columns)."""
    import numpy as np
    d = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
    K = T_STEPS + 1
    M = len(d) // (N_RHO * K)
    return d[:, 3].reshape(N_RHO, M, K), d[:, :3]


def report(args, wall, csv_s, extra=""):
    """The closing lines every sweep peer prints; `wall_seconds=` is what bench.py reads."""
    flops = total_flops(args.matrices_per_rho)
    print(f"peer={args.peer} workload={WORKLOAD} matrices={args.matrices_per_rho * N_RHO} "
          f"threads={args.threads} {extra}".rstrip())
    print(f"flops_nominal={flops:.4e} (eig counted as 25 n^3)")
    print(f"wall_seconds={wall:.3f}  gflops={flops / wall / 1e9:.2f}  csv_seconds={csv_s:.2f}")
    sys.stdout.flush()


# =======================================================================================
# Training workloads (PyTorch): one update = forward, cross-entropy, backward, global-norm
# clipping at CLIP, one optimizer step. Inputs are drawn once, before the timed loop.
CLIP = 1.0
LR = 0.01


def import_torch(threads, seed=0):
    """Set the thread variables, import torch, use `threads` intra-op threads, seed torch's
    global generator (the modules' default initialisation draws from it)."""
    set_thread_env(threads)
    import torch
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    return torch


def one_hot_batches(torch, count, T, batch, vocab, classes, every_step, dtype, device="cpu",
                    seed=0):
    """`count` batches (x, y) from one generator seeded `seed`, drawn in this order per
    batch: symbols (T, batch) uniform over `vocab`, one-hot x (T, batch, vocab) in `dtype`;
    classes y uniform over `classes`, of shape (batch,) or (T, batch) if every_step
    (returned flattened to (T * batch,), the order of the flattened logits)."""
    g = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(count):
        idx = torch.randint(0, vocab, (T, batch), generator=g)
        x = torch.nn.functional.one_hot(idx, vocab).to(dtype)
        y = torch.randint(0, classes, (T, batch) if every_step else (batch,), generator=g)
        batches.append((x.to(device), y.reshape(-1).to(device)))
    return batches


def make_update(torch, net, opt):
    """One training update of `net` (logits (rows, classes) for targets (rows,))."""
    params = list(net.parameters())
    cross_entropy = torch.nn.functional.cross_entropy
    clip = torch.nn.utils.clip_grad_norm_

    def update(x, y):
        opt.zero_grad(set_to_none=True)
        loss = cross_entropy(net(x), y)
        loss.backward()
        clip(params, CLIP)
        opt.step()
        return loss

    return update


def time_updates(update, batches, warmup, updates, sync=lambda: None):
    """`warmup` untimed updates, then `updates` timed ones, cycling through `batches` (both
    loops from batch 0). Returns the seconds of the timed loop."""
    for i in range(warmup):
        update(*batches[i % len(batches)])
    sync()
    t0 = time.perf_counter()
    for i in range(updates):
        update(*batches[i % len(batches)])
    sync()
    return time.perf_counter() - t0
