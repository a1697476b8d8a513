#!/usr/bin/env bash
# The seconds axis of notebooks/07_lstm_vs_gru.ipynb: `cargo bench --bench lstm_vs_gru` (one
# update of every model of the lstm-vs-gru experiment at the binary's default shapes, f64, one
# thread), then results/lstm-vs-gru/ms_per_update.csv from criterion's median estimates:
#   task,length,model,hidden,parameters,steps,batch,ms_per_update,ms_per_step,machine,date
# (steps: T of the timed batch; ms_per_step = ms_per_update / steps, what the notebook
# multiplies the curves' `steps` by). Run it on an otherwise idle machine; the numbers are
# quoted in experiments/README.md. Extra arguments go to criterion (e.g. --quick).
set -euo pipefail
cd "$(dirname "$0")/.."
export CRITERION_HOME="$PWD/target/criterion-lstm-vs-gru"
cargo bench --bench lstm_vs_gru -- "$@"
mkdir -p results/lstm-vs-gru
python3 - "$CRITERION_HOME" results/lstm-vs-gru/ms_per_update.csv <<'PY'
import csv, datetime, json, os, platform, sys
home, out = sys.argv[1], sys.argv[2]
machine = f"{platform.machine()} {os.cpu_count()} cpus"
try:
    with open("/proc/cpuinfo") as f:
        name = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    machine = f"{name}, {os.cpu_count()} cpus"
except (OSError, StopIteration):
    pass
date = datetime.date.today().isoformat()
rows = []
with open(os.path.join(home, "lstm-vs-gru-shapes.csv")) as f:
    for r in csv.DictReader(f):
        est = os.path.join(home, "lstm-vs-gru", r["id"], "new", "estimates.json")
        with open(est) as g:
            ms = json.load(g)["median"]["point_estimate"] / 1e6
        del r["id"]
        r.update(ms_per_update=f"{ms:.4f}", ms_per_step=f"{ms / int(r['steps']):.6f}",
                 machine=machine, date=date)
        rows.append(r)
tmp = out + ".tmp"
with open(tmp, "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
os.replace(tmp, out)
print(f"wrote {out}: {len(rows)} rows")
PY
