#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite: unit tests, then integration tests with real Ray, S3 and MLflow.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest tests -q --timeout=900 "$@"
