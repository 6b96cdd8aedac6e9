#!/usr/bin/env bash
# Create .venv and install this project with its test extras; safe to run again (skips when nothing changed).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "[setup] creating .venv with $($PY --version)"
    "$PY" -m venv .venv
fi
stamp=.venv/.pggan-installed
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
# A plain `torch` requirement can pull a multi-GB CUDA build; take the small CPU build first where it is offered.
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    .venv/bin/pip install -q "torch==2.13.0" || echo "[setup] torch==2.13.0 not offered here; pip will choose a torch build"
fi
echo "[setup] installing pggan-ray and its dependencies into .venv (about 2 minutes the first time)"
.venv/bin/pip install -q -e ".[dev]"
echo "$want" > "$stamp"
