"""Imports run one way (docs/architecture.md): `pipelines/` (Ray) -> `pggan/` (the library), the command line on top
of both. Read from the source (AST), so it holds for every import statement wherever it is written: at module
level, inside a function, under `if TYPE_CHECKING:`, and `importlib.import_module("literal")`.

Rules: nothing under pggan/ imports ray or pipelines; nothing under pipelines/ but the command line itself imports
the command line; no import cycle among the project's modules; no module over MAX_LINES lines. Each failure names
the modules (and lines) to change. The rules are functions of a folder, so the last tests run them on a tiny fake
tree to show each one catches what it is meant to.
"""
from __future__ import annotations

import ast
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("pggan", "pipelines")          # the project's modules; benchmarks/ and tests/ may import anything
LIBRARY, RAY_LAYER = "pggan", "pipelines"
FORBIDDEN_IN_LIBRARY = ("ray", "pipelines")
COMMAND_LINES = ("pipelines.cli", "pggan.cli")   # the command line module (pggan.cli until it moved out)
MAX_LINES = 400


@dataclass(frozen=True)
class Import:
    source: str            # the importing module, e.g. "pggan.progressive"
    name: str              # the dotted name as imported, e.g. "pggan.stage_nets.build_stage"
    line: int


def project_modules(root: Path) -> dict[str, Path]:
    """{"pggan.nn.networks": path, "pggan.nn": path of its __init__.py, ...} for the project's packages."""
    mods = {}
    for top in PACKAGES:
        for folder, _, files in os.walk(root / top):        # symlinked folders (pipelines/configs) are not walked
            for f in sorted(files):
                if f.endswith(".py"):
                    path = Path(folder) / f
                    name = ".".join(path.relative_to(root).with_suffix("").parts)
                    mods[name.removesuffix(".__init__")] = path
    return mods


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def imports_of(module: str, path: Path) -> list[Import]:
    """Every import in the file, relative ones made absolute; `from a import b` yields both a and a.b."""
    package = module if _is_package(path) else module.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[:len(parts) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names if a.name != "*"]
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and ((isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                   or (isinstance(node.func, ast.Name) and node.func.id in ("import_module", "__import__")))):
            names = [node.args[0].value]
        out += [Import(module, n, node.lineno) for n in names if n]
    return out


def _resolve(name: str, mods: dict[str, Path]) -> str | None:
    """The project module a dotted name lands in (its longest module prefix), or None outside the project."""
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def _within(name: str, top: str) -> bool:
    return name == top or name.startswith(top + ".")


def import_edges(root: Path) -> tuple[dict[str, Path], list[Import], dict[str, dict[str, int]]]:
    """The modules, every import, and the graph {importer: {imported module: first line}} among the modules."""
    mods = project_modules(root)
    imports = [i for m, p in mods.items() for i in imports_of(m, p)]
    edges: dict[str, dict[str, int]] = {m: {} for m in mods}
    for i in imports:
        target = _resolve(i.name, mods)
        if target is not None and target != i.source:
            edges[i.source].setdefault(target, i.line)
    return mods, imports, edges


# ----------------------------------------------------------------------------------------------------------------
# The rules: each returns one line per problem, naming the modules.

def library_breaches(root: Path) -> list[str]:
    mods, imports, _ = import_edges(root)
    found: dict[tuple[str, int], str] = {}                 # (module, line) -> the shortest forbidden name there
    for i in imports:
        if _within(i.source, LIBRARY) and any(_within(i.name, f) for f in FORBIDDEN_IN_LIBRARY):
            key = (i.source, i.line)
            found[key] = min(found.get(key, i.name), i.name, key=len)
    return [f"{m} ({mods[m].relative_to(root)}:{line}) imports {name}: the library {LIBRARY}/ must not import "
            f"{' or '.join(FORBIDDEN_IN_LIBRARY)}; move that code to {RAY_LAYER}/"
            for (m, line), name in sorted(found.items())]


def command_line_breaches(root: Path) -> list[str]:
    mods, _, edges = import_edges(root)
    return sorted(f"{src} ({mods[src].relative_to(root)}:{line}) imports the command line {dst}: only the "
                  f"command line may import the pipelines' modules, never the reverse"
                  for src, targets in edges.items() if _within(src, RAY_LAYER) and src not in COMMAND_LINES
                  for dst, line in targets.items() if dst in COMMAND_LINES)


def _strongly_connected(edges: dict[str, dict[str, int]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative: the groups of modules that reach each other (2 or more)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(edges[w]))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    group = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        group.append(w)
                        if w == v:
                            break
                    if len(group) > 1:
                        groups.append(sorted(group))
    return sorted(groups)


def _shortest_cycle(first: str, group: list[str], edges: dict[str, dict[str, int]]) -> list[str]:
    """A shortest path first -> ... -> first inside the group (breadth first)."""
    members, came_from, frontier = set(group), {first: None}, [first]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(edges[v]):
                if w == first:
                    path = [v]
                    while came_from[path[-1]] is not None:
                        path.append(came_from[path[-1]])
                    return list(reversed(path)) + [first]
                if w in members and w not in came_from:
                    came_from[w] = v
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no cycle through {first} in {group}")   # cannot happen for a strongly connected group


def import_cycles(root: Path) -> list[str]:
    _, _, edges = import_edges(root)
    out = []
    for group in _strongly_connected(edges):
        cycle = _shortest_cycle(group[0], group, edges)
        steps = " -> ".join(f"{a}:{edges[a][b]}" for a, b in zip(cycle, cycle[1:])) + f" -> {cycle[-1]}"
        out.append(f"import cycle among {len(group)} modules {group}, e.g. {steps} (module:line of each import): "
                   "make one side import the other only, or move what both need into a module importing neither")
    return out


def oversized_modules(root: Path) -> list[str]:
    out = []
    for m, p in project_modules(root).items():
        lines = len(p.read_text().splitlines())
        if lines > MAX_LINES:
            out.append(f"{m} ({p.relative_to(root)}) has {lines} lines, over {MAX_LINES}: split it by job")
    return sorted(out)


def _report(problems: list[str]) -> str:
    return f"{len(problems)} problem(s):\n" + "\n".join(problems)


# ----------------------------------------------------------------------------------------------------------------
# The project.

def test_the_project_has_modules_to_check():
    mods = project_modules(REPO)
    assert {"pggan.config", "pggan.train_step", "pipelines.full_run"} <= set(mods)


@pytest.mark.parametrize("rule", [library_breaches, command_line_breaches, import_cycles, oversized_modules],
                         ids=["library imports neither ray nor pipelines",
                              "pipelines never import the command line", "no import cycle", "no module over the limit"])
def test_the_project_keeps_the_rule(rule):
    problems = rule(REPO)
    assert not problems, _report(problems)


# ----------------------------------------------------------------------------------------------------------------
# Each rule on a tiny fake tree: it finds the breach and names the modules.

def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


CLEAN = {
    "pggan/__init__.py": "",
    "pggan/config.py": "import yaml\n",
    "pggan/nn/__init__.py": "from .layers import conv\n",
    "pggan/nn/layers.py": "from pggan.config import x\n",
    "pggan/step.py": "from pggan import config\nfrom pggan.nn import conv\n",
    "pipelines/__init__.py": "",
    "pipelines/stage.py": "import ray\nfrom pggan.step import step\n",
    "pipelines/cli.py": "def main():\n    from pipelines import stage\n",
}


def test_a_clean_fake_tree_passes_every_rule(tmp_path):
    root = _tree(tmp_path, CLEAN)
    assert (library_breaches(root), command_line_breaches(root), import_cycles(root), oversized_modules(root)) \
        == ([], [], [], [])
    assert import_edges(root)[2]["pggan.nn"] == {"pggan.nn.layers": 1}        # the relative import resolved


@pytest.mark.parametrize("text, imported", [
    ("import ray\n", "ray"),
    ("def f():\n    import ray.train\n", "ray.train"),                       # inside a function
    ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pipelines.stage import S\n", "pipelines.stage"),
    ("import importlib\nm = importlib.import_module('pipelines.stage')\n", "pipelines.stage"),
])
def test_the_library_rule_catches_ray_or_pipelines_wherever_imported(tmp_path, text, imported):
    root = _tree(tmp_path, {**CLEAN, "pggan/leaky.py": text})
    problems = library_breaches(root)
    assert len(problems) == 1 and problems[0].startswith(f"pggan.leaky (pggan{os.sep}leaky.py:")
    assert f"imports {imported}:" in problems[0]


def test_the_command_line_rule_names_the_pipeline_module_that_imports_it(tmp_path):
    root = _tree(tmp_path, {**CLEAN, "pipelines/ingest.py": "def add_args(p):\n    from pipelines.cli import x\n"})
    assert command_line_breaches(root) == [
        f"pipelines.ingest (pipelines{os.sep}ingest.py:2) imports the command line pipelines.cli: only the command "
        "line may import the pipelines' modules, never the reverse"]


def test_the_cycle_rule_names_the_modules_of_a_cycle_through_a_function_level_import(tmp_path):
    root = _tree(tmp_path, {**CLEAN,
                            "pggan/a.py": "from pggan import b\n",
                            "pggan/b.py": "import os\n\ndef f():\n    from . import c\n",
                            "pggan/c.py": "from pggan.a import thing\n"})
    problems = import_cycles(root)
    assert len(problems) == 1
    assert "['pggan.a', 'pggan.b', 'pggan.c']" in problems[0]
    assert "pggan.a:1 -> pggan.b:4 -> pggan.c:1 -> pggan.a (module:line of each import)" in problems[0]


def test_the_line_rule_names_the_long_module(tmp_path):
    root = _tree(tmp_path, {**CLEAN, "pipelines/big.py": "x = 1\n" * (MAX_LINES + 1),
                            "pipelines/fits.py": "x = 1\n" * MAX_LINES})
    assert oversized_modules(root) == [
        f"pipelines.big (pipelines{os.sep}big.py) has {MAX_LINES + 1} lines, over {MAX_LINES}: split it by job"]
