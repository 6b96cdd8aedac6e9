"""The `pggan` command line, on top of the library (pggan) and the Ray pipelines: one small (add_args, run) pair
per subcommand, registered in COMMANDS. Only the chosen subcommand's arguments are built, and each imports its
pipeline module inside its functions, so `pggan summary` or a bad config never imports Ray. Nothing imports this
module but the `pggan` console script (and `python -m pipelines.cli`)."""
from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

import yaml

from pggan.config import ConfigError
from pggan.config_args import add_config_args, add_tracking_uri_arg, config_from_args

AddArgs = Callable[[argparse.ArgumentParser], None]
Run = Callable[[argparse.Namespace], int]


# ----------------------------------------------------------------------------------------------------------------
# summary

def add_summary_args(parser: argparse.ArgumentParser) -> None:
    add_config_args(parser)
    parser.add_argument("--resolution", type=int, default=None,
                        help="resolution of the networks to tabulate (default: data.resolution)")
    parser.add_argument("--num-classes", type=int, default=0, metavar="K",
                        help="tabulate conditional networks for K classes (data.labels=folders: the data set's "
                             "class count); adds G's label embedding and D's K class logits (default 0)")
    parser.add_argument("--model", default=None, metavar="SOURCE",
                        help="tabulate a trained generator's networks instead of the config's: models:/NAME@ALIAS, "
                             "runs:/ID/generator or a checkpoint; prints its class names if conditional")
    add_tracking_uri_arg(parser)


def run_summary(args: argparse.Namespace) -> int:
    """Print Table-2-style layer tables (layer, activation, output shape, parameters) for G and D."""
    from pggan.nn.networks import check_resolution
    from pggan.nn.summary import summary_text

    cfg = config_from_args(args)
    if args.model:
        return _summarize_model(args, cfg)
    resolution = args.resolution or cfg.data.resolution
    try:
        check_resolution(resolution)
    except ValueError as e:
        raise ConfigError(f"--resolution: {e}") from None
    if args.num_classes < 0 or args.num_classes == 1:
        raise ConfigError(f"--num-classes {args.num_classes}: 0 (unconditional) or at least 2 classes")
    print(summary_text(cfg.model, resolution, args.num_classes))
    return 0


def _summarize_model(args: argparse.Namespace, cfg) -> int:
    """The tables of a trained generator (its own model config, resolution and classes) and its class names."""
    from pggan.generate import GenerateError, load_generator, tracking_uri_for
    from pggan.labels import generator_classes
    from pggan.nn.summary import summary_text

    try:
        G = load_generator(args.model, cfg.storage, tracking_uri_for(args.model, args.tracking_uri, cfg))
    except GenerateError as e:
        raise ConfigError(f"--model {args.model}: {e}") from None
    names = generator_classes(G)
    print(summary_text(G.model, G.resolution, len(names)))
    print(f"\nClasses ({len(names)}): " + ", ".join(f"{i}={n}" for i, n in enumerate(names)) if names
          else "\nUnconditional (no classes)")
    return 0


# ----------------------------------------------------------------------------------------------------------------
# generate (the work is in pggan.generate)

def add_generate_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True,
                        help="models:/NAME@ALIAS (e.g. models:/pggan@champion), runs:/ID/generator, or a "
                             "checkpoint directory/URL")
    parser.add_argument("--out", required=True, help="output path or URL (.png grid, .npy, .gif walk)")
    parser.add_argument("--num", type=int, default=64, help="images, or walks side by side (default 64)")
    parser.add_argument("--seed", type=int, default=0, help="latent seed; the same seed gives the same images")
    parser.add_argument("--format", choices=("png", "npy", "gif"), default=None,
                        help="png: grid; npy: raw uint8 [N,R,R,3] (a walk: [F,N,R,R,3]); gif: walk "
                             "(default: from --out's suffix)")
    parser.add_argument("--interpolate", type=int, default=0, metavar="STEPS",
                        help="a looping latent walk with STEPS frames between keyframes")
    parser.add_argument("--keyframes", type=int, default=4, help="latent points per walk (default 4)")
    parser.add_argument("--fps", type=float, default=12.0, help="GIF frames per second")
    parser.add_argument("--cols", type=int, default=None, help="grid columns (default: square)")
    parser.add_argument("--batch", type=int, default=64, help="images per generator call")
    parser.add_argument("--label", action="append", default=None, metavar="NAME|INDEX",
                        help="conditional models: the class to generate, by name or index; repeat it to take the "
                             "given classes in turn (default: every class in turn)")
    parser.add_argument("--per-class", type=int, default=None, metavar="N",
                        help="conditional models: N images of each class (or of each --label), one grid row per "
                             "class; replaces --num")
    style = parser.add_argument_group("StyleGAN (model.arch: stylegan)")
    style.add_argument("--truncation", type=float, default=1.0, metavar="PSI",
                       help="truncation psi: w' = w_avg + PSI * (w - w_avg) up to model.truncation_cutoff "
                            "(1 = none, the default; 0.7 the paper's; 0 = the mean-w image)")
    style.add_argument("--style-mix", default=None, metavar="ROWSxCOLS",
                       help="the style-mixing figure instead of a grid: ROWS row sources x COLS column sources, "
                            "for each of --mix-groups (e.g. 3x5)")
    style.add_argument("--mix-groups", nargs="+", choices=("coarse", "middle", "fine"), default=None,
                       help="crossover groups of --style-mix: coarse 4-8, middle 16-32, fine 64+ (default: those "
                            "the generator has)")
    style.add_argument("--noise", choices=("const", "random"), default=None,
                       help="per-pixel noise: const (stored in the model, the default) or random (drawn from "
                            "--seed, so still reproducible)")
    add_tracking_uri_arg(parser)
    add_config_args(parser)


def run_generate(args: argparse.Namespace) -> int:
    """Generate images from a registered model or a checkpoint: PNG grid, raw .npy, or GIF latent walk."""
    from pggan.generate import run

    return run(args, config_from_args(args))


# ----------------------------------------------------------------------------------------------------------------
# evaluate (the arguments are in pipelines/evaluate.py, the work in pggan.evaluation)

def add_evaluate_args(parser: argparse.ArgumentParser) -> None:
    from pipelines.evaluate import add_args

    add_args(parser)


def run_evaluate(args: argparse.Namespace) -> int:
    """Print one JSON line: SWD by resolution, swd_ratio and MS-SSIM of a generator against a data set."""
    from pipelines.evaluate import run

    return run(args, prog="pggan evaluate")


# ----------------------------------------------------------------------------------------------------------------
# ingest (the work is in pipelines/ingest.py) and make-demo-data (pggan.synthetic)

def add_ingest_args(parser: argparse.ArgumentParser) -> None:
    from pipelines.ingest import add_args

    add_args(parser)


def run_ingest(args: argparse.Namespace) -> int:
    """Ingest an image folder/bucket into per-resolution Parquet data sets (Ray Data); reuses a matching one."""
    from pipelines.ingest import run

    return run(args, prog="pggan ingest")


def add_make_demo_data_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="folder URL for the PNG files (local path, s3://, ...)")
    parser.add_argument("--count", type=int, default=2000, help="number of images (default 2000)")
    parser.add_argument("--size", type=int, default=64, help="side of each image in pixels (default 64)")
    parser.add_argument("--seed", type=int, default=0, help="the same seed gives the same images")
    parser.add_argument("--labels", action="store_true",
                        help="one sub-folder per shape kind (circle, square, triangle), each its own colour "
                             "scheme: a labelled data set for conditional runs (ingest with --labels folders)")
    add_config_args(parser)  # storage.* (S3 endpoint, keys) for --out


def run_make_demo_data(args: argparse.Namespace) -> int:
    """Write the built-in demo data set: coloured circles, squares and triangles on gradients, as PNG files."""
    from pggan.synthetic import write_synthetic_dataset

    if args.count < 1 or args.size < 4:
        raise ConfigError(f"--count must be >= 1 and --size >= 4, got --count {args.count} --size {args.size}")
    if args.labels and args.count < 3:
        raise ConfigError(f"--labels: --count {args.count} cannot give each of the 3 shape kinds an image; "
                          "use --count 3 or more")
    url = write_synthetic_dataset(args.out, args.count, args.size, args.seed, config_from_args(args).storage,
                                  labels=args.labels)
    kind = " in one folder per shape kind" if args.labels else ""
    print(f"wrote {args.count} images of {args.size}x{args.size} (seed {args.seed}){kind} to {url}")
    return 0


# ----------------------------------------------------------------------------------------------------------------
# train (the work is in pipelines/full_run.py)

def add_train_args(parser: argparse.ArgumentParser) -> None:
    from pipelines.full_run import add_args

    add_args(parser)


def run_train(args: argparse.Namespace) -> int:
    """Train every stage (ingest if needed, one Ray Train job per resolution) and register the generator."""
    from pipelines.full_run import run

    return run(args, command="pggan train")


# ----------------------------------------------------------------------------------------------------------------
# tune (the work is in pipelines/tune_schedule.py)

def add_tune_args(parser: argparse.ArgumentParser) -> None:
    from pipelines.tune_schedule import add_args

    add_args(parser)


def run_tune(args: argparse.Namespace) -> int:
    """Ray Tune search over the fade-in / stabilize lengths (each trial a staged run); writes the best config."""
    from pipelines.tune_schedule import run

    return run(args, prog="pggan tune")


# ----------------------------------------------------------------------------------------------------------------
# status (the work is in pggan.run_status)

def add_status_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_id", metavar="RUN_ID", help="the run's id (printed when it started)")
    parser.add_argument("--root", default=None, help="storage root the run is under (default: storage.root)")
    parser.add_argument("--json", action="store_true", help="print the status as one JSON object")
    add_config_args(parser)  # storage.* (S3 endpoint, keys) and storage.root


def run_status(args: argparse.Namespace) -> int:
    """Print a run's stages, images seen, metrics and where its checkpoints are (from its run.json)."""
    import json
    from dataclasses import replace

    from pggan import run_manifest as runs
    from pggan.run_status import format_status, run_status as status_of

    cfg = config_from_args(args)
    storage = replace(cfg.storage, root=args.root) if args.root else cfg.storage
    try:
        status = status_of(storage.root, args.run_id, storage)
    except runs.RunError as e:
        print(f"pggan status: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(status, indent=2) if args.json else format_status(status))
    return 0


# ----------------------------------------------------------------------------------------------------------------
# Registry and entry point.

COMMANDS: dict[str, tuple[AddArgs, Run]] = {
    "summary": (add_summary_args, run_summary),
    "generate": (add_generate_args, run_generate),
    "evaluate": (add_evaluate_args, run_evaluate),
    "ingest": (add_ingest_args, run_ingest),
    "train": (add_train_args, run_train),
    "make-demo-data": (add_make_demo_data_args, run_make_demo_data),
    "tune": (add_tune_args, run_tune),
    "status": (add_status_args, run_status),
}


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The `pggan` parser. Given the command line, only its subcommand's arguments are added (and only its
    pipeline module imported); without, every subcommand's."""
    chosen = next((a for a in argv if not a.startswith("-")), None) if argv is not None else None
    parser = argparse.ArgumentParser(prog="pggan", description="Progressive Growing of GANs on Ray.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (add_args, run) in COMMANDS.items():
        doc = (run.__doc__ or "").strip().splitlines()
        p = sub.add_parser(name, help=doc[0] if doc else None, description=doc[0] if doc else None)
        if argv is None or name == chosen:
            add_args(p)
        p.set_defaults(run=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `pggan` console script; returns the exit status (2 for a bad config)."""
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    try:
        return args.run(args)
    except (ConfigError, yaml.YAMLError) as e:
        message = " ".join(str(e).split())                     # one line, even for multi-line YAML errors
        print(f"pggan {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
