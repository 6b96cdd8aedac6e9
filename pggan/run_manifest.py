"""The run manifest `{root}/runs/{run_id}/run.json`: config, each stage's status, checkpoint and metrics.

It is the single source of truth for resume: a stage marked done is never trained again. Stage status is
pending -> running -> done; a stage that failed stays `running` with its `error`. The run's status is running,
then done, or failed / interrupted with the run's `error`. `registration` records the hand-off of the final
generator to tracking (pending | done | failed, with its `error`): a run whose stages are all done but whose
registration is not is finished by a rerun of its id doing only that. All writes are atomic
(storage.write_json_atomic).
"""
from __future__ import annotations

import fnmatch
import re
import secrets
import time
from typing import Any, Iterable

from pggan import storage as st
from pggan.config import PipelineConfig, StorageConfig, config_to_dict
from pggan.secret_keys import SECRET_KEYS

FORMAT_VERSION = 1
RUN_FILE = "run.json"
STATUSES = ("pending", "running", "done")
REGISTRATION_STATUSES = ("pending", "done", "failed")
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

# Keys that may differ between the runs of one run id: they change where and how fast training runs, not what
# is trained (the global minibatch is fixed by schedule.batch_size whatever the number of workers). Secrets are
# among them: stored redacted, they cannot be compared, and a resume may take them from the environment instead.
HARMLESS_KEYS = (
    "scaling.*",
    "storage.endpoint_url", "storage.region", *SECRET_KEYS,
    "tracking.uri",
    "schedule.tick_kimg", "schedule.ckpt_kimg",
)


class RunError(ValueError):
    """A run id or run manifest cannot be used as asked (the message says what to do)."""


def check_run_id(run_id: str) -> str:
    if not _RUN_ID.match(run_id or ""):
        raise RunError(f"--run-id {run_id!r}: use letters, digits, '.', '_' or '-' (at most 128 characters), "
                       "e.g. 20261123-101500")
    return run_id


def new_run_id(now: float | None = None) -> str:
    """A fresh id from the local time plus 4 random hex digits: '20261123-101500-3f2a'."""
    return time.strftime("%Y%m%d-%H%M%S", time.localtime(now)) + "-" + secrets.token_hex(2)


def run_url(root: str, run_id: str) -> str:
    return st.join(root, "runs", check_run_id(run_id))


def manifest_url(root: str, run_id: str) -> str:
    return st.join(run_url(root, run_id), RUN_FILE)


def stage_key(res: int) -> str:
    return str(int(res))


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


# ----------------------------------------------------------------------------------------------------------------
# Building and reading.

def new_run(cfg: PipelineConfig, run_id: str, resolutions: Iterable[int], dataset: str) -> dict[str, Any]:
    """A fresh manifest with every stage pending."""
    return {
        "format_version": FORMAT_VERSION,
        "run_id": check_run_id(run_id),
        "created": _now(),
        "status": "pending",
        "config": config_to_dict(cfg),                         # secrets blanked
        "dataset": dataset,
        "stages": {stage_key(r): {"resolution": int(r), "status": "pending", "checkpoint": None, "nimg": 0,
                                  "metrics": {}} for r in resolutions},
        "registration": {"status": "pending"},
        "tracking": {},
    }


def load_run(root: str, run_id: str, storage: StorageConfig | None = None) -> dict[str, Any] | None:
    """The run's manifest, or None when the run id is new."""
    run = st.read_json(manifest_url(root, run_id), storage)
    if run is not None and run.get("format_version") != FORMAT_VERSION:
        raise RunError(f"run {run_id}: manifest format {run.get('format_version')!r}, this code reads "
                       f"{FORMAT_VERSION}; use the pggan version that started the run, or a new --run-id")
    return run


def save_run(root: str, run: dict[str, Any], storage: StorageConfig | None = None) -> None:
    run["updated"] = _now()
    st.write_json_atomic(manifest_url(root, run["run_id"]), run, storage)


# ----------------------------------------------------------------------------------------------------------------
# Config compatibility.

def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict) and not prefix:                 # sections only; mappings inside are values
            out.update(_flatten(v, key))
        else:
            out[key] = {str(a): b for a, b in v.items()} if isinstance(v, dict) else v
    return out


def is_harmless(key: str) -> bool:
    return any(fnmatch.fnmatchcase(key, pattern) for pattern in HARMLESS_KEYS)


def config_differences(saved: dict[str, Any], cfg: PipelineConfig) -> list[tuple[str, Any, Any]]:
    """(key, saved value, new value) for every setting that differs and matters (harmless keys ignored)."""
    old, new = _flatten(saved), _flatten(config_to_dict(cfg))
    keys = sorted(set(old) | set(new))
    return [(k, old.get(k), new.get(k)) for k in keys if old.get(k) != new.get(k) and not is_harmless(k)]


def check_same_config(run: dict[str, Any], cfg: PipelineConfig) -> None:
    """Raise RunError when `cfg` would train something other than the run was started with."""
    diffs = config_differences(run["config"], cfg)
    if diffs:
        shown = "; ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in diffs[:4])
        more = f" (and {len(diffs) - 4} more)" if len(diffs) > 4 else ""
        raise RunError(f"run {run['run_id']} was started with a different config: {shown}{more}. Rerun with the "
                       f"original settings, or start a new run (omit --run-id). Only {', '.join(HARMLESS_KEYS)} "
                       "may change between resumes")


# ----------------------------------------------------------------------------------------------------------------
# Stage bookkeeping.

def stage(run: dict[str, Any], res: int) -> dict[str, Any]:
    try:
        return run["stages"][stage_key(res)]
    except KeyError:
        raise RunError(f"run {run['run_id']} has no stage at resolution {res}") from None


def mark_stage(run: dict[str, Any], res: int, status: str, **fields: Any) -> dict[str, Any]:
    """Set a stage's status (and fields such as checkpoint, nimg, metrics); timestamps the transition."""
    if status not in STATUSES:
        raise ValueError(f"stage status {status!r}: expected one of {STATUSES}")
    entry = stage(run, res)
    entry.update(fields)
    if status != entry["status"]:
        entry[{"running": "started", "done": "finished"}.get(status, "reset")] = _now()
    entry["status"] = status
    if status == "done":
        entry.pop("error", None)
    return entry


def is_done(run: dict[str, Any], res: int) -> bool:
    return stage(run, res)["status"] == "done"


def stages_done(run: dict[str, Any]) -> bool:
    """Every stage trained: what is left of the run (if it is not done) is the final registration."""
    return all(entry["status"] == "done" for entry in run["stages"].values())


def mark_registration(run: dict[str, Any], status: str, **fields: Any) -> dict[str, Any]:
    """Record the final registration's outcome (fields such as `error`) with its time."""
    if status not in REGISTRATION_STATUSES:
        raise ValueError(f"registration status {status!r}: expected one of {REGISTRATION_STATUSES}")
    run["registration"] = {"status": status, "time": _now(), **fields}
    return run["registration"]


def last_checkpoint_before(run: dict[str, Any], res: int) -> str | None:
    """The final checkpoint of the done stage just below `res` (the seed of stage `res`), or None."""
    below = [int(k) for k, v in run["stages"].items() if int(k) < res and v["status"] == "done"]
    return stage(run, max(below))["checkpoint"] if below else None
