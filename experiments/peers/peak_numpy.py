#!/usr/bin/env python3
"""Physical-limit references for the sweep-tanh-128 workload (float64, numpy's BLAS/LAPACK).

Measures, with the BLAS thread count given by --threads:
  * GEMM: C = A @ B for square N x N float64 (--gemm-n, default 2048), best and median of
    --reps, 2 N^3 flops: the machine's DGEMM peak;
  * GEMV n = 128: y = A @ x (2 n^2 flops), one np.dot call per product (so it includes
    numpy's per-call overhead, which a Python loop pays), and 64 distinct 128 x 128 matrices
    times vectors in one stacked np.matmul call;
  * the workload's recurrence step, A (128 x 128) @ H (128 x 16), one np.dot call each, with
    --threads and with 1 BLAS thread;
  * stacked (100, 128, 128) @ (100, 128, 16) in one np.matmul call;
  * np.linalg.eigvals n = 128 (LAPACK geev) with 1 and with --threads BLAS threads, as ms per
    call and GFLOP/s at the nominal 25 n^3.
Each loop measurement is the best of 5 repetitions of a fixed number of calls (divided by 100
with --quick, a smoke test whose numbers mean nothing). Prints the numpy version, which BLAS
library and kernel ran (threadpoolctl) and the OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE variables:
run with both unset (`env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE ...`) to measure the
auto-detected kernel.
"""
import json
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common as C  # noqa: E402


def rate(fn, flops, reps):
    """Best over 5 repetitions of `reps` calls -> (GFLOP/s, seconds per call)."""
    fn()
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        best = min(best, (time.perf_counter() - t0) / reps)
    return flops / best / 1e9, best


def main():
    ap = C.parser(__doc__)
    ap.add_argument("--threads", type=int, default=2, help="BLAS threads (default 2)")
    ap.add_argument("--gemm-n", type=int, nargs="+", default=[2048], help="GEMM sizes N")
    ap.add_argument("--reps", type=int, default=7, help="GEMM repetitions (default 7)")
    ap.add_argument("--quick", action="store_true", help="100 times fewer loop calls (smoke test)")
    args = ap.parse_args()
    C.set_thread_env(args.threads)
    import numpy as np
    import threadpoolctl

    q = 100 if args.quick else 1
    threadpoolctl.threadpool_limits(args.threads)
    print("numpy", np.__version__, "python", platform.python_version())
    for lib in threadpoolctl.threadpool_info():
        print("threadpool:", json.dumps({k: lib.get(k) for k in (
            "internal_api", "prefix", "version", "architecture", "num_threads",
            "threading_layer")}))
    print("env OPENBLAS_CORETYPE =", os.environ.get("OPENBLAS_CORETYPE"),
          "OPENBLAS_L2_SIZE =", os.environ.get("OPENBLAS_L2_SIZE"))

    rng = np.random.default_rng(0)
    for N in args.gemm_n:
        A, Bm, Cm = rng.standard_normal((N, N)), rng.standard_normal((N, N)), np.empty((N, N))
        np.matmul(A, Bm, out=Cm)  # warm-up
        ts = []
        for _ in range(args.reps):
            t0 = time.perf_counter()
            np.matmul(A, Bm, out=Cm)
            ts.append(time.perf_counter() - t0)
        best, med = min(ts), sorted(ts)[len(ts) // 2]
        print(f"GEMM N={N}: best {2*N**3/best/1e9:.1f} GFLOP/s, median {2*N**3/med/1e9:.1f} "
              f"GFLOP/s ({best*1e3:.1f} ms best)")

    n = 128
    A, x, y = rng.standard_normal((n, n)), rng.standard_normal(n), np.empty(n)
    g, t = rate(lambda: np.dot(A, x, out=y), 2 * n * n, 20000 // q)
    print(f"GEMV n=128, one np.dot call each: {g:.2f} GFLOP/s ({t*1e6:.2f} us per call)")
    AV, XV, YV = (rng.standard_normal((64, n, n)), rng.standard_normal((64, n, 1)),
                  np.empty((64, n, 1)))
    g, t = rate(lambda: np.matmul(AV, XV, out=YV), 64 * 2 * n * n, 2000 // q)
    print(f"GEMV n=128, 64 distinct matrices (8 MiB) in one np.matmul call: {g:.2f} GFLOP/s "
          f"({t/64*1e9:.0f} ns per matrix-vector product)")
    H, O = rng.standard_normal((n, 16)), np.empty((n, 16))
    g, t = rate(lambda: np.dot(A, H, out=O), 2 * n * n * 16, 5000 // q)
    print(f"128x128 @ 128x16, one np.dot call each: {g:.2f} GFLOP/s ({t*1e6:.2f} us per call)")
    AS, HS, OS = (rng.standard_normal((100, n, n)), rng.standard_normal((100, n, 16)),
                  np.empty((100, n, 16)))
    g, t = rate(lambda: np.matmul(AS, HS, out=OS), 100 * 2 * n * n * 16, max(1, 100 // q))
    print(f"stacked np.matmul (100,128,128)@(100,128,16): {g:.2f} GFLOP/s "
          f"({t*1e3:.3f} ms per call)")
    W = rng.standard_normal((n, n))
    with threadpoolctl.threadpool_limits(1):   # small products rarely profit from threads
        g, t = rate(lambda: np.dot(A, H, out=O), 2 * n * n * 16, 5000 // q)
        print(f"128x128 @ 128x16, 1 BLAS thread: {g:.2f} GFLOP/s ({t*1e6:.2f} us per call)")
        g, t = rate(lambda: np.linalg.eigvals(W), 25 * n**3, max(1, 50 // q))
        print(f"np.linalg.eigvals n=128, 1 BLAS thread: {t*1e3:.2f} ms per call "
              f"({g:.2f} GFLOP/s at the nominal 25 n^3)")
    g, t = rate(lambda: np.linalg.eigvals(W), 25 * n**3, max(1, 50 // q))
    print(f"np.linalg.eigvals n=128, {args.threads} BLAS thread{'s' * (args.threads != 1)}: "
          f"{t*1e3:.2f} ms per call "
          f"({g:.2f} GFLOP/s at the nominal 25 n^3)")


if __name__ == "__main__":
    main()
