#!/usr/bin/env bash
# Create .venv and install resdepth's pinned dependencies.
#   tools/install.sh        runtime dependencies (run the pipeline)
#   tools/install.sh dev    plus test and lint tools
# torch comes from PyTorch's CPU index first, so a CPU-only machine never pulls the
# multi-GB CUDA build from PyPI; GPU users: see README ("Installing on a GPU machine").
# Every package, dependencies included, gets its version in constraints.txt (the lock,
# written by tools/envlock.py), so two installs build the same figures.
set -euo pipefail
cd "$(dirname "$0")/.."
requirements=requirements.txt
[ "${1:-}" = dev ] && requirements=requirements-dev.txt

python3 -m venv .venv
torch_pin=$(grep -E '^torch==' requirements.txt)
.venv/bin/pip install --quiet --no-deps \
  --extra-index-url https://download.pytorch.org/whl/cpu "$torch_pin"
.venv/bin/pip install --quiet -c constraints.txt -r "$requirements"
