"""docs/architecture.md stays true with the code: every repository path it names exists, every `pggan.*` /
`pipelines.*` name is a module, a module's top-level name or a string the code uses (an MLflow tag such as
`pggan.eval_seed`), and every `path.py::name` names something defined in that file. A module moved or renamed
without the doc fails here with the stale names listed."""
from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "architecture.md"
TOPS = ("pggan", "pipelines", "tests", "benchmarks", "cluster", "scripts", "docs")

# A path starting at one of the repository's folders; not the tail of a URL or a bigger path (s3://pggan/x).
PATH = re.compile(r"(?<![\w/:.@-])(?:%s)/[\w./*{}-]*(?:::\w+)?" % "|".join(TOPS))
DOTTED = re.compile(r"(?<![\w/:.@-])(?:pggan|pipelines)(?:\.\w+)+")


def doc_text() -> str:
    return DOC.read_text()


def module_path(name: str) -> Path | None:
    base = REPO.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


@cache
def top_level_names(path: Path) -> frozenset[str]:
    """Names a module defines at top level: functions, classes, assignments, imports."""
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return frozenset(names)


@cache
def code_strings() -> frozenset[str]:
    """Every string constant in the project's modules (tag names, model names, console-script targets)."""
    out: set[str] = set()
    for path in [*REPO.joinpath("pggan").rglob("*.py"), *REPO.joinpath("pipelines").rglob("*.py"),
                 REPO / "pyproject.toml"]:
        if path.suffix == ".toml":
            out |= set(re.findall(r'"([^"]+)"', path.read_text()))
            continue
        out |= {n.value for n in ast.walk(ast.parse(path.read_text()))
                if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    return frozenset(out)


def path_problem(ref: str) -> str | None:
    path, _, name = ref.rstrip(".,;").partition("::")
    if "{" in path:                                   # a pattern such as pggan/presets/{name}.yaml
        path = path.split("{")[0]
    matches = list(REPO.glob(path)) if "*" in path else [REPO / path] if (REPO / path).exists() else []
    if not matches:
        return f"{ref}: no such file or folder"
    if name and name not in top_level_names(matches[0]):
        return f"{ref}: {path} defines no top-level {name!r}"
    return None


def dotted_problem(ref: str) -> str | None:
    parts = ref.split(".")
    for i in range(len(parts), 0, -1):
        path = module_path(".".join(parts[:i]))
        if path is not None:
            break
    else:
        path, i = None, 0
    if path is not None and i == len(parts):
        return None
    if path is not None and i >= 2 and parts[i] in top_level_names(path):
        return None                                   # a module attribute, e.g. pggan.train_step.train_step
    if ref in code_strings() or ref.split(":")[0] in code_strings():
        return None                                   # a name the code uses as a string, e.g. a registry tag
    return f"{ref}: neither a module, a module's top-level name nor a string the code uses"


def test_the_doc_names_paths_and_modules_at_all():
    text = doc_text()
    assert len(PATH.findall(text)) > 20 and len(DOTTED.findall(text)) > 10, "the patterns no longer match the doc"


def test_every_path_in_the_doc_exists():
    problems = sorted({p for ref in PATH.findall(doc_text()) if (p := path_problem(ref))})
    assert not problems, "docs/architecture.md names paths the code does not have:\n" + "\n".join(problems)


def test_every_module_name_in_the_doc_exists():
    problems = sorted({p for ref in DOTTED.findall(doc_text()) if (p := dotted_problem(ref))})
    assert not problems, "docs/architecture.md names modules the code does not have:\n" + "\n".join(problems)


def test_the_checks_catch_stale_names():
    assert path_problem("pggan/training.py") is not None
    assert path_problem("pggan/tracking/runs.py::no_such_function") is not None
    assert path_problem("pggan/tracking/runs.py::stage_metrics") is None
    assert dotted_problem("pggan.runlog") is not None
    assert dotted_problem("pggan.tracking_hooks") is not None
    assert dotted_problem("pggan.train_step.no_such_name") is not None
    assert dotted_problem("pggan.train_step.train_step") is None
    assert dotted_problem("pggan.eval_seed") is None                 # a registry tag the code writes
