#!/usr/bin/env python3
"""sweep-tanh-128 peer in PyTorch on the CPU, vectorised across matrices.

Workload (float64 throughout; the same as `spectral-sweep --preset sweep-tanh-128`):
  21 radii rho = linspace(0.5, 1.5, 21) x 100 matrices = 2100 matrices (--matrices-per-rho).
  Per matrix: W (128 x 128) iid N(0, 1/n), W_h = W * rho / max|eig(W)| (torch.linalg.eigvals);
  W_x (128 x 32) iid N(0, 1/m); B = 16 sequences of T = 100 inputs x_t iid N(0, 1); h_0 = 0,
  no bias; h_t = tanh(W_h h_{t-1} + W_x x_t); L = sum_b v . h_T^(b), v a fixed random unit
  vector (common.make_v, the same in every peer). BPTT: g_T = v,
  g_{k-1} = W_h^T (g_k * (1 - h_k^2)). Recorded per (rho, matrix, k), k = 0..T: the mean over
  the B sequences of log10 ||g_k||_2.

Formulation: --chunk matrices (default 21) at once: torch.linalg.eigvals on the (chunk, n, n)
batch, torch.bmm / torch.baddbmm per step, manual BPTT (--grad manual, default) or autograd
with retain_grad on every h_k (--grad autograd, a check of the manual pass). Work tensors are
allocated once and reused. torch runs a batched eigvals as a serial loop of LAPACK calls, so
the batch is split over --eig-split (default --threads) Python threads, with torch's own pool
at 1 thread meanwhile.
  --rng torch (default): inputs from one torch.Generator seeded --seed, drawn per chunk in
      the order W, W_x, X (so they depend on --chunk and --matrices-per-rho);
  --rng numpy: the canonical numpy inputs (common.make_inputs_np, slow; for comparing the
      peers on identical inputs).

Timed (wall_seconds): from after argument parsing and imports to the (2100, 101) result in
memory: random inputs, eigenvalues, rescale, forward, backward, norms. Not timed: writing the
CSV (csv_seconds). Output as sweep_numpy.py; --profile adds the seconds per phase.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common as C  # noqa: E402


def extra(ap):
    ap.add_argument("--chunk", type=int, default=21, help="matrices per batch (default 21)")
    ap.add_argument("--grad", choices=["manual", "autograd"], default="manual")
    ap.add_argument("--rng", choices=["torch", "numpy"], default="torch")
    ap.add_argument("--profile", action="store_true", help="print the seconds per phase")
    ap.add_argument("--eig-split", type=int, default=None,
                    help="split each batch's eigvals over this many Python threads, each with "
                    "a 1-thread torch (default: --threads; 1 = one plain batched call)")


args = C.sweep_args(__doc__, "torch", extra)
C.set_thread_env(args.threads)

import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(args.threads)
torch.set_grad_enabled(False)
f64 = torch.float64
n, m, T, B = C.N_HID, C.N_IN, C.T_STEPS, C.B_SEQ
EIG_SPLIT = args.eig_split if args.eig_split is not None else args.threads

_pool = None
if EIG_SPLIT > 1:
    from concurrent.futures import ThreadPoolExecutor
    _pool = ThreadPoolExecutor(EIG_SPLIT)


def spectral_radius(W):
    """max |eig| per matrix of the batch W (M, n, n); with EIG_SPLIT > 1 the batch is split
    over Python threads (torch releases the GIL in LAPACK)."""
    if _pool is None or W.shape[0] < 2:
        return torch.linalg.eigvals(W).abs().amax(dim=-1)
    torch.set_num_threads(1)
    try:
        parts = list(_pool.map(lambda w: torch.linalg.eigvals(w).abs().amax(dim=-1),
                               W.chunk(EIG_SPLIT)))
    finally:
        torch.set_num_threads(args.threads)
    return torch.cat(parts)


PHASES = {}


def _mark(name, t0):
    """With --profile, add the time since t0 to phase `name`; returns the time now."""
    t1 = time.perf_counter()
    if args.profile:
        PHASES[name] = PHASES.get(name, 0.0) + t1 - t0
    return t1


class Buffers:
    """Work arrays allocated once and reused by every chunk (fresh multi-100-MB tensors per
    chunk would pay page faults every time)."""

    SIZES = {"W": n * n, "Wx": n * m, "X": T * B * m, "U0": T * B * n, "U": T * B * n,
             "H": (T + 1) * B * n, "G": (T + 1) * B * n, "tmp": B * n}   # per matrix

    def __init__(self, M):
        for name, per_matrix in self.SIZES.items():
            setattr(self, name, torch.empty(M * per_matrix, dtype=f64))

    def view(self, name, *shape):
        return getattr(self, name)[:int(np.prod(shape))].view(*shape)


def chunk_logn(rho, W, Wx, X, v, buf):
    """rho (M,), W (M,n,n), Wx (M,n,m), X (M,T*B,m) -> (M, T+1) mean_b log10 ||dL/dh_k||.
    W is overwritten (it becomes W_h)."""
    M = W.shape[0]
    t0 = time.perf_counter()
    sr = spectral_radius(W)
    t0 = _mark("eig", t0)
    Wh = W.mul_((rho / sr)[:, None, None])
    WhT = Wh.transpose(1, 2)
    U0 = torch.bmm(X, Wx.transpose(1, 2), out=buf.view("U0", M, T * B, n))
    U = buf.view("U", T, M, B, n)                         # U[t] = x_t W_x^T, (T, M, B, n)
    U.copy_(U0.view(M, T, B, n).permute(1, 0, 2, 3))
    t0 = _mark("input_proj", t0)
    if args.grad == "manual":
        H = buf.view("H", T + 1, M, B, n)
        H[0].zero_()
        for t in range(T):
            torch.baddbmm(U[t], H[t], WhT, out=H[t + 1])
            H[t + 1].tanh_()
        t0 = _mark("forward", t0)
        D = H[1:]
        D.mul_(D).neg_().add_(1.0)                        # D[t-1] = 1 - h_t^2
        G = buf.view("G", T + 1, M, B, n)
        G[T].copy_(v.expand(M, B, n))
        tmp = buf.view("tmp", M, B, n)
        for k in range(T, 0, -1):                         # g_{k-1} = (g_k * D_k) W_h (rows)
            torch.mul(G[k], D[k - 1], out=tmp)
            torch.bmm(tmp, Wh, out=G[k - 1])
        t0 = _mark("backward", t0)
    else:
        with torch.enable_grad():
            h = torch.zeros(M, B, n, dtype=f64, requires_grad=True)
            hs = [h]
            for t in range(T):
                h = torch.tanh(torch.baddbmm(U[t], h, WhT))
                h.retain_grad()
                hs.append(h)
            (h * v).sum().backward()
        G = torch.stack([hk.grad for hk in hs])
        t0 = _mark("forward+backward (autograd)", t0)
    sq = torch.einsum("kmbi,kmbi->kmb", G, G)
    res = (0.5 * torch.log10(sq)).mean(-1).transpose(0, 1)   # (M, T+1)
    _mark("norms", t0)
    return res


def draw_chunk(gen, s, e, buf):
    """Inputs of global matrices s..e-1: (W, W_x, X) as (M,n,n), (M,n,m), (M,T*B,m)."""
    M = e - s
    if args.rng == "torch":
        W = torch.randn(M, n, n, generator=gen, out=buf.view("W", M, n, n))
        W.mul_(1.0 / np.sqrt(n))
        Wx = torch.randn(M, n, m, generator=gen, out=buf.view("Wx", M, n, m))
        Wx.mul_(1.0 / np.sqrt(m))
        X = torch.randn(M, T * B, m, generator=gen, out=buf.view("X", M, T * B, m))
        return W, Wx, X
    Ws, Wxs, Xs = zip(*(C.make_inputs_np_global(args.seed, g, args.matrices_per_rho)
                        for g in range(s, e)))
    return (torch.from_numpy(np.stack(Ws)), torch.from_numpy(np.stack(Wxs)),
            torch.from_numpy(np.stack(Xs).reshape(M, T * B, m)))


def main():
    rhos = C.rho_grid()
    total = C.N_RHO * args.matrices_per_rho
    chunk = max(1, min(args.chunk, total))
    v = torch.from_numpy(C.make_v(args.seed))
    gen = torch.Generator().manual_seed(args.seed)
    logn = torch.empty(total, T + 1, dtype=f64)
    rho_all = torch.from_numpy(np.repeat(rhos, args.matrices_per_rho))
    t0 = time.perf_counter()
    buf = Buffers(chunk)
    for s in range(0, total, chunk):
        e = min(s + chunk, total)
        tr = time.perf_counter()
        W, Wx, X = draw_chunk(gen, s, e, buf)
        _mark("rng", tr)
        logn[s:e] = chunk_logn(rho_all[s:e], W, Wx, X, v, buf)
    wall = time.perf_counter() - t0
    if args.profile:
        print("phases_seconds " + " ".join(f"{k}={x:.2f}" for k, x in PHASES.items()))
    logn = logn.numpy().reshape(C.N_RHO, args.matrices_per_rho, T + 1)
    csv_s = C.write_outputs(args.out, logn, rhos, quiet=args.quiet)
    C.report(args, wall, csv_s,
             f"grad={args.grad} chunk={chunk} eig_split={EIG_SPLIT} rng={args.rng} "
             f"torch={torch.__version__} intra_op_threads={torch.get_num_threads()}")


if __name__ == "__main__":
    main()
