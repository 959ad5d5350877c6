"""The import graph: each DVC stage depends on exactly the code it runs, no cycles, no library module imports up.

Imports are read from the source with ``ast`` (module level and inside functions,
since a lazy import runs too), so the test needs no torch and sees every path.
A package data file (a non-Python file under ``src/convbench``, such as the
report's template) is code too: a stage needs it when a module it imports names
the file in a string literal.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = SRC / "convbench"
DATA_STAGES = ("unzip", "cache", "split")


def module_file(name: str) -> Path | None:
    """The file of module ``name`` (a package's ``__init__.py``), or None if it is not a module of ours."""
    path = SRC.joinpath(*name.split("."))
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return None


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def direct_imports(path: Path) -> frozenset[str]:
    """The ``convbench`` modules ``path`` imports anywhere in its body (``from a import b``: ``a.b`` if a module)."""
    tree = ast.parse(path.read_text(), str(path))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(n for n in names if n.startswith("convbench") and module_file(n))
    return frozenset(found)


def data_files() -> set[Path]:
    """The package's non-Python files."""
    return {p for p in PACKAGE.rglob("*") if p.is_file() and p.suffix not in {".py", ".pyc"}
            and "__pycache__" not in p.parts}


@cache
def named_data(path: Path) -> frozenset[Path]:
    """The package data files whose name module ``path`` spells out in a string literal (so it reads them)."""
    strings = {node.value for node in ast.walk(ast.parse(path.read_text(), str(path)))
               if isinstance(node, ast.Constant) and isinstance(node.value, str)}
    return frozenset(p for p in data_files() if p.name in strings)


def with_parents(name: str) -> set[str]:
    """Importing ``a.b.c`` runs ``a``, ``a.b`` and ``a.b.c``."""
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)}


def closure(start: str) -> set[Path]:
    """Every module of ours that running module ``start`` can import."""
    seen: set[str] = set()
    todo = list(with_parents(start))
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for imported in direct_imports(module_file(name)):
            todo.extend(with_parents(imported) - seen)
    return {module_file(n) for n in seen}


def stages() -> dict[str, tuple[str, set[Path]]]:
    """``stage@item`` -> (its ``python -m`` module, the src files its deps cover)."""
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    out = {}
    for name, stage in spec.items():
        items = stage.get("foreach", [None])
        body = stage.get("do", stage)
        for item in items:
            cmd = body["cmd"].replace("${item}", str(item))
            module = re.search(r"python -m (\S+)", cmd).group(1)
            covered: set[Path] = set()
            for dep in body.get("deps", []):
                path = ROOT / dep.replace("${item}", str(item))
                if path.is_dir():
                    covered |= {p for p in path.rglob("*.py") if "__pycache__" not in p.parts}
                    covered |= {p for p in data_files() if path in p.parents}
                elif path.suffix == ".py" or path in data_files():
                    covered.add(path)
            out[f"{name}@{item}" if item else name] = (module, covered)
    return out


def rel(paths: set[Path]) -> list[str]:
    return sorted(str(p.relative_to(ROOT)) for p in paths)


def test_every_stage_depends_on_exactly_the_code_it_imports() -> None:
    problems = []
    for stage, (module, covered) in stages().items():
        needed = closure(module)
        needed |= {data for path in needed for data in named_data(path)}
        if missing := needed - covered:
            problems.append(f"{stage}: dvc.yaml deps miss {rel(missing)}")
        if extra := covered - needed:
            problems.append(f"{stage}: dvc.yaml deps list code it never imports {rel(extra)}")
    assert not problems, "\n".join(problems)


def test_data_stages_import_no_models_training_or_evaluation() -> None:
    for stage in DATA_STAGES:
        heavy = [p for p in closure(f"convbench.stages.{stage}")
                 if p.relative_to(PACKAGE).parts[0] in {"models", "training", "evaluation", "tracking"}]
        assert not heavy, f"{stage} imports {rel(set(heavy))}"


def test_data_stages_read_only_the_data_params() -> None:
    """A model's formula or section can change without re-running unzip, cache and split."""
    for stage in DATA_STAGES:
        modules = closure(f"convbench.stages.{stage}")
        assert PACKAGE / "families.py" not in modules and PACKAGE / "params.py" not in modules, stage


def imports_of(package: str) -> set[str]:
    """Every ``convbench`` module that some module of ``package`` imports directly."""
    return {n for p in (PACKAGE / package).rglob("*.py") for n in direct_imports(p)}


def top_level_imports(path: Path) -> set[str]:
    """The first name of every absolute import anywhere in ``path`` (``torch`` for ``from torch.nn import ...``)."""
    tree = ast.parse(path.read_text(), str(path))
    names = {a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
    names |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
              and not node.level}
    return {name.split(".")[0] for name in names}


def test_layers_only_point_down() -> None:
    """Tracking replays a model without training; training never reaches into evaluation or tracking's callers."""
    assert not {n for n in imports_of("tracking") if n.startswith("convbench.training")}
    assert not {n for n in imports_of("training") if n.startswith("convbench.evaluation")}
    assert not {n for n in imports_of("models") if n.startswith(("convbench.training", "convbench.evaluation"))}


def test_the_file_helpers_need_no_torch() -> None:
    """Atomic writes and JSON are used by every layer; importing them must not import torch."""
    for module in (PACKAGE / "files.py", PACKAGE / "data" / "params.py", PACKAGE / "config.py"):
        assert "torch" not in top_level_imports(module), module
        assert not {n for n in direct_imports(module) if n.startswith(("convbench.data.format", "convbench.models"))}


def test_no_library_module_imports_the_entry_points() -> None:
    entry = {"convbench.cli"} | {module_name(p) for p in (PACKAGE / "stages").glob("*.py")}
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if module_name(path) in entry:
            continue
        if bad := sorted(n for n in direct_imports(path) if n in entry and n != "convbench.stages"):
            offenders.append(f"{module_name(path)} imports {bad}")
    assert not offenders, "\n".join(offenders)


def test_the_import_graph_has_no_cycle() -> None:
    graph = {module_name(p): {n for n in direct_imports(p) if n != module_name(p)} for p in PACKAGE.rglob("*.py")}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_the_checker_sees_lazy_and_package_imports() -> None:
    """A guard for the guard: a function-level import and a parent package's __init__ are both counted."""
    train = closure("convbench.stages.train")
    assert PACKAGE / "training" / "run.py" in train  # imported inside main()'s body
    assert PACKAGE / "models" / "__init__.py" in train and PACKAGE / "__init__.py" in train
    assert PACKAGE / "evaluation" / "report.py" not in train
    template = PACKAGE / "evaluation" / "templates" / "comparison.md.j2"
    assert named_data(PACKAGE / "evaluation" / "report.py") == {template}  # the report reads its template


def test_the_package_never_imports_the_benchmark() -> None:
    """bench/ is a tool of the checkout that measures the package; an installed package has no bench/ to import."""
    assert not list((PACKAGE / "bench").glob("*.py")), "the benchmark lives in bench/ at the top level"
    offenders = sorted(module_name(p) for p in PACKAGE.rglob("*.py") if "bench" in top_level_imports(p))
    assert not offenders, f"{offenders} import bench/"
