"""The whole pipeline, idempotent and resumable: ingest (if needed) -> one Ray Train job per resolution 4 ...
data.resolution, each grown from the previous stage's final checkpoint -> stage-end evaluation (SWD, MS-SSIM)
and a sample grid -> hand-off to tracking and the model registry. The run manifest
{root}/runs/{run_id}/run.json records each stage and the registration; running again with the same --run-id
skips finished stages and resumes the unfinished one from its newest checkpoint (or, with every stage done,
only registers the final generator).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import sys
import time
from typing import Any, Callable, Iterator

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pggan import run_manifest as runs  # noqa: E402
from pggan import storage as st  # noqa: E402
from pggan.config import ConfigError, PipelineConfig  # noqa: E402
from pggan.config_args import add_config_args, config_from_args  # noqa: E402
from pggan.imaging import save_png  # noqa: E402
from pggan.stage_log import RunHooks  # noqa: E402
from pggan.schedule import stage_plan, stage_resolutions, total_nimg  # noqa: E402
from pggan.secret_keys import is_secret_override, redact_secrets, secret_override_values  # noqa: E402

SCRIPT = "python pipelines/full_run.py"     # the command in resume hints (`pggan train` passes its own)

EPILOG = """\
examples:
  python pipelines/full_run.py                                  # the demo: 4x4 -> 32x32 on 2 CPU cores
  python pipelines/full_run.py --config pipelines/configs/tiny.yaml --set storage.root=/tmp/pggan
  python pipelines/full_run.py --run-id 20261123-101500-3f2a    # resume: finished stages are skipped
  pggan train --config FILE --set KEY=VALUE --run-id ID         # the same, as the installed `pggan` command
  ray job submit --address http://HEAD:8265 --working-dir . -- python pipelines/full_run.py --config FILE

Common keys for --set: data.source (folder/bucket URL or 'synthetic'), data.resolution, storage.root
(path, file:// or s3:// URL), scaling.num_workers, scaling.use_gpu, schedule.fade_kimg, schedule.stabilize_kimg,
schedule.batch_size.{res}, tracking.uri. Under `ray job submit` give storage.root as an absolute path or URL
(the job runs in a copy of the working directory) and pass S3 keys with --runtime-env-json.
A resume must use the run's saved config; only these keys may differ:
  """ + ", ".join(runs.HARMLESS_KEYS) + """.
Outputs: {root}/runs/{run_id}/run.json (the manifest), stages/r{res}/ (checkpoints), samples/r{res}.png, logs/.
Exit status: 0 done; 1 the data, a stage or the final registration failed (what finished is kept: rerun the
run id to do only what is missing); 2 bad config or arguments; 130 interrupted."""


INTERRUPTS = (KeyboardInterrupt, SystemExit)


class RegistrationError(RuntimeError):
    """Every stage trained, but handing the final generator to tracking / the model registry failed."""


def add_args(parser: argparse.ArgumentParser) -> None:
    """full_run's options and usage notes on `parser` (also those of `pggan train`)."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    add_config_args(parser)
    parser.add_argument("--run-id", default=None,
                        help="resume this run (or start it under this id); default: a new id from the time")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="full_run", description=__doc__.split("\n\n")[0])
    add_args(parser)
    return parser.parse_args(argv)


def argv_of(args: argparse.Namespace) -> list[str]:
    """The arguments that give `args` again, secret values redacted (recorded in the manifest; the resume hint
    is built from them)."""
    out = ["--config", args.config] if args.config else []
    out += [a for s in args.overrides for a in ("--set", s)]
    return redact_secrets(out + (["--run-id", args.run_id] if args.run_id else []))


def resume_command(argv: list[str], run_id: str, command: str = SCRIPT) -> str:
    """The command that resumes this run: the same arguments, with --run-id. Secret `--set`s are left out (never
    shown); a note names them and how to pass them again."""
    kept, secret, i = [], [], 0
    while i < len(argv):
        a = argv[i]
        if a == "--run-id":
            i += 2
            continue
        if a == "--set" and i + 1 < len(argv) and is_secret_override(argv[i + 1]):
            secret.append(argv[i + 1].split("=", 1)[0].strip())
            i += 2
            continue
        if a.startswith("--set=") and is_secret_override(a[len("--set="):]):
            secret.append(a[len("--set="):].split("=", 1)[0].strip())
        elif not a.startswith("--run-id="):
            kept.append(a)
        i += 1
    line = " ".join([command, *map(shlex.quote, kept), "--run-id", run_id])
    if secret:
        line += (f" (and pass {' and '.join(secret)} again, e.g. as AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY in "
                 "the environment: keys are never shown)")
    return line


def one_line(e: BaseException | str) -> str:
    return " ".join(str(e).split())


# ----------------------------------------------------------------------------------------------------------------
# Steps.

def prepare_dataset(cfg: PipelineConfig, log: Callable[[str], None]) -> str:
    """Ingest if the data set is missing or stale (idempotent); check it has every level the stages need."""
    from pggan.dataset import dataset_url
    from pipelines.ingest import ingest
    from pggan.storage_checks import IngestError

    manifest = ingest(cfg, log=log)
    durl = dataset_url(cfg)
    missing = [r for r in stage_resolutions(cfg) if r not in manifest.get("resolutions", [])]
    if missing:
        raise IngestError(f"data set {durl} has levels {manifest.get('resolutions')} but the stages need "
                          f"{missing}: lower data.resolution or re-ingest with --force")
    return durl


def dataset_classes(cfg: PipelineConfig, durl: str, previous: dict[str, Any] | None) -> dict[str, list] | None:
    """The run's classes ({"names", "counts"}, None when unconditional), read once here from the data set's
    manifest and one level's `label` column; a resume keeps the saved ones and refuses a data set whose classes
    (or their order) differ."""
    from pggan.dataset import read_labels, read_manifest
    from pggan.labels import check_same_classes, run_classes

    if previous is not None and runs.stages_done(previous):
        return previous.get("classes")
    manifest = read_manifest(durl, cfg.storage) or {}
    column = read_labels(durl, stage_resolutions(cfg)[0], cfg.storage) if cfg.data.labels == "folders" else None
    found = run_classes(manifest, cfg.data.labels, column, durl)
    if previous is not None:
        check_same_classes(previous.get("classes"), found, durl)
        return previous.get("classes")
    return found


def open_run(cfg: PipelineConfig, run_id: str, durl: str, argv: list[str],
             classes: dict[str, list] | None = None) -> dict[str, Any]:
    """The run's manifest: loaded (after the config check) or created with every stage pending. `classes`
    (conditional runs) is stored as run.json["classes"]."""
    run = runs.load_run(cfg.storage.root, run_id, cfg.storage)
    if run is None:
        run = runs.new_run(cfg, run_id, stage_resolutions(cfg), durl)
        if classes:
            run["classes"] = classes
    run.setdefault("invocations", []).append({"time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                              "argv": redact_secrets(argv)})
    run["status"] = "running"
    runs.save_run(cfg.storage.root, run, cfg.storage)
    return run


def train(cfg: PipelineConfig, run: dict[str, Any], res: int, hooks: RunHooks, log: Callable[[str], None]) -> None:
    """Train stage `res` (resuming it if it was interrupted), evaluate it, and mark it done in the manifest."""
    from pggan.evaluation import summary_line
    from pipelines.evaluate import remote_evaluate_checkpoint, remote_sample_grid
    from pipelines.runtime import worker_config
    from pipelines.train_stage import StageJob, fault_from_env, run_stage

    root, storage = cfg.storage.root, cfg.storage
    entry = runs.stage(run, res)
    resumed = entry["status"] == "running"
    entry["tracking_id"] = hooks.start_stage(run, res) or entry.get("tracking_id")
    runs.mark_stage(run, res, "running")
    runs.save_run(root, run, storage)
    plan = stage_plan(cfg, res)
    log(f"[full_run] stage {res}x{res}: {'resuming' if resumed else 'starting'}; {plan.fade_nimg / 1000:g} kimg "
        f"fade-in + {plan.stabilize_nimg / 1000:g} kimg stabilize, minibatch {plan.batch_size}, lr {plan.lr:g}")
    started = time.monotonic()
    wcfg = worker_config(cfg)
    classes = run.get("classes") or {}
    job = StageJob(wcfg, run["run_id"], res, run["dataset"], runs.last_checkpoint_before(run, res), hooks,
                   entry["tracking_id"], fault_from_env(res), class_names=tuple(classes.get("names", ())),
                   class_counts=tuple(classes.get("counts", ())))
    out = run_stage(job)
    train_s = time.monotonic() - started

    e = cfg.eval
    gpu = cfg.scaling.use_gpu
    metrics_ref = remote_evaluate_checkpoint(gpu, checkpoint_url=out["checkpoint"], dataset_url=run["dataset"],
                                             res=res, num_images=e.num_images, seed=e.seed, storage=wcfg.storage)
    grid_ref = remote_sample_grid(gpu, checkpoint_url=out["checkpoint"], grid_size=e.grid_size, seed=e.seed,
                                  storage=wcfg.storage)
    import ray

    metrics, grid = ray.get([metrics_ref, grid_ref])
    samples = st.join(runs.run_url(root, run["run_id"]), "samples", f"r{res:04d}.png")
    save_png(samples, grid, storage)
    result = {"checkpoint": out["checkpoint"], "nimg": out["nimg"], "metrics": metrics, "samples": samples,
              "train_seconds": round(train_s, 1), "seconds": round(time.monotonic() - started, 1)}
    runs.mark_stage(run, res, "done", **result)
    runs.save_run(root, run, storage)
    hooks.end_stage(run, res, entry.get("tracking_id"), result, grid)
    log(f"[full_run] stage {res}x{res} done in {result['seconds']:.0f} s: {summary_line(metrics)}; "
        f"samples {samples}")


def register_final(run: dict[str, Any], hooks: RunHooks, log: Callable[[str], None] = print) -> None:
    """Hand the final EMA generator to tracking (logged, registered, aliased); the outcome goes to
    run.json["registration"], and why `champion` moved or not to the output. Raises RegistrationError when it
    failed."""
    final = runs.stage(run, max(int(k) for k in run["stages"]))["checkpoint"]
    try:
        kept = hooks.end_run(run, final) or {}
    except Exception as e:  # any cause (tracking down, checkpoint unreadable): recorded, then one clear error
        reason = f"{type(e).__name__}: {one_line(e)}"[:1000]
        runs.mark_registration(run, "failed", error=reason)
        raise RegistrationError(f"registering the final generator ({final}) failed: {reason}") from e
    run["tracking"].update(kept)
    runs.mark_registration(run, "done")
    if kept.get("champion"):
        log(f"[full_run] {kept['champion']['reason']}")


@contextlib.contextmanager
def failure_recorded(cfg: PipelineConfig, run: dict[str, Any], hooks: RunHooks,
                     log: Callable[[str], None] = print) -> Iterator[None]:
    """Whatever stops the run early (an error, Ctrl-C) is written to run.json (status failed / interrupted, its
    error) and closes the run's tracking (FAILED / KILLED) before it propagates. Ctrl-C arrives as
    KeyboardInterrupt, or as SystemExit from Ray Train's SIGINT handler (it stays installed after a stage)."""
    try:
        yield
    except BaseException as e:
        interrupted = isinstance(e, INTERRUPTS)
        run["status"] = "interrupted" if interrupted else "failed"
        cause = f"{type(e).__name__}: {one_line(e)}"[:1000]
        run["error"] = f"interrupted ({cause})" if interrupted else cause
        runs.save_run(cfg.storage.root, run, cfg.storage)
        try:
            hooks.abort_run(run, "KILLED" if interrupted else "FAILED", run["error"])
        except Exception as hook_error:  # the run's own failure is the one to report
            log(f"[full_run] warning: closing the tracking runs failed ({type(hook_error).__name__}: "
                f"{one_line(hook_error)[:300]})")
        raise


def start_work(cfg: PipelineConfig, previous: dict[str, Any] | None, log: Callable[[str], None]) -> str:
    """Ray, the cluster checks and the data set, when a stage is left to train; returns the data set URL.
    With every stage done (only the registration left) none of it is needed."""
    if previous is not None and runs.stages_done(previous):
        log("[full_run] every stage is trained; only the final generator is left to register")
        return previous["dataset"]
    from pipelines.preflight import check_cluster
    from pipelines.runtime import init_ray

    log(f"[full_run] stages {stage_resolutions(cfg)}, {total_nimg(cfg) / 1000:g} kimg in all; on {init_ray(cfg)}")
    check_cluster(cfg)                                         # multi-node misconfiguration: before any work
    return prepare_dataset(cfg, log)


def full_run(cfg: PipelineConfig, run_id: str, argv: list[str] = (), log: Callable[[str], None] = print,
             hooks: RunHooks | None = None, command: str = SCRIPT) -> dict:
    """Run (or resume) every stage of `run_id`, then register the final generator; returns the final run
    manifest. `hooks` (default: the config's tracking hooks) also lets a caller act at stage ends, e.g. a Tune
    trial reporting each stage's SWD. `command` is the program named in the resume hint."""
    from pggan.tracking.hooks import make_run_hooks
    from pipelines.runtime import absolute_config

    cfg = absolute_config(cfg)
    root, storage = cfg.storage.root, cfg.storage
    previous = runs.load_run(root, run_id, storage)
    if previous is not None:
        runs.check_same_config(previous, cfg)                  # before anything else happens
        if previous["status"] == "done":
            log(f"[full_run] run {run_id} is complete (every stage done and handed to tracking); nothing to do. "
                f"Manifest: {runs.manifest_url(root, run_id)}")
            return previous
    hooks = hooks if hooks is not None else make_run_hooks(cfg)
    hooks.check()
    log(f"[full_run] run id {run_id} ({'resuming' if previous else 'new'}); {runs.run_url(root, run_id)}")
    log(f"[full_run] resume with: {resume_command(list(argv), run_id, command)}")
    durl = start_work(cfg, previous, log)
    classes = dataset_classes(cfg, durl, previous)
    if classes:
        log(f"[full_run] conditional on {len(classes['names'])} classes: " + ", ".join(
            f"{i}={name} ({n} images)" for i, (name, n) in enumerate(zip(classes["names"], classes["counts"]))))
    run = open_run(cfg, run_id, durl, list(argv), classes)
    from pipelines.train_stage import StageFailedError

    with failure_recorded(cfg, run, hooks, log):
        run["tracking"].update(hooks.start_run(run) or {})
        runs.save_run(root, run, storage)
        for res in stage_resolutions(cfg):
            if runs.is_done(run, res):
                log(f"[full_run] stage {res}x{res}: done already ({runs.stage(run, res)['checkpoint']}), skipped")
                continue
            try:
                train(cfg, run, res, hooks, log)
            except StageFailedError as e:
                runs.stage(run, res)["error"] = str(e)
                raise
        register_final(run, hooks, log)
    run["status"] = "done"
    run.pop("error", None)
    runs.save_run(root, run, storage)
    final = runs.stage(run, stage_resolutions(cfg)[-1])["checkpoint"]
    log(f"[full_run] run {run_id} done: final checkpoint {final}; manifest {runs.manifest_url(root, run_id)}")
    return run


def run(args: argparse.Namespace, command: str = SCRIPT) -> int:
    """Run or resume a staged training run from parsed arguments (full_run's or `pggan train`'s); returns the
    exit status. Errors are one line, prefixed with the program's name."""
    name = "full_run" if command == SCRIPT else command
    argv = argv_of(args)
    secrets = secret_override_values(args.overrides)

    def fail(message: str, code: int) -> int:
        print(f"{name}: error: {redact_secrets(message, secrets)}", file=sys.stderr)
        return code

    try:
        cfg = config_from_args(args)
        run_id = runs.check_run_id(args.run_id) if args.run_id else runs.new_run_id()
    except (ConfigError, runs.RunError) as e:
        return fail(one_line(e), 2)
    from pggan.storage_checks import IngestError
    from pipelines.preflight import PreflightError
    from pipelines.train_stage import StageFailedError

    again = resume_command(argv, run_id, command)
    try:
        full_run(cfg, run_id, argv, command=command)
    except PreflightError as e:
        for problem in e.problems:
            fail(problem, 2)
        return 2
    except (runs.RunError, ConfigError) as e:
        return fail(one_line(e), 2)
    except (IngestError, StageFailedError) as e:
        return fail(f"{e}. Finished stages are kept; after fixing the cause, resume with: {again}", 1)
    except RegistrationError as e:
        return fail(f"{e}. Every stage is trained and kept (run.json says registration: failed). Once the cause is "
                    f"fixed (e.g. the tracking server is reachable again), register it with: {again} (no stage is "
                    "trained again)", 1)
    except INTERRUPTS:
        return fail(f"interrupted; finished stages are kept. Resume with: {again}", 130)
    except Exception as e:  # a tracking error: one line, the traceback is not the user's problem
        # Matched by class: it is raised in this process (the hooks' check and hand-offs run here, never in a Ray
        # task), so it arrives unwrapped. Imported only here: pggan.tracking loads MLflow (seconds), and a run
        # without tracking never loads it, so then `e` cannot be one.
        from pggan.tracking.client import TrackingError
        if not isinstance(e, TrackingError):
            raise
        return fail(str(e), 1)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
