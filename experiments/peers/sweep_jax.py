#!/usr/bin/env python3
"""sweep-tanh-128 peer in JAX on the CPU: jax.jit of a vmap over matrices, lax.scan in time.

Workload (float64 throughout; the same as `spectral-sweep --preset sweep-tanh-128`):
  21 radii rho = linspace(0.5, 1.5, 21) x 100 matrices = 2100 matrices (--matrices-per-rho).
  Per matrix: W (128 x 128) iid N(0, 1/n), W_h = W * rho / max|eig(W)| (jnp.linalg.eigvals);
  W_x (128 x 32) iid N(0, 1/m); B = 16 sequences of T = 100 inputs x_t iid N(0, 1); h_0 = 0,
  no bias; h_t = tanh(W_h h_{t-1} + W_x x_t); L = sum_b v . h_T^(b), v a fixed random unit
  vector (common.make_v). BPTT: g_T = v, g_{k-1} = W_h^T (g_k * (1 - h_k^2)). Recorded per
  (rho, matrix, k), k = 0..T: the mean over the B sequences of log10 ||g_k||_2.

Formulation: one jitted function computes --chunk matrices (default 21; the last chunk is
padded so there is one compilation): vmap of a per-matrix function (eigvals, rescale, einsum
input projection, forward lax.scan, then
  --grad manual (default): a reverse lax.scan for BPTT;
  --grad autodiff: jax.grad of L with respect to zero perturbations added to every h_k,
      which gives dL/dh_k, k = 0..T (a check of the manual backward pass)).
  --layout col (default): h_t is (n, B), the step is W_h @ h; row: h_t is (B, n), h @ W_h^T.
  --rng jax (default): inputs from jax.random inside the jitted function, one key per matrix
      (jax.random.split(key(seed), 2100)[global index]); --rng numpy: the canonical numpy
      inputs (common.make_inputs_np), for comparing the peers on identical inputs.
Parallelism:
  --parallel procs (default for --threads > 1): --threads worker processes (this script,
      started again), each pinned to one CPU with a 1-thread XLA and LAPACK, compute
      contiguous blocks of matrices. XLA runs a batched eig as a serial loop of LAPACK calls
      and its batched 128x128 dots barely use a second thread; this is the fastest reliable
      way found to use 2 cores. (XLA host devices with shard_map deadlocked with jaxlib
      0.10.2 and are not offered.)
  --parallel intra: one process, XLA's intra-op threads on --threads CPUs.

Timed (wall_seconds): from after argument parsing to the (2100, 101) result in memory,
including importing jax in the workers and compiling (compile seconds are printed too).
Not timed: writing the CSV (csv_seconds). Output as sweep_numpy.py.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common as C  # noqa: E402


def extra(ap):
    ap.add_argument("--chunk", type=int, default=21, help="matrices per jitted call (default 21)")
    ap.add_argument("--grad", choices=["manual", "autodiff"], default="manual")
    ap.add_argument("--rng", choices=["jax", "numpy"], default="jax")
    ap.add_argument("--layout", choices=["col", "row"], default="col")
    ap.add_argument("--parallel", choices=["procs", "intra"], default=None,
                    help="default: procs for --threads > 1, else intra")
    # internal: a worker of --parallel procs
    ap.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--workers", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--cpu", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--part-out", default=None, help=argparse.SUPPRESS)


args = C.sweep_args(__doc__, "jax", extra)
if args.parallel is None:
    args.parallel = "procs" if args.threads > 1 else "intra"
n, m, T, B = C.N_HID, C.N_IN, C.T_STEPS, C.B_SEQ
TOTAL = C.N_RHO * args.matrices_per_rho


def block(i, P):
    """The contiguous block [g0, g1) of global matrix indices of worker i of P."""
    return TOTAL * i // P, TOTAL * (i + 1) // P


def run_workers():
    """--parallel procs: start the workers, wait, assemble their parts, report."""
    import numpy as np
    P = args.threads
    cpus = sorted(os.sched_getaffinity(0))
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="sweep_jax_") as tmp:
        parts = [os.path.join(tmp, f"part{i}.npy") for i in range(P)]
        procs = []
        for i in range(P):
            cmd = [sys.executable, os.path.abspath(__file__),
                   "--worker", str(i), "--workers", str(P), "--cpu", str(cpus[i % len(cpus)]),
                   "--threads", "1", "--parallel", "intra",
                   "--matrices-per-rho", str(args.matrices_per_rho), "--seed", str(args.seed),
                   "--chunk", str(args.chunk), "--grad", args.grad, "--rng", args.rng,
                   "--layout", args.layout, "--part-out", parts[i]]
            procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True))
        outs = [p.communicate()[0] for p in procs]
        if any(p.returncode != 0 for p in procs):
            sys.exit("a worker failed:\n" + "\n".join(outs))
        logn = np.concatenate([np.load(p) for p in parts])
        wall = time.perf_counter() - t0
    info = " ".join(o.strip().splitlines()[-1] for o in outs)
    rhos = C.rho_grid()
    logn = logn.reshape(C.N_RHO, args.matrices_per_rho, T + 1)
    csv_s = C.write_outputs(args.out, logn, rhos, quiet=args.quiet)
    C.report(args, wall, csv_s,
             f"parallel=procs grad={args.grad} layout={args.layout} chunk={args.chunk} "
             f"rng={args.rng} workers: {info}")


def import_jax():
    """Pin the CPUs, set XLA's threads, import jax with float64 on the CPU."""
    C.set_thread_env(args.threads)
    cpus = sorted(os.sched_getaffinity(0))
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    elif args.threads < len(cpus):
        os.sched_setaffinity(0, set(cpus[:args.threads]))
    if args.threads == 1:
        flags = os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false"
        os.environ["XLA_FLAGS"] = flags.strip()
    import jax
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_platforms", "cpu")
    return jax


def make_compute(jax):
    """-> compute(g0, g1): (g1-g0, T+1) results of global matrices [g0, g1), compile seconds."""
    import numpy as np
    import jax.numpy as jnp
    from jax import lax

    def per_matrix(rho, W, Wx, X, v):
        """rho scalar, W (n,n), Wx (n,m), X (T,B,m) -> (T+1,) mean_b log10 ||dL/dh_k||."""
        Wh = W * (rho / jnp.max(jnp.abs(jnp.linalg.eigvals(W))))
        if args.layout == "col":                        # h_t is (n, B)
            U = jnp.einsum("im,tbm->tib", Wx, X)        # (T, n, B)
            step = lambda h: Wh @ h                     # noqa: E731
            back = lambda d: Wh.T @ d                   # noqa: E731
            vv = v[:, None]
            feat = -2                                   # the axis of the n units
        else:                                           # h_t is (B, n)
            U = X @ Wx.T                                # (T, B, n)
            step = lambda h: h @ Wh.T                   # noqa: E731
            back = lambda d: d @ Wh                     # noqa: E731
            vv = v[None, :]
            feat = -1
        h0 = jnp.zeros_like(U[0])
        if args.grad == "manual":
            def fwd(h, u):
                h = jnp.tanh(step(h) + u)
                return h, h
            _, Hs = lax.scan(fwd, h0, U)                # Hs[t-1] = h_t, t = 1..T
            D = 1.0 - Hs * Hs
            gT = vv * jnp.ones_like(U[0])

            def bwd(g, d):                              # g_{k-1} = W_h^T (g_k * D_k)
                g = back(g * d)
                return g, g
            _, Gs = lax.scan(bwd, gT, D, reverse=True)  # Gs[k] = g_k, k = 0..T-1
            G = jnp.concatenate([Gs, gT[None]], axis=0)
        else:
            def loss(eps):                              # eps (T+1, ...), all zero
                def fwd(h, ue):
                    u, e = ue
                    return jnp.tanh(step(h) + u) + e, None
                hT, _ = lax.scan(fwd, h0 + eps[0], (U, eps[1:]))
                return jnp.sum(hT * vv)
            G = jax.grad(loss)(jnp.zeros((T + 1,) + U.shape[1:], U.dtype))
        sq = jnp.sum(G * G, axis=feat)                  # (T+1, B)
        return jnp.mean(0.5 * jnp.log10(sq), axis=-1)

    def gen_inputs(key):
        kW, kx, kX = jax.random.split(key, 3)
        W = jax.random.normal(kW, (n, n), jnp.float64) * (1.0 / np.sqrt(n))
        Wx = jax.random.normal(kx, (n, m), jnp.float64) * (1.0 / np.sqrt(m))
        X = jax.random.normal(kX, (T, B, m), jnp.float64)
        return W, Wx, X

    def chunk_from_arrays(rho, W, Wx, X, v):
        return jax.vmap(per_matrix, in_axes=(0, 0, 0, 0, None))(rho, W, Wx, X, v)

    def chunk_from_keys(keys, rho, v):
        return chunk_from_arrays(rho, *jax.vmap(gen_inputs)(keys), v)

    def compute(g0, g1):
        M = args.matrices_per_rho
        cnt = g1 - g0
        chunk = max(1, min(args.chunk, cnt))
        starts = list(range(g0, g1, chunk))
        pad = len(starts) * chunk - cnt                 # pad the last chunk: one compilation
        rho_pad = np.concatenate([np.repeat(C.rho_grid(), M)[g0:g1], np.ones(pad)])
        v = jnp.asarray(C.make_v(args.seed))
        keys = jax.random.split(jax.random.key(args.seed), TOTAL)[g0:g1]
        key_pad = jnp.concatenate([keys, keys[:pad]])
        tc = time.perf_counter()
        f64 = lambda *shape: jax.ShapeDtypeStruct(shape, jnp.float64)  # noqa: E731
        if args.rng == "jax":
            compiled = jax.jit(chunk_from_keys).lower(
                jax.ShapeDtypeStruct((chunk,), keys.dtype), f64(chunk), v).compile()
        else:
            compiled = jax.jit(chunk_from_arrays).lower(
                f64(chunk), f64(chunk, n, n), f64(chunk, n, m), f64(chunk, T, B, m), v).compile()
        compile_s = time.perf_counter() - tc
        outs = []
        for s in starts:
            r = jnp.asarray(rho_pad[s - g0:s - g0 + chunk])
            if args.rng == "jax":
                outs.append(compiled(key_pad[s - g0:s - g0 + chunk], r, v))
            else:
                idx = [min(g, g1 - 1) for g in range(s, s + chunk)]     # padding: repeats
                Ws, Wxs, Xs = zip(*(C.make_inputs_np_global(args.seed, g, M) for g in idx))
                outs.append(compiled(r, jnp.asarray(np.stack(Ws)), jnp.asarray(np.stack(Wxs)),
                                     jnp.asarray(np.stack(Xs)), v))
        return np.concatenate([np.asarray(o) for o in outs])[:cnt], compile_s

    return compute


def main():
    if args.parallel == "procs" and args.worker is None and args.threads > 1:
        return run_workers()
    jax = import_jax()
    compute = make_compute(jax)
    import numpy as np
    if args.worker is not None:
        g0, g1 = block(args.worker, args.workers)
        t0 = time.perf_counter()
        part, compile_s = compute(g0, g1)
        np.save(args.part_out, part)
        print(f"[w{args.worker} matrices={g1 - g0} compile_seconds={compile_s:.2f} "
              f"wall={time.perf_counter() - t0:.2f}]")
        return
    t0 = time.perf_counter()
    logn, compile_s = compute(0, TOTAL)
    wall = time.perf_counter() - t0
    rhos = C.rho_grid()
    logn = logn.reshape(C.N_RHO, args.matrices_per_rho, T + 1)
    csv_s = C.write_outputs(args.out, logn, rhos, quiet=args.quiet)
    C.report(args, wall, csv_s,
             f"parallel={args.parallel} grad={args.grad} layout={args.layout} "
             f"chunk={args.chunk} rng={args.rng} jax={jax.__version__} "
             f"cpus={sorted(os.sched_getaffinity(0))} compile_seconds={compile_s:.2f} "
             f"wall_without_compile={wall - compile_s:.3f}")


if __name__ == "__main__":
    main()
