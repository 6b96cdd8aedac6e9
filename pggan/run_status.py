"""`pggan status RUN_ID`: where a run stands, from its manifest run.json (and, for a stage still training, its
newest checkpoint and progress log): each stage's status, images seen, metrics and where its checkpoints are."""
from __future__ import annotations

from typing import Any

from pggan import run_manifest as runs
from pggan import storage as st
from pggan.checkpoint import CheckpointError, list_checkpoints, read_meta
from pggan.config import ConfigError, StorageConfig, config_from_dict
from pggan.stage_log import read_jsonl, stage_log_url
from pggan.schedule import stage_nimg


def _stage_total_nimg(run: dict[str, Any], res: int) -> int | None:
    """The stage's length from the run's saved config (None if that config no longer loads)."""
    try:
        return stage_nimg(config_from_dict(run["config"]).schedule, res)
    except (ConfigError, KeyError, TypeError, ValueError):
        return None


def _stage_status(root: str, run: dict[str, Any], entry: dict[str, Any],
                  storage: StorageConfig | None) -> dict[str, Any]:
    res = int(entry["resolution"])
    folder = st.join(runs.run_url(root, run["run_id"]), "stages", f"r{res:04d}")
    out = {"resolution": res, "status": entry["status"], "nimg": int(entry.get("nimg") or 0),
           "total_nimg": _stage_total_nimg(run, res), "checkpoint": entry.get("checkpoint"),
           "checkpoints": folder, "metrics": entry.get("metrics") or {}, "samples": entry.get("samples"),
           "train_seconds": entry.get("train_seconds"), "error": entry.get("error")}
    if entry["status"] == "running":                           # run.json is written at stage ends only
        ticks = read_jsonl(st.join(stage_log_url(root, run["run_id"], res), "metrics.jsonl"), storage)
        out["nimg"] = int(round(ticks[-1]["kimg"] * 1000)) if ticks else 0
        out["checkpoint"] = _newest_complete(folder, storage)   # where a resume would start from
    return out


def _newest_complete(stage_folder: str, storage: StorageConfig | None) -> str | None:
    for _, url in list_checkpoints(stage_folder, storage):
        try:
            read_meta(url, storage)                             # written last: the checkpoint is complete
        except CheckpointError:
            continue
        return url
    return None


def run_status(root: str, run_id: str, storage: StorageConfig | None = None) -> dict[str, Any]:
    """The status of run `run_id` under `root` as plain values (what `pggan status --json` prints). Raises
    RunError when there is no such run."""
    run = runs.load_run(root, run_id, storage)
    if run is None:
        raise runs.RunError(f"no run {run_id!r} under {st.to_url(root)} (no runs/{run_id}/{runs.RUN_FILE}); check "
                            "the run id and --root (storage.root)")
    stages = sorted(run["stages"].values(), key=lambda e: int(e["resolution"]))
    return {
        "run_id": run["run_id"], "status": run.get("status"), "created": run.get("created"),
        "updated": run.get("updated"), "error": run.get("error"), "dataset": run.get("dataset"),
        "manifest": runs.manifest_url(root, run_id),
        "stages": [_stage_status(root, run, e, storage) for e in stages],
        "registration": run.get("registration") or {}, "tracking": run.get("tracking") or {},
    }


def _kimg(nimg: int | None) -> str:
    return "?" if nimg is None else f"{nimg / 1000:g}"


def format_status(status: dict[str, Any]) -> str:
    """The status as text: a header, one table row per stage, then where everything is."""
    lines = [f"run {status['run_id']}: {status['status']} (created {status['created']}, updated "
             f"{status['updated']})"]
    if status.get("error"):
        lines.append(f"  error: {status['error']}")
    lines.append(f"  data set: {status['dataset']}")
    lines.append("")
    lines.append(f"  {'stage':<11}{'status':<9}{'kimg seen':>16}  {'SWD avg':>8}  {'MS-SSIM':>7}  {'train':>7}")
    for s in status["stages"]:
        m = s["metrics"]
        swd = f"{m['swd_avg']:.2f}" if "swd_avg" in m else "-"
        ssim = f"{m['ms_ssim']:.3f}" if "ms_ssim" in m else "-"
        secs = f"{s['train_seconds']:.0f} s" if s.get("train_seconds") is not None else "-"
        seen = f"{_kimg(s['nimg'])} / {_kimg(s['total_nimg'])}"
        name = f"{s['resolution']}x{s['resolution']}"
        lines.append(f"  {name:<11}{s['status']:<9}{seen:>16}  {swd:>8}  {ssim:>7}  {secs:>7}")
    lines.append("")
    for s in status["stages"]:
        name = f"{s['resolution']}x{s['resolution']}"
        if s["checkpoint"]:
            which = "final checkpoint" if s["status"] == "done" else "newest checkpoint"
            lines.append(f"  {name} {which}: {s['checkpoint']}")
        else:
            lines.append(f"  {name} checkpoints: none yet (they go to {s['checkpoints']})")
        if s.get("samples"):
            lines.append(f"  {name} samples: {s['samples']}")
        if s.get("metrics", {}).get("swd_levels"):
            levels = " ".join(f"{v:.2f}" for v in s["metrics"]["swd_levels"])
            lines.append(f"  {name} SWD x1e3 per level: {levels} ({s['metrics'].get('num_images', '?')} images)")
        if s.get("error"):
            lines.append(f"  {name} error: {s['error']}")
    reg = status["registration"]
    error = f" ({reg['error']})" if reg.get("error") else ""
    lines.append(f"  registration: {reg.get('status', 'pending')}{error}")
    for k, v in sorted(status["tracking"].items()):
        lines.append(f"  tracking {k}: {v}")
    lines.append(f"  manifest: {status['manifest']}")
    return "\n".join(lines)
