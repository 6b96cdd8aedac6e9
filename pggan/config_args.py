"""The config's command-line arguments, defined once for every command and script: --config FILE (or a preset's
name), repeatable --set section.key=value, and --tracking-uri for the commands that read models:/ URIs."""
from __future__ import annotations

import argparse
from typing import Callable

from pggan.config import DEFAULT_PRESET, PipelineConfig, load_config, preset_names


def add_config_args(parser: argparse.ArgumentParser, set_example: str = "data.resolution=64",
                    set_scope: str = "one setting") -> None:
    """--config FILE and repeatable --set KEY=VALUE (into args.config and args.overrides). `set_example` and
    `set_scope` only word the help (e.g. ingest's example, tune's "one setting of every trial")."""
    parser.add_argument("--config", metavar="FILE", default=None,
                        help=f"YAML config file, or a preset's name: {', '.join(preset_names())} (default: "
                             f"{DEFAULT_PRESET})")
    parser.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], dest="overrides",
                        help=f"override {set_scope}, e.g. --set {set_example} (repeatable)")


def config_from_args(args: argparse.Namespace, check: Callable[[PipelineConfig], None] | None = None
                     ) -> PipelineConfig:
    """The config that --config and --set give, validated by `check` (default: every setting)."""
    return load_config(args.config, args.overrides, check)


def add_tracking_uri_arg(parser: argparse.ArgumentParser) -> None:
    """--tracking-uri, for commands that load models:/ or runs:/ URIs."""
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow tracking URI for models:/ URIs (default: MLFLOW_TRACKING_URI, else the "
                             "config's tracking.uri or the SQLite file under storage.root)")
