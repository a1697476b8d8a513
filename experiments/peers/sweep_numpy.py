#!/usr/bin/env python3
"""sweep-tanh-128 peer in plain numpy: one matrix at a time, vectorised over the B sequences.

Workload (float64 throughout; the same as `spectral-sweep --preset sweep-tanh-128`):
  21 radii rho = linspace(0.5, 1.5, 21) x 100 matrices = 2100 matrices (--matrices-per-rho).
  Per matrix: W (128 x 128) iid N(0, 1/n), W_h = W * rho / max|eig(W)| (np.linalg.eigvals,
  LAPACK geev); W_x (128 x 32) iid N(0, 1/m); B = 16 sequences of T = 100 inputs x_t iid
  N(0, 1); h_0 = 0, no bias; h_t = tanh(W_h h_{t-1} + W_x x_t); L = sum_b v . h_T^(b) with v
  a fixed random unit vector. BPTT: g_T = v, g_{k-1} = W_h^T (g_k * (1 - h_k^2)) = dL/dh_{k-1}.
  Recorded per (rho, matrix, k), k = 0..T: the mean over the B sequences of log10 ||g_k||_2.
  Inputs: one np.random.default_rng([seed, rho index, matrix index]) per matrix
  (common.make_inputs_np), so results do not depend on --threads or --parallel.

Formulation: row layout (h_t is (B, n)); one GEMM for the input projection, then per step
np.dot + add + np.tanh in place; backward per step g*D then np.dot; norms with one einsum.
  --parallel procs (default): --threads forked worker processes, each with a 1-thread BLAS,
      share the matrices in items of --task-size (the per-step products are 16x128 @ 128x128,
      too small for a threaded BLAS);
  --parallel blas: one process, the BLAS gets --threads threads.

Timed (wall_seconds): from after argument parsing and imports to the (21, M, 101) result in
memory: random inputs, eigenvalues, rescale, forward, backward, norms. Not timed: writing the
CSV (printed as csv_seconds). Output: the per-rho summary (unless --quiet), then
`peer=... / flops_nominal=... / wall_seconds=... gflops=... csv_seconds=...`; with --out the
CSV rho,matrix,k,log10_grad_norm and <out>.summary.csv.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common as C  # noqa: E402


def extra(ap):
    ap.add_argument("--parallel", choices=["procs", "blas"], default="procs",
                    help="procs: worker processes with 1-thread BLAS (default); "
                    "blas: one process with a threaded BLAS")
    ap.add_argument("--task-size", type=int, default=10,
                    help="matrices per work item with --parallel procs (default 10)")


args = C.sweep_args(__doc__, "numpy", extra)
BLAS_THREADS = 1 if (args.parallel == "procs" and args.threads > 1) else args.threads
C.set_thread_env(BLAS_THREADS)

import numpy as np  # noqa: E402

n, m, T, B = C.N_HID, C.N_IN, C.T_STEPS, C.B_SEQ


def one_matrix(rho, W, Wx, X, v):
    """-> (T+1,): the mean over the B sequences of log10 ||dL/dh_k||, k = 0..T.
    Row layout: h_t is (B, n), h_t = tanh(h_{t-1} W_h^T + x_t W_x^T)."""
    Wh = W * (rho / np.abs(np.linalg.eigvals(W)).max())
    U = (X.reshape(T * B, m) @ Wx.T).reshape(T, B, n)
    H = np.empty((T + 1, B, n))
    H[0] = 0.0
    WhT = Wh.T
    for t in range(T):
        h = H[t + 1]
        np.dot(H[t], WhT, out=h)
        h += U[t]
        np.tanh(h, out=h)
    D = H[1:]                      # overwritten in place: D[t-1] = 1 - h_t^2, t = 1..T
    np.multiply(D, D, out=D)
    np.subtract(1.0, D, out=D)
    G = np.empty((T + 1, B, n))
    G[T] = v
    tmp = np.empty((B, n))
    for k in range(T, 0, -1):      # g_{k-1} = (g_k * D_k) W_h  (row layout of W_h^T (.))
        np.multiply(G[k], D[k - 1], out=tmp)
        np.dot(tmp, Wh, out=G[k - 1])
    sq = np.einsum("kbi,kbi->kb", G, G)
    return 0.5 * np.log10(sq).mean(axis=1)


def work(task):
    """One work item: matrices j0..j1-1 of radius index i."""
    seed, i, j0, j1, rho = task
    v = C.make_v(seed)
    out = np.empty((j1 - j0, T + 1))
    for j in range(j0, j1):
        out[j - j0] = one_matrix(rho, *C.make_inputs_np(seed, i, j), v)
    return i, j0, j1, out


def main():
    rhos = C.rho_grid()
    M = args.matrices_per_rho
    logn = np.empty((C.N_RHO, M, T + 1))
    ts = max(1, args.task_size)
    tasks = [(args.seed, i, j0, min(j0 + ts, M), float(rhos[i]))
             for i in range(C.N_RHO) for j0 in range(0, M, ts)]
    t0 = time.perf_counter()
    if args.parallel == "procs" and args.threads > 1:
        import multiprocessing as mp
        with mp.get_context("fork").Pool(args.threads) as pool:
            results = pool.imap_unordered(work, tasks)
            for i, j0, j1, out in results:
                logn[i, j0:j1] = out
    else:
        for task in tasks:
            i, j0, j1, out = work(task)
            logn[i, j0:j1] = out
    wall = time.perf_counter() - t0
    csv_s = C.write_outputs(args.out, logn, rhos, quiet=args.quiet)
    C.report(args, wall, csv_s,
             f"parallel={args.parallel} blas_threads={BLAS_THREADS} numpy={np.__version__}")


if __name__ == "__main__":
    main()
