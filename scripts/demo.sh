#!/usr/bin/env bash
# Set up (if needed) and run the full pipeline on the demo config: local Ray, local files, SQLite MLflow.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python pipelines/full_run.py "$@"
