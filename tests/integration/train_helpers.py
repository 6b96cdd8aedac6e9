"""Helpers for the training integration tests: the tiny config under a root, reading a run's logs."""
from __future__ import annotations

import os

from pggan import storage as st
from pggan.config import PipelineConfig, load_config
from pggan.stage_log import read_jsonl

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def tiny_config(root: str, *overrides: str) -> PipelineConfig:
    """tiny.yaml under `root`, with --set style overrides."""
    return load_config("tiny.yaml", [f"storage.root={root}", *overrides])


def run_dir(root: str, run_id: str) -> str:
    return os.path.join(root, "runs", run_id)


def starts(root: str, run_id: str, res: int) -> list[dict]:
    """The resume log of a stage: one record per (re)start, with the images seen it started from."""
    return read_jsonl(st.join(root, "runs", run_id, "logs", f"r{res:04d}", "resume.jsonl"))


def checkpoint_nimgs(root: str, run_id: str, res: int) -> list[int]:
    """Images seen of the complete checkpoints of a stage present on disk (Ray keeps the newest few)."""
    folder = os.path.join(run_dir(root, run_id), "stages", f"r{res:04d}")
    if not os.path.isdir(folder):
        return []
    return sorted(int(d.split("-")[1]) for d in os.listdir(folder)
                  if d.startswith("nimg-") and os.path.exists(os.path.join(folder, d, "meta.json")))


def error_line(stderr: str) -> str:
    """The one `full_run: error: ...` line of a failed run (Ray and MLflow log to stderr around it)."""
    lines = [line for line in stderr.splitlines() if line.startswith("full_run: error:")]
    assert len(lines) == 1, stderr[-3000:]
    return lines[0]


def files_containing(needle: str, *roots: str | os.PathLike) -> list[str]:
    """Every file under `roots` whose bytes contain `needle` (UTF-8: JSON, YAML, logs, Parquet metadata, SQLite
    text columns and pickles all store text that way)."""
    found = []
    for root in roots:
        for folder, _, names in os.walk(root):
            for name in names:
                path = os.path.join(folder, name)
                if os.path.isfile(path) and not os.path.islink(path):
                    with open(path, "rb") as f:
                        if needle.encode() in f.read():
                            found.append(path)
    return found
