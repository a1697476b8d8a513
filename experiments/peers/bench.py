#!/usr/bin/env python3
"""Run a benchmark command several times on an idle machine and record each run.

Before each run it waits (up to --max-wait s) until the machine has been idle (all CPUs less
than --idle-frac busy) for --quiet-s seconds. Per run it records, as one JSON line (printed,
and appended to --json): the command's own wall time (the `wall_seconds=` it prints on stdout
or stderr: every sweep peer does, and so does `spectral-sweep`), its `gflops=` if printed, the
process's elapsed seconds, the CPU seconds it used, and the CPU seconds that everything else
on the machine used meanwhile and the steal time (from /proc/stat), so that runs disturbed by
other work can be seen and rejected. At the end: the median `wall_seconds` over the runs.

  python bench.py --runs 3 --label numpy --json bench.jsonl -- python sweep_numpy.py --quiet
  python bench.py --runs 3 --label bptt --json bench.jsonl -- \\
      ../../target/release/spectral-sweep --preset sweep-tanh-128 --threads 2 --quiet --out /tmp/s
  python bench.py --summary bench.jsonl

--summary FILE reads such records (e.g. of runs interleaved by a shell loop of --runs 1 calls)
and prints per label the median, min and max `wall_seconds` of the successful runs, the largest
`other_cpu_s`, and every label's median divided by the fastest label's median.
"""
import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common as C  # noqa: E402

CLK = os.sysconf("SC_CLK_TCK")


def cpu_times():
    """-> (busy seconds summed over all CPUs, steal seconds) since boot."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]             # idle + iowait
    busy = sum(v[:8]) - idle       # user nice system idle iowait irq softirq steal
    return busy / CLK, v[7] / CLK


def wait_idle(quiet_s, frac, max_wait):
    """Wait until a --quiet-s window is less than `frac` busy; -> (busy fraction, waited s)."""
    ncpu = os.cpu_count()
    t_start = time.time()
    while True:
        b0, _ = cpu_times()
        time.sleep(quiet_s)
        b1, _ = cpu_times()
        busy = (b1 - b0) / (quiet_s * ncpu)
        if busy < frac or time.time() - t_start > max_wait:
            return busy, time.time() - t_start


def run_once(cmd, label, r, a):
    pre_busy, waited = wait_idle(a.quiet_s, a.idle_frac, a.max_wait)
    b0, s0 = cpu_times()
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)
    elapsed = time.perf_counter() - t0
    b1, s1 = cpu_times()
    own = ru.ru_utime + ru.ru_stime
    wall = re.search(r"wall_seconds=([0-9.]+)", out)
    gflops = re.search(r"gflops=([0-9.]+)", out)
    rec = {
        "label": label, "run": r,
        "cmd": " ".join(os.path.basename(c) if os.path.isabs(c) else c for c in cmd),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"), "exit": os.waitstatus_to_exitcode(status),
        "wall_seconds": float(wall.group(1)) if wall else None,
        "gflops": float(gflops.group(1)) if gflops else None,
        "process_seconds": round(elapsed, 3), "own_cpu_s": round(own, 2),
        "other_cpu_s": round(max(0.0, (b1 - b0) - own), 2), "steal_s": round(s1 - s0, 2),
        "idle_before": round(1 - pre_busy, 3), "waited_s": round(waited, 1),
        "host": platform.machine(),
    }
    for line in out.splitlines():
        if line.startswith("peer="):
            rec["peer_line"] = line
    return rec, out


def summary(path):
    """Print the per-label medians of a --json file and their ratios to the fastest."""
    walls, other = {}, {}
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            rec = json.loads(line)
            if rec.get("exit") == 0 and rec.get("wall_seconds") is not None:
                walls.setdefault(rec["label"], []).append(rec["wall_seconds"])
                other[rec["label"]] = max(other.get(rec["label"], 0.0), rec.get("other_cpu_s", 0.0))
    if not walls:
        sys.exit(f"no successful runs with wall_seconds in {path}")
    med = {k: statistics.median(v) for k, v in walls.items()}
    best = min(med.values())
    for k, v in sorted(walls.items(), key=lambda kv: med[kv[0]]):
        print(f"{k}: median wall {med[k]:.3f} s over {len(v)} runs (min {min(v):.3f}, "
              f"max {max(v):.3f}, other_cpu_s <= {other[k]:.2f}); "
              f"{med[k] / best:.2f}x the fastest median")


def main():
    ap = C.parser(__doc__)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--label", help="name of the series in the records (required to run)")
    ap.add_argument("--json", default=None, help="append one JSON line per run to this file")
    ap.add_argument("--quiet-s", type=float, default=3.0, help="idle window (s, default 3)")
    ap.add_argument("--idle-frac", type=float, default=0.05,
                    help="busy fraction below which the machine counts as idle (default 0.05)")
    ap.add_argument("--max-wait", type=float, default=600,
                    help="run anyway after waiting this long (s, default 600)")
    ap.add_argument("cmd", nargs=argparse.REMAINDER, help="-- the command and its arguments")
    ap.add_argument("--summary", metavar="FILE", default=None,
                    help="print the medians per label of the records in FILE and exit")
    a = ap.parse_args()
    if a.summary is not None:
        return summary(a.summary)
    cmd = a.cmd[1:] if a.cmd and a.cmd[0] == "--" else a.cmd
    if not cmd:
        ap.error("no command given (after --)")
    if a.label is None:
        ap.error("--label is required to run a command")
    walls = []
    for r in range(a.runs):
        rec, out = run_once(cmd, a.label, r, a)
        print(json.dumps(rec))
        if rec["exit"] != 0:
            print(out, file=sys.stderr)
        sys.stdout.flush()
        if a.json:
            with open(a.json, "a") as f:
                f.write(json.dumps(rec) + "\n")
        if rec["wall_seconds"] is not None:
            walls.append(rec["wall_seconds"])
    if walls:
        print(f"{a.label}: median wall {statistics.median(walls):.3f} s over {len(walls)} runs "
              f"(min {min(walls):.3f}, max {max(walls):.3f})")


if __name__ == "__main__":
    main()
