"""Ray Tune search over the growth schedule (fade-in and stabilize lengths, any schedule key): every trial is a
whole staged run (full_run: one Ray Train job per stage) under its own run id {sweep}-t{index}. The objective is
the final stage's SWD average (lower is better), reported after every stage so ASHA stops weak trials only at
stage boundaries, never inside a Train job.

    python pipelines/tune_schedule.py --config tiny.yaml --num-samples 8 --fade-kimg 0.1:0.4 --stabilize-kimg 0.1:0.4

Under {root}/sweeps/{name}/: Tune's experiment state (rerun with the same --name to resume), sweep.json (what was
asked), trials.json (each trial's values, outcome, SWD and cost) and best.yaml (the best trial's full config:
python pipelines/full_run.py --config best.yaml). MLflow: a sweep run with each trial's pipeline run nested in it.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import yaml  # noqa: E402

from pggan import run_manifest as runs  # noqa: E402
from pggan import storage as st  # noqa: E402
from pggan import sweep as sw  # noqa: E402
from pggan.config import ConfigError, PipelineConfig, config_from_dict, config_to_dict  # noqa: E402
from pggan.config_args import add_config_args, config_from_args  # noqa: E402
from pggan.stage_log import RunHooks  # noqa: E402
from pggan.schedule import stage_resolutions  # noqa: E402
from pggan.secret_keys import without_secrets  # noqa: E402

EPILOG = """\
examples:
  python pipelines/tune_schedule.py --config tiny.yaml --num-samples 4 --fade-kimg 0.1:0.4 --stabilize-kimg 0.1:0.4
  python pipelines/tune_schedule.py --num-samples 16 --per-res --fade-kimg 100:800 --stabilize-kimg 100:800 \\
      --search schedule.lr_per_res.32=1e-4:3e-3 --name sched1
  python pipelines/tune_schedule.py --num-samples 8 --total-kimg 600 --fade-kimg 100:500   # split a fixed budget
  python pipelines/tune_schedule.py ... --name sched1          # after the driver died: the same command resumes

Ranges are LOW:HIGH in kimg (thousands of images); without --fade-kimg/--stabilize-kimg the range is half to
twice the config's value. Searchable keys: """ + ", ".join(
    f"schedule.{k}" + (".RES" if k in sw.PER_RES else "") for k in sw.SEARCHABLE) + """.
Trials at once: cluster CPUs / (scaling.num_workers x scaling.cpus_per_worker + 1), and GPUs / num_workers.
Exit status: 0 done (best.yaml written), 1 no trial finished every stage, 2 bad arguments or config."""


def add_args(parser: argparse.ArgumentParser) -> None:
    add_config_args(parser, set_scope="one setting of every trial")
    parser.add_argument("--num-samples", type=int, required=True, metavar="N", help="number of trials")
    parser.add_argument("--scheduler", choices=("asha", "none"), default="asha",
                        help="asha: stop weak trials at stage boundaries (default); none: run every trial to the end")
    parser.add_argument("--name", default=None, help="sweep name (default: sweep-TIME); an existing one resumes")
    parser.add_argument("--fade-kimg", metavar="LOW:HIGH", default=None, help="fade-in kimg per stage")
    parser.add_argument("--stabilize-kimg", metavar="LOW:HIGH", default=None, help="stabilize kimg per stage")
    parser.add_argument("--total-kimg", type=float, default=None, metavar="KIMG",
                        help="fixed kimg per stage: search how to split it (stabilize = total - fade)")
    parser.add_argument("--per-res", action="store_true",
                        help="search each resolution's own values (schedule.*_kimg_per_res)")
    parser.add_argument("--search", metavar="KEY=LOW:HIGH", action="append", default=[],
                        help="also search this schedule key, e.g. schedule.lr_per_res.16=1e-4:1e-2 (repeatable)")
    parser.add_argument("--max-concurrent", type=int, default=None, metavar="K",
                        help="at most K trials at once (default: as many as the cluster fits)")


@dataclass(frozen=True)
class SweepJob:
    """What every trial needs, as plain values (handed to trials by tune.with_parameters)."""
    name: str
    base: PipelineConfig                 # absolute storage root; the trials' config before the searched values
    space: sw.SearchSpace
    sweep_run_id: str                    # MLflow
    tracking_uri: str                    # absolute, so trial actors and Train workers log to the same place

    def trial_config(self, sampled: Mapping[str, Any]) -> PipelineConfig:
        """Trials log to the sweep's tracking URI and do not register models (the best config's run does)."""
        cfg = sw.trial_config(self.base, self.space, sampled)
        return cfg.replace(tracking=dataclasses.replace(cfg.tracking, uri=self.tracking_uri, register=False))


# ----------------------------------------------------------------------------------------------------------------
# Inside a trial (a Tune function trainable).

def stage_report(run: Mapping[str, Any], stages: list[int], i: int) -> dict[str, Any]:
    """What Tune gets after stage i: its SWD average (the objective; every trial evaluates alike, so it ranks as
    swd_ratio does), swd_ratio (fake / real-vs-real SWD), and the cost so far next to them."""
    entries = [runs.stage(run, r) for r in stages[: i + 1]]
    metrics = entries[-1].get("metrics", {})
    swd, ratio = float(metrics.get("swd_avg", math.nan)), float(metrics.get("swd_ratio", math.nan))
    return {"swd_avg": swd if math.isfinite(swd) else 1e30,     # a diverged stage ranks last
            "swd_ratio": ratio if math.isfinite(ratio) else 1e30,
            "ms_ssim": float(metrics.get("ms_ssim", math.nan)), "resolution": stages[i],
            "training_iteration": i + 1, "stages_total": len(stages), "final": i == len(stages) - 1,
            "kimg_shown": sum(e.get("nimg", 0) for e in entries) / 1000,
            "wall_seconds": round(sum(e.get("seconds", 0.0) for e in entries), 1), "run_id": run["run_id"]}


class TuneReportHooks(RunHooks):
    """The run's own hooks, plus a Tune report at the end of every stage but the last (reported once the run is
    done). tune.report blocks until Tune decides, so a trial the scheduler stops ends here, between two Train jobs
    (ray #54305: a Train job cut mid-way can leak its placement group and starve the next trial)."""

    def __init__(self, inner: RunHooks, stages: list[int]):
        self.inner, self.stages = inner, list(stages)

    def check(self) -> None:
        self.inner.check()

    def start_run(self, run: Mapping[str, Any]) -> dict[str, Any]:
        return self.inner.start_run(run)

    def start_stage(self, run: Mapping[str, Any], res: int) -> str | None:
        return self.inner.start_stage(run, res)

    def stage_logger(self, res: int, stage_id: str | None):
        return self.inner.stage_logger(res, stage_id)

    def end_stage(self, run: Mapping[str, Any], res: int, stage_id: str | None, result: Mapping[str, Any],
                  grid: Any) -> None:
        self.inner.end_stage(run, res, stage_id, result, grid)
        if res != self.stages[-1]:
            from ray import tune

            tune.report(stage_report(run, self.stages, self.stages.index(res)))

    def end_run(self, run: Mapping[str, Any], final_checkpoint: str) -> dict[str, Any]:
        return self.inner.end_run(run, final_checkpoint)

    def abort_run(self, run: Mapping[str, Any], status: str, reason: str) -> None:
        self.inner.abort_run(run, status, reason)


def run_trial(config: dict[str, Any], job: SweepJob) -> None:
    """One trial: full_run under run id {sweep}-t{index}; a resumed trial first re-reports its finished stages."""
    from ray import tune

    from pggan.tracking.hooks import make_run_hooks
    from pggan.tracking.sweep import attach_trial_run
    from pipelines.full_run import RegistrationError, full_run

    index = sw.trial_index(tune.get_context().get_trial_id())
    run_id = sw.trial_run_id(job.name, index)
    cfg = job.trial_config(config)
    attach_trial_run(cfg, job.sweep_run_id, job.name, index, run_id, sw.trial_values(job.space, config))
    stages = stage_resolutions(cfg)
    previous = runs.load_run(cfg.storage.root, run_id, cfg.storage)
    for i, res in enumerate(stages[:-1]):            # Tune restarts a resumed trial at iteration 0
        if previous is not None and runs.is_done(previous, res):
            tune.report(stage_report(previous, stages, i))
    hooks = TuneReportHooks(make_run_hooks(cfg), stages)
    try:
        run = full_run(cfg, run_id, argv=[], log=lambda line: print(f"[t{index}] {line}", flush=True), hooks=hooks)
    except RegistrationError as e:  # every stage trained, so the score stands; only the trial's logged model is missing
        print(f"[t{index}] warning: {e}; the trial's score is kept", flush=True)
        run = runs.load_run(cfg.storage.root, run_id, cfg.storage)
    tune.report(stage_report(run, stages, len(stages) - 1))


# ----------------------------------------------------------------------------------------------------------------
# The driver.

def trial_dirname(trial: Any) -> str:
    return f"t{sw.trial_index(trial.trial_id)}"


def param_space(space: sw.SearchSpace) -> dict[str, Any]:
    from ray import tune

    def dist(d: sw.Dimension) -> Any:
        if d.fixed:
            return d.low
        if d.kind == "int":
            return tune.qrandint(int(d.low), int(d.high), d.step)
        return tune.loguniform(d.low, d.high) if d.kind == "log" else tune.quniform(d.low, d.high, 0.001)

    return {d.key: dist(d) for d in space.dims}


def sweep_url(cfg: PipelineConfig, name: str) -> str:
    return st.join(cfg.storage.root, "sweeps", name)


def sweep_record(args: argparse.Namespace, cfg: PipelineConfig, space: sw.SearchSpace) -> dict[str, Any]:
    return {"name": args.name, "space": space.as_dict(), "num_samples": args.num_samples,
            "scheduler": args.scheduler, "config": config_to_dict(cfg)}


def check_same_sweep(saved: Mapping[str, Any], new: Mapping[str, Any], cfg: PipelineConfig) -> None:
    """A resumed sweep must search the same space with the same config (else its trials' runs would refuse)."""
    for key in ("space", "num_samples", "scheduler"):
        if saved.get(key) != new[key]:
            raise ConfigError(f"sweep {new['name']} was started with another {key} ({saved.get(key)!r}); rerun with "
                              "the original arguments, or choose a new --name")
    diffs = runs.config_differences(saved["config"], cfg)
    if diffs:
        k, a, b = diffs[0]
        raise ConfigError(f"sweep {new['name']} was started with {k}={a!r}, now {b!r}; rerun with the original "
                          "settings, or choose a new --name")


def make_tuner(args: argparse.Namespace, job: SweepJob, concurrent: int, log: Callable[[str], None]):
    """A new Tuner, or the sweep's own restored from {root}/sweeps/{name} when its state is there."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    trainable = tune.with_resources(tune.with_parameters(run_trial, job=job), {"cpu": sw.TRIAL_CPU})
    fs, path = st.pyarrow_filesystem(st.join(job.base.storage.root, "sweeps"), job.base.storage)
    if tune.Tuner.can_restore(f"{path}/{job.name}", storage_filesystem=fs):
        log(f"[tune] resuming sweep {job.name}: finished trials are kept, unfinished ones resume their runs")
        return tune.Tuner.restore(f"{path}/{job.name}", trainable, resume_unfinished=True, resume_errored=True,
                                  storage_filesystem=fs)
    stages = stage_resolutions(job.base)
    scheduler = (ASHAScheduler(time_attr="training_iteration", max_t=len(stages), grace_period=1,
                               reduction_factor=2) if args.scheduler == "asha" else FIFOScheduler())
    return tune.Tuner(
        trainable, param_space=param_space(job.space),
        tune_config=tune.TuneConfig(metric="swd_avg", mode="min", scheduler=scheduler, num_samples=args.num_samples,
                                    trial_dirname_creator=trial_dirname,      # the generator caps concurrency
                                    search_alg=BasicVariantGenerator(max_concurrent=concurrent,
                                                                     random_state=job.base.optim.seed)),
        run_config=tune.RunConfig(name=job.name, storage_path=path, storage_filesystem=fs, verbose=1,
                                  failure_config=tune.FailureConfig(max_failures=0)))


def trial_rows(results: Any, job: SweepJob) -> list[dict[str, Any]]:
    """One row per trial: index, run id, values, outcome (completed / stopped / error), SWD and cost."""
    rows = []
    for r in results:
        m = r.metrics or {}
        index = sw.trial_index(m["trial_id"]) if m.get("trial_id") else int(os.path.basename(r.path)[1:])
        outcome = "error" if r.error else "completed" if m.get("final") else "stopped"
        rows.append({"trial": index, "run_id": sw.trial_run_id(job.name, index), "outcome": outcome,
                     "values": sw.trial_values(job.space, r.config), "swd_avg": m.get("swd_avg"),
                     "swd_ratio": m.get("swd_ratio"),
                     "resolution": m.get("resolution"), "stages_done": m.get("training_iteration", 0),
                     "kimg_shown": m.get("kimg_shown", 0.0), "wall_seconds": m.get("wall_seconds", 0.0),
                     "error": " ".join(str(r.error).split())[:300] if r.error else None})
    return sorted(rows, key=lambda row: row["trial"])


def best_row(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    done = [r for r in rows if r["outcome"] == "completed" and r["swd_avg"] is not None]
    return min(done, key=lambda r: r["swd_avg"]) if done else None


def write_best(job: SweepJob, best: dict[str, Any], results: Any) -> tuple[str, str]:
    """best.yaml: the best trial's full config (the user's tracking settings), checked to load back."""
    sampled = next(r.config for r in results if r.metrics and r.metrics.get("run_id") == best["run_id"])
    cfg = sw.trial_config(job.base, job.space, sampled)
    url = st.join(sweep_url(job.base, job.name), "best.yaml")
    text = sw.best_config_yaml(cfg, [
        f"Best of sweep {job.name}: trial {best['trial']} (run {best['run_id']}), final SWD avg "
        f"{best['swd_avg']:.4g} after {best['kimg_shown']:g} kimg, {best['wall_seconds']:.0f} s.",
        f"Train it: python pipelines/full_run.py --config {local_name(url)}"])
    if config_from_dict(yaml.safe_load(text)) != without_secrets(cfg):        # keys are never written
        raise RuntimeError(f"best.yaml does not load back to the best trial's config: {url}")
    st.write_bytes_atomic(url, text.encode(), job.base.storage)
    return url, text


def local_name(url: str) -> str:
    """What --config takes: a local path (an object-store best.yaml must be copied to local disk first)."""
    protocol, path = st.split_url(url)
    return path if protocol == "file" else "best.yaml  (copy it from " + url + ")"


def print_table(rows: list[dict[str, Any]], log: Callable[[str], None]) -> None:
    for r in rows:
        values = " ".join(f"{k.removeprefix('schedule.')}={v:g}" for k, v in r["values"].items())
        swd = f"{r['swd_avg']:.3f}" if r["swd_avg"] is not None else "-"
        ratio = f"{r['swd_ratio']:.2f}" if r.get("swd_ratio") is not None else "-"
        log(f"[tune] t{r['trial']:<3} {r['outcome']:<9} SWD {swd:>8} ratio {ratio:>5} @{r['resolution'] or '-'}  "
            f"{r['kimg_shown']:g} kimg {r['wall_seconds']:.0f} s  {values}" + (f"  {r['error']}" if r["error"] else ""))


def sweep(args: argparse.Namespace, cfg: PipelineConfig, space: sw.SearchSpace,
          log: Callable[[str], None] = print) -> int:
    """Run (or resume) the sweep; returns the exit status."""
    import ray

    from pggan.tracking import client as tr
    from pggan.tracking import sweep as stk
    from pipelines.full_run import prepare_dataset
    from pipelines.runtime import init_ray

    where = init_ray(cfg)
    resources = ray.cluster_resources()
    concurrent = sw.max_concurrent_trials(cfg, resources.get("CPU", 0), resources.get("GPU", 0),
                                          args.num_samples, args.max_concurrent)
    record, record_url = sweep_record(args, cfg, space), st.join(sweep_url(cfg, args.name), "sweep.json")
    saved = st.read_json(record_url, cfg.storage)
    if saved is not None:
        check_same_sweep(saved, record, cfg)
    st.write_json_atomic(record_url, record, cfg.storage)
    log(f"[tune] sweep {args.name}: {args.num_samples} trials, {concurrent} at a time on {where}; searching "
        + "; ".join(f"{d.key}={d.describe()}" for d in space.dims))
    log(f"[tune] resume with the same command and --name {args.name}")
    prepare_dataset(cfg, log)                    # once, before trials that would all ingest it at the same time
    params = {f"sweep.{d.key}": d.describe() for d in space.dims}
    params.update({"sweep.num_samples": str(args.num_samples), "sweep.scheduler": args.scheduler,
                   "sweep.total_kimg": str(space.total_kimg), "sweep.max_concurrent": str(concurrent)})
    job = SweepJob(args.name, cfg, space, stk.start_sweep_run(cfg, args.name, params), tr.resolve_tracking_uri(cfg))
    results = make_tuner(args, job, concurrent, log).fit()
    rows = trial_rows(results, job)
    best = best_row(rows)
    print_table(rows, log)
    st.write_json_atomic(st.join(sweep_url(cfg, args.name), "trials.json"), {"trials": rows}, cfg.storage)
    url, text = write_best(job, best, results) if best else (None, "")
    try:
        for r in rows:
            stk.record_trial_outcome(cfg, job.sweep_run_id, r["run_id"], r["outcome"], {
                "kimg_shown": r["kimg_shown"], "wall_seconds": r["wall_seconds"], "stages_done": r["stages_done"]})
        stk.finish_sweep_run(cfg, job.sweep_run_id, best, text, rows)
    except Exception as e:  # the results are on storage already; rerunning the same --name logs them again
        log(f"[tune] warning: MLflow logging of the results failed ({type(e).__name__}: {tr.redact(str(e))[:300]})")
    if best is None:
        log(f"[tune] no trial finished every stage; see the errors above. Resume with the same --name {args.name}")
        return 1
    log(f"[tune] best: t{best['trial']} SWD {best['swd_avg']:.4g}; config {url}")
    log(f"[tune] train it: python pipelines/full_run.py --config {local_name(url)}")
    return 0


def run(args: argparse.Namespace, prog: str = "tune_schedule") -> int:
    """Search the fade-in / stabilize lengths (and other schedule keys) with Ray Tune; write the best config.
    Error lines start with `prog`, the command the user typed (`pggan tune` passes its own)."""
    from pipelines.runtime import absolute_config

    try:
        if args.num_samples < 1:
            raise ConfigError(f"--num-samples {args.num_samples}: must be >= 1")
        if args.max_concurrent is not None and args.max_concurrent < 1:
            raise ConfigError(f"--max-concurrent {args.max_concurrent}: must be >= 1")
        args.name = check_name(args.name or time.strftime("sweep-%Y%m%d-%H%M%S"))
        cfg = absolute_config(config_from_args(args))
        space = sw.build_space(cfg, fade=args.fade_kimg, stabilize=args.stabilize_kimg, total=args.total_kimg,
                               per_res=args.per_res, search=args.search)
        return sweep(args, cfg, space)
    except (ConfigError, runs.RunError) as e:
        print(f"{prog}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except Exception as e:  # the data or tracking failed before trials started: one line, not a traceback
        # Matched by class: both are raised in this process before any trial (prepare_dataset, the hooks' check),
        # never inside a Ray task, so they arrive unwrapped. Imported here: pggan.tracking loads MLflow (seconds).
        from pggan.tracking.client import TrackingError
        from pggan.storage_checks import IngestError
        if not isinstance(e, (IngestError, TrackingError)):
            raise
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1


def check_name(name: str) -> str:
    """A sweep name that can prefix run ids ({name}-t{index})."""
    try:
        return runs.check_run_id(name if len(name) <= 100 else "")
    except runs.RunError:
        raise ConfigError(f"--name {name!r}: use letters, digits, '.', '_' or '-' (at most 100 characters), "
                          "e.g. sched1") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tune_schedule", description=__doc__.split("\n\n")[0], epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_args(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    # Through the package, so trials and Train workers import SweepJob and the hooks by name, not as __main__.
    from pipelines.tune_schedule import main as package_main

    sys.exit(package_main())
