"""Every shell command in README.md's ```bash blocks is exercised, so the README cannot drift from the code.

RULES decides how, by the command's first words: RUN runs it for real in a temporary directory (only commands that
take seconds); CHECK does not run it (it needs a cluster, a server, a bucket, a trained model or long training)
but checks its bash syntax, that the repository files it names exist, its options with the real argument parser,
and its --config/--set with load_config (and what else the command would validate first). A command no rule
matches fails, naming its README line and how to classify it.
"""
from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
RUN, CHECK = "run", "check"
THIS = "tests/integration/test_readme_commands.py"

# (pattern matched at the start of the command, RUN or CHECK, why: what a RUN shows or what a CHECK's command needs)
RULES = [
    (r".*\s(-h|--help)$", RUN, "prints usage"),
    (r"pggan summary\b", RUN, "prints the network tables in seconds"),
    (r"pggan ingest --source \./photos\b", RUN, "ingests a folder of a few small images (set up by the test)"),
    (r"(python pipelines/full_run\.py|pggan train)\b", CHECK, "trains for minutes (demo) to days (paper)"),
    (r"(python pipelines/tune_schedule\.py|pggan tune)\b", CHECK, "a sweep trains several runs"),
    (r"(python pipelines/ingest\.py|pggan ingest)\b", CHECK, "reads a bucket or a folder of the user's"),
    (r"(python pipelines/evaluate\.py|pggan (generate|evaluate))\b", CHECK, "needs a trained, registered model"),
    (r"pggan status\b", CHECK, "needs a run's manifest (run.json) under the root"),
    (r"pggan make-demo-data\b", CHECK, "writes 2000 images by default (seconds to a minute)"),
    (r"mlflow models serve\b", CHECK, "starts a model server for a registered model"),
    (r"ray job submit\b", CHECK, "needs a running Ray cluster (the command it submits is checked too)"),
    (r"ray (up|down|dashboard|job logs)\b", CHECK, "needs AWS credentials and a cluster"),
    (r"python cluster/local/localcluster\.py\b", CHECK, "starts or stops a multi-node cluster"),
    (r"bash scripts/(demo|test)\.sh\b", CHECK, "installs packages and runs for minutes"),
    (r"(source|export)\b", CHECK, "sets up the user's shell for the commands after it"),
    (r"(docker|helm|kubectl)\b", CHECK, "needs Docker or a Kubernetes cluster"),
]

# Placeholders for shell expansions when a command is parsed without a shell: $VAR, ${VAR}, $(...).
_EXPANSION = re.compile(r"\$\([^)]*\)|\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*")
PLACEHOLDER = "/placeholder"
# pipelines/X.py is `pggan Y` with the same parser.
SCRIPTS = {"pipelines/full_run.py": "train", "pipelines/tune_schedule.py": "tune", "pipelines/ingest.py": "ingest",
           "pipelines/evaluate.py": "evaluate"}


@dataclass(frozen=True)
class Command:
    line: int                            # README line where the command starts
    text: str                            # one logical line (continuations joined), without its comment

    @property
    def words(self) -> list[str]:
        return shlex.split(_EXPANSION.sub(PLACEHOLDER, self.text), comments=True)


def readme_commands(text: str) -> list[Command]:
    """The commands of every ```bash block: continuation lines joined; blank and comment-only lines skipped;
    `a && b` and `a; b` are separate commands."""
    out, block, pending, start = [], False, "", 0
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip().startswith("```"):
            block = line.strip() == "```bash" if not block else False
            continue
        if not block:
            continue
        if not pending:
            start = n
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        code, pending = re.split(r"(?:^|\s)#\s", pending.strip(), maxsplit=1)[0].strip(), ""   # comment dropped
        out += [Command(start, part.strip()) for part in re.split(r"\s(?:&&|;)\s", code) if part.strip()]
    return out


COMMANDS = readme_commands(README.read_text())


def rule_for(cmd: Command) -> tuple[str, str]:
    for pattern, mode, why in RULES:
        if re.match(pattern, cmd.text):
            return mode, why
    pytest.fail(f"README.md line {cmd.line}: no rule says how to test `{cmd.text}`. Add one to RULES in {THIS}: "
                f"(r'<its first words>', RUN, '<what it shows>') if it runs in seconds in a temporary directory, "
                f"else (r'<its first words>', CHECK, '<what it needs: a cluster, a server, a bucket, a trained "
                f"model, long training>') to check its syntax, files, options and config without running it")


# ----------------------------------------------------------------------------------------------------------------
# CHECK: syntax, files, options, config.

def check_syntax(cmd: Command) -> None:
    out = subprocess.run(["bash", "-n", "-c", cmd.text], capture_output=True, text=True)
    assert out.returncode == 0, f"README.md line {cmd.line}: `{cmd.text}` is not valid bash: {out.stderr}"


def tracked_top_level() -> set[str]:
    """The repository's top-level files and folders (as git knows them: nothing built or downloaded)."""
    listing = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    return {p.split("/")[0] for p in listing.split()}


def check_files(cmd: Command) -> None:
    """Arguments that name a file of the repository (pipelines/..., cluster/..., ray_config.yaml) must exist."""
    tracked = tracked_top_level()
    for word in cmd.words:
        path = word.split("=", 1)[-1]
        if PLACEHOLDER not in path and path.split("/")[0] in tracked:
            assert (REPO / path).exists(), f"README.md line {cmd.line}: `{cmd.text}` names {path}, which is missing"


def pggan_argv(words: list[str]) -> list[str] | None:
    """The `pggan` arguments a command amounts to (pipelines/X.py is a pggan subcommand), else None."""
    if words[0] == "pggan":
        return words[1:]
    if words[0] == "python" and len(words) > 1 and words[1] in SCRIPTS:
        return [SCRIPTS[words[1]], *words[2:]]
    return None


def check_options_and_config(cmd: Command, words: list[str]) -> None:
    """Parse with the real parser, then validate the config as the command would before doing anything."""
    from pipelines.cli import build_parser

    argv = pggan_argv(words)
    if argv is None:
        if words[0] == "python" and len(words) > 1 and words[1].endswith(".py"):
            check_options_in_help(cmd, words)
        return
    err, args = io.StringIO(), None
    try:
        with contextlib.redirect_stderr(err):
            args = build_parser().parse_args(argv)
    except SystemExit:                                    # argparse's way to say the options are wrong
        pass
    if args is None:
        why = err.getvalue().strip().splitlines()[-1:] or ["(no message)"]
        pytest.fail(f"README.md line {cmd.line}: `{cmd.text}` does not parse: {why[0]}")
    try:
        check_config(args)
    except ValueError as e:                               # ConfigError, RunError
        pytest.fail(f"README.md line {cmd.line}: `{cmd.text}` has a bad setting: {e}")


def check_options_in_help(cmd: Command, words: list[str]) -> None:
    """Another script: every --option the command uses is one its --help lists."""
    out = subprocess.run([sys.executable, words[1], "--help"], cwd=REPO, capture_output=True, text=True,
                         timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, f"README.md line {cmd.line}: `{words[1]} --help` failed: {out.stderr[-2000:]}"
    for option in (w.split("=", 1)[0] for w in words[2:] if w.startswith("--")):
        assert re.search(rf"{re.escape(option)}\b", out.stdout), \
            f"README.md line {cmd.line}: `{cmd.text}` uses {option}, which `{words[1]} --help` does not list"


def check_config(args) -> None:
    """What the command validates before it does anything."""
    if not hasattr(args, "overrides"):
        return
    if args.command == "ingest":
        from pipelines.ingest import config_from_args

        config_from_args(args)
        return
    from pggan.config import load_config

    cfg = load_config(args.config, args.overrides)
    if args.command == "tune":
        from pggan import sweep as sw

        sw.build_space(cfg, fade=args.fade_kimg, stabilize=args.stabilize_kimg, total=args.total_kimg,
                       per_res=args.per_res, search=args.search)
    if args.command == "train" and args.run_id:
        from pggan.run_manifest import check_run_id

        check_run_id(args.run_id)


def check_command(cmd: Command) -> None:
    check_syntax(cmd)
    check_files(cmd)
    words = cmd.words
    if words[0] == "bash" and len(words) > 1:             # the script it runs must be valid bash too
        out = subprocess.run(["bash", "-n", words[1]], cwd=REPO, capture_output=True, text=True)
        assert out.returncode == 0, f"README.md line {cmd.line}: {words[1]} is not valid bash: {out.stderr}"
    if words[:3] == ["ray", "job", "submit"]:             # the submitted command is a README command too
        assert "--" in words, f"README.md line {cmd.line}: `{cmd.text}` has no `-- COMMAND` to submit"
        inner = Command(cmd.line, shlex.join(words[words.index("--") + 1:]))
        rule_for(inner)
        words = inner.words
        cmd = inner
    check_options_and_config(cmd, words)


# ----------------------------------------------------------------------------------------------------------------
# RUN: for real, in a temporary directory that sees the repository's top-level files.

def make_photos(folder: Path) -> None:
    """Two classes (sub-folders) of small non-square photos, for `pggan ingest --source ./photos ...`."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in ("cats", "dogs"):
        (folder / label).mkdir(parents=True)
        for i in range(3):
            pixels = rng.integers(0, 256, size=(144, 176, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / label / f"{i}.jpg")


SETUPS = {"pggan ingest --source ./photos": lambda cwd: make_photos(cwd / "photos")}


def run_command(cmd: Command, cwd: Path) -> subprocess.CompletedProcess:
    for name in tracked_top_level():                      # pipelines/configs/... etc. resolve as in a checkout
        if not (cwd / name).exists():
            (cwd / name).symlink_to(REPO / name)
    for prefix, setup in SETUPS.items():
        if cmd.text.startswith(prefix):
            setup(cwd)
    words = cmd.words
    program = [sys.executable, "-m", "pipelines.cli"] if words[0] == "pggan" else \
        [sys.executable] if words[0] == "python" else [words[0]]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS" and not k.startswith("MLFLOW_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return subprocess.run([*program, *words[1:]], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


# ----------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cmd", COMMANDS, ids=[f"L{c.line}-{c.text.split()[0]}-{i}" for i, c in enumerate(COMMANDS)])
def test_every_readme_command_runs_or_checks(cmd: Command, tmp_path: Path) -> None:
    mode, _ = rule_for(cmd)
    if mode == CHECK:
        check_command(cmd)
        return
    check_syntax(cmd)
    check_files(cmd)
    out = run_command(cmd, tmp_path)
    assert out.returncode == 0, f"README.md line {cmd.line}: `{cmd.text}` exited {out.returncode}: " \
                                f"{(out.stdout + out.stderr)[-3000:]}"
    if cmd.text.startswith("pggan ingest --source ./photos"):
        import json

        (manifest,) = (tmp_path / "pggan-data" / "datasets").glob("*/manifest.json")
        data = json.loads(manifest.read_text())
        assert data["resolutions"] == [4, 8, 16, 32, 64, 128] and sorted(data["labels"]) == ["cats", "dogs"]


def test_the_readme_has_commands_and_its_checkpoint_paths_are_what_a_run_writes():
    from pggan.checkpoint import dir_name

    assert len(COMMANDS) >= 10                             # the extraction found the README's commands
    text = README.read_text()
    example = dir_name(12000)                              # nimg-0000012000
    for folder in re.findall(r"stages/r\d{4}/([^\s`/]+)", text):
        assert folder == "…" or re.fullmatch(re.sub(r"\d", r"\\d", example), folder), \
            f"README.md names a checkpoint folder {folder!r}; a run writes {example!r} (pggan.checkpoint.dir_name)"
