"""Execute notebooks with nbclient.

usage: run_notebooks.py [--inplace | --out-dir DIR] NOTEBOOK...

--inplace writes the executed notebook (with its outputs) back; --out-dir writes copies there
(CI: execute against a small generated CSV without touching the committed outputs). The
notebooks read their data from $BPTT_RESULTS (default: results/ at the repository root).
"""
import argparse
import pathlib
import sys

import nbformat
from nbclient import NotebookClient


def main() -> int:
    p = argparse.ArgumentParser()
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--inplace", action="store_true")
    g.add_argument("--out-dir", type=pathlib.Path)
    p.add_argument("notebooks", nargs="+", type=pathlib.Path)
    args = p.parse_args()
    for path in args.notebooks:
        nb = nbformat.read(path, as_version=4)
        NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
        target = path if args.inplace else args.out_dir / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, target)
        print(f"executed {path} -> {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
