"""The Ray layer: ingest, staged training, evaluation, tuning and the full-run orchestrator."""
