"""MLflow for the pipeline: `client` (URI, client, retry, run lookup), `runs` (experiment, parent and stage runs,
stage-end metrics), `stage_logger` (rank 0's per-tick logger), `hooks` (RunHooks over MLflow: `make_run_hooks`),
`sweep` (Tune sweeps), `registry` (model versions, aliases) and `serving` (the generator as an MLflow model)."""
