"""``convbench recipe NAME``: a named set of params run as ordinary DVC experiments.

A recipe is ``conf/recipes/NAME.yaml``: ``params`` (params.yaml sections, merged
over the workspace's params.yaml) and ``runs``, a list of dotted overrides, one
DVC experiment each (``{}`` for none). Every run becomes one ``dvc exp run -S
key=value ...`` with the recipe's keys, the run's keys and the reader's own
``-S`` keys, so params.yaml stays the one file that holds a run's parameters and
``dvc exp show`` lists them like any other experiment. Runs go one after the
other in the workspace (a later run re-runs only the stages its keys change) or,
with ``--queue``, into DVC's queue. Each composed params set is validated before
DVC starts, so a bad key is one error line and nothing runs.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from convbench.config import ConfigError, flatten
from convbench.errors import ConvbenchError, run_stage
from convbench.params import Params, parse_params
from convbench.paths import project_root


@dataclass(frozen=True)
class Recipe:
    """One ``conf/recipes/NAME.yaml``: its description, its params and its runs (flat dotted keys)."""

    name: str
    description: str
    params: dict[str, Any]
    runs: list[dict[str, Any]]


def recipes_dir(root: Path | None = None) -> Path:
    return (root or project_root()) / "conf" / "recipes"


def apply(tree: Mapping[str, Any], flat: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of ``tree`` with each dotted key of ``flat`` set."""
    out = yaml.safe_load(yaml.safe_dump(dict(tree)))
    for dotted, value in flat.items():
        *path, leaf = dotted.split(".")
        node = out
        for part in path:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{dotted}: {part} is not a section")
        node[leaf] = value
    return out


def load_recipe(name: str, root: Path | None = None) -> Recipe:
    """Read ``conf/recipes/NAME.yaml``; an unknown name lists the known ones."""
    folder = recipes_dir(root)
    path = folder / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in folder.glob("*.yaml"))
        raise ConfigError(f"recipe {name!r}: no {path}; known recipes: {', '.join(known) or 'none'}")
    raw = yaml.safe_load(path.read_text()) or {}
    unknown = sorted(set(raw) - {"description", "params", "runs"})
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)}; valid keys: description, params, runs")
    runs = raw.get("runs") or [{}]
    return Recipe(name, str(raw.get("description", "")).strip(), raw.get("params") or {}, [dict(r or {}) for r in runs])


def compose(base: Mapping[str, Any], recipe: Recipe, run: int, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The params mapping of run ``run``: ``base``, then the recipe, the run's keys, the reader's overrides."""
    keys = {**flatten(recipe.params), **recipe.runs[run], **overrides}
    return apply(base, keys)


def parse_override(text: str) -> tuple[str, Any]:
    """``key=value`` with the value read as YAML (``false``, ``0.1``, ``data/x.zip``), as DVC reads ``-S``."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"-S {text!r}: expected key=value, e.g. -S data.archive=cnn_dataset.zip")
    return key.strip(), yaml.safe_load(value) if value else ""


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def commands(recipe: Recipe, overrides: Mapping[str, Any], *, queue: bool = False) -> list[list[str]]:
    """One ``dvc exp run`` per run: every recipe key, then the run's keys, then ``overrides``."""
    out = []
    for run in recipe.runs:
        keys = {**flatten(recipe.params), **run, **overrides}
        cmd = ["dvc", "exp", "run", *(["--queue"] if queue else [])]
        cmd += [arg for key, value in keys.items() for arg in ("-S", f"{key}={_value(value)}")]
        out.append(cmd)
    return out


def check(recipe: Recipe, base: Mapping[str, Any], overrides: Mapping[str, Any]) -> list[Params]:
    """Every run's composed params, validated (a bad key raises ConfigError naming it)."""
    parsed = []
    for i in range(len(recipe.runs)):
        try:
            parsed.append(parse_params(compose(base, recipe, i, overrides)))
        except ConfigError as exc:
            raise ConfigError(f"recipe {recipe.name!r}, run {i + 1}: {exc}") from None
    return parsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="convbench recipe", description=__doc__.splitlines()[0])
    parser.add_argument("name", nargs="?", help="a recipe in conf/recipes/ (omit to list them)")
    parser.add_argument("-S", "--set-param", action="append", default=[], metavar="KEY=VALUE",
                        help="one more params.yaml key for every run, e.g. -S data.archive=cnn_dataset.zip")
    parser.add_argument("--queue", action="store_true", help="queue the runs (dvc queue start runs them)")
    parser.add_argument("--dry-run", action="store_true", help="print the dvc commands without running them")
    args = parser.parse_args(argv)

    return run_stage("recipe", lambda: run_recipe(args.name, args.set_param, queue=args.queue, dry_run=args.dry_run))


def run_recipe(name: str | None, settings: list[str], *, queue: bool, dry_run: bool) -> None:
    """List the recipes (no name), or validate every run of ``name`` and then run (or print) its commands."""
    root = project_root()
    if not name:
        for path in sorted(recipes_dir(root).glob("*.yaml")):
            print(f"{path.stem}: {load_recipe(path.stem, root).description}")
        return
    recipe = load_recipe(name, root)
    overrides = dict(parse_override(text) for text in settings)
    base = yaml.safe_load((root / "params.yaml").read_text()) or {}
    check(recipe, base, overrides)
    for cmd in commands(recipe, overrides, queue=queue):
        print(shlex.join(cmd), flush=True)
        if not dry_run and subprocess.run(cmd, cwd=root).returncode != 0:
            raise ConvbenchError(f"recipe {name!r}: `{' '.join(cmd[:3])}` failed (its output is above)")


if __name__ == "__main__":
    sys.exit(main())
