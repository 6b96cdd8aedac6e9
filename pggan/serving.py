"""Kept only for MLflow models saved before pggan.tracking existed: their MLmodel names `pggan.serving` as the pyfunc
loader module. New models name pggan.tracking.serving; everything else lives there."""
from pggan.tracking.serving import _load_pyfunc  # noqa: F401  (mlflow.pyfunc.load_model looks it up here)
