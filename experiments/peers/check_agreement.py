#!/usr/bin/env python3
"""Check that the sweep-tanh-128 peers compute the same thing.

1. Identical inputs: every peer on the canonical numpy inputs (--rng numpy; the numpy peer has
   no other mode) at a small size (--matrices-per-rho, default 3: 63 matrices); the log10
   norms per (rho, matrix, k) must agree with numpy's to --tol (default 1e-8; the CSVs carry
   12 significant digits). The autograd / autodiff variants of the torch and jax peers are
   included, which checks the manual BPTT against automatic differentiation. --peers picks
   the runs (e.g. without the jax ones where jax is not installed).
2. Same statistics (--csv, optional): CSVs of full runs, each peer with its own random
   generator; the per-rho decay slopes must agree within sampling noise: |z| < --zmax for
   every rho and pair, z = (slope_a - slope_b) / sqrt(se_a^2 + se_b^2).

Prints one line per comparison and ALL OK or MISMATCH; the exit status is 0 iff all agree.

  python check_agreement.py --matrices-per-rho 3
  python check_agreement.py --skip-identical --csv numpy.csv torch.csv jax.csv
"""
import itertools
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import common as C  # noqa: E402

# name: the command (script and flags) of each run on identical inputs; numpy is the reference
RUNS = {
    "numpy": ["sweep_numpy.py"],
    "torch": ["sweep_torch.py", "--rng", "numpy"],
    "torch-autograd": ["sweep_torch.py", "--rng", "numpy", "--grad", "autograd"],
    "jax": ["sweep_jax.py", "--rng", "numpy"],
    "jax-autodiff-row": ["sweep_jax.py", "--rng", "numpy", "--grad", "autodiff",
                         "--layout", "row"],
}


def identical(names, mpr, tol, threads):
    import numpy as np
    res = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ["numpy"] + [x for x in names if x != "numpy"]:
            script, *flags = RUNS[name]
            out = os.path.join(tmp, name + ".csv")
            cmd = [sys.executable, os.path.join(HERE, script), *flags,
                   "--matrices-per-rho", str(mpr), "--threads", str(threads), "--quiet",
                   "--out", out]
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
            if p.returncode != 0:
                print(p.stdout, p.stderr)
                sys.exit(f"{name} failed")
            res[name] = C.read_csv(out)
    ref_logn, ref_keys = res.pop("numpy")
    ok = True
    print(f"identical inputs, {mpr} matrices per rho ({mpr * C.N_RHO} matrices):")
    for name, (logn, keys) in res.items():
        diff = np.abs(logn - ref_logn)
        per_rho = diff.max(axis=(1, 2))
        good = np.array_equal(keys, ref_keys) and diff.max() <= tol
        ok &= good
        print(f"  {name:18s} vs numpy: max |diff log10 norm| = {diff.max():.2e} "
              f"(worst rho {C.rho_grid()[per_rho.argmax()]:.2f}) {'OK' if good else 'FAIL'}")
    return ok


def statistics(paths, zmax):
    import numpy as np
    curves = {}
    for i, p in enumerate(paths):
        slope, se, _ = C.summarize(C.read_csv(p)[0])
        name = os.path.basename(p)
        curves[name if name not in curves else f"{name}#{i + 1}"] = (slope, se)
    print("per-rho slope of mean log10 norm per step (+- standard error over matrices):")
    print("rho   " + "  ".join(f"{k:>24s}" for k in curves))
    for i, r in enumerate(C.rho_grid()):
        print(f"{r:.2f}  " + "  ".join(f"{s[i]:+.5f} +- {e[i]:.5f}      "
                                       for s, e in curves.values()))
    ok = True
    for (a, (sa, ea)), (b, (sb, eb)) in itertools.combinations(curves.items(), 2):
        z = (sa - sb) / np.sqrt(ea ** 2 + eb ** 2)
        good = np.abs(z).max() < zmax
        ok &= good
        print(f"  {a} vs {b}: max |z| = {np.abs(z).max():.2f} over {len(z)} rho values, "
              f"mean z = {z.mean():+.2f}, rms z = {np.sqrt((z ** 2).mean()):.2f} "
              f"{'OK' if good else 'FAIL'}")
    return ok


def main():
    ap = C.parser(__doc__)
    ap.add_argument("--matrices-per-rho", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tol", type=float, default=1e-8)
    ap.add_argument("--peers", default=",".join(RUNS),
                    help=f"comma-separated runs on identical inputs (default {','.join(RUNS)})")
    ap.add_argument("--skip-identical", action="store_true")
    ap.add_argument("--csv", nargs="*", default=[], help="full-run CSVs to compare (part 2)")
    ap.add_argument("--zmax", type=float, default=4.0)
    a = ap.parse_args()
    names = a.peers.split(",")
    unknown = sorted(set(names) - set(RUNS))
    if unknown:
        ap.error(f"unknown --peers {','.join(unknown)} (known: {','.join(RUNS)})")
    ok = True
    if not a.skip_identical:
        ok &= identical(names, a.matrices_per_rho, a.tol, a.threads)
    if a.csv:
        ok &= statistics(a.csv, a.zmax)
    print("ALL OK" if ok else "MISMATCH")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
