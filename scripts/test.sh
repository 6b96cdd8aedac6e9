#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite: unit tests, then integration tests with real Ray, S3 and MLflow.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Unit tests first: fast feedback, and they run before any test starts a Ray cluster in this process.
exec .venv/bin/python -m pytest tests/unit tests/integration -q --timeout=900 "$@"
