#!/usr/bin/env bash
# The README's test command. Run it inside the project's virtual environment; it is idempotent.
#   1. install the package and its dev tools (CPU pins from constraints.txt; a no-op when already installed)
#   2. check that notebooks are clean and that gwae/ and README.md are in sync with nbs/
#   3. reject saved widget outputs, any torchvision / fastai.vision import, imports against the notebook order,
#      and pages that break the style rules (tools/check_pages.py)
#   4. run the notebook tests, then nbdev's docs pre-processing of every notebook, then pytest (whose summary ends the log)
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 MPLBACKEND=Agg PYTHONHASHSEED=0 PIP_DISABLE_PIP_VERSION_CHECK=1

step() { printf '\n== %s\n' "$*"; }

step "install (constraints.txt pins the CPU build of torch)"
log=$(mktemp)
python -m pip install -q -c constraints.txt -e ".[dev]" >"$log" 2>&1 || { cat "$log"; echo "FAIL: install"; exit 1; }
rm -f "$log"

step "notebooks clean, library and README in sync"
snapshot() { { git status --porcelain -- nbs gwae README.md; git diff -- nbs gwae README.md; } | md5sum; }
before=$(snapshot)
nbdev-clean
nbdev-export
python tools/make_readme.py
if [ "$before" != "$(snapshot)" ]; then
  git status --short -- nbs gwae README.md
  echo "FAIL: nbdev-clean, nbdev-export or tools/make_readme.py changed files above."
  echo "      Run them, review the diff and commit; never edit gwae/*.py or README.md by hand."
  exit 1
fi

step "forbidden content, and imports that follow the notebook order"
python tools/check_imports.py
python tools/check_import_order.py
python tools/check_pages.py nbs/*.ipynb
if grep -rl --include='*.ipynb' 'widget-view+json' nbs; then
  echo "FAIL: saved widget outputs in the notebooks above (clear them: their random ids churn on every run)."
  exit 1
fi

step "notebook tests"
nbdev-test --n-workers 1 --timing

step "docs pre-processing (everything the docs build does before Quarto)"
python tools/check_docs.py

step "pytest"
python -m pytest -q tests
