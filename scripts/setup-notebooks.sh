#!/usr/bin/env bash
# Create the git-ignored .venv with the notebooks' pinned requirements (Python 3.11+).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check -r notebooks/requirements.txt
.venv/bin/python -m ipykernel install --sys-prefix --name python3 >/dev/null
echo "notebook environment ready: .venv (open the notebooks with: .venv/bin/jupyter lab notebooks/)"
