"""Where a report's numbers came from: code version, data version, non-default settings."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from convbench.config import to_dict
from convbench.data.params import DataParams
from convbench.params import EvalParams, Params, TrainParams
from convbench.paths import git_head


def git_commit(root: Path) -> str:
    """``HEAD``'s hash, noting uncommitted source/params changes; ``unknown`` outside git."""
    commit = git_head(root)
    if commit is None:
        return "unknown (not a git checkout, or no commit yet)"
    try:
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "src", "params.yaml", "dvc.yaml"],
            cwd=root, capture_output=True, text=True, check=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        dirty = ""
    changed = len(dirty.splitlines())
    return f"{commit} (+{changed} uncommitted change(s) to src/, params.yaml or dvc.yaml)" if changed else commit


def dataset_hash(lock_path: Path, archive: str, cache: str = "data/cache.pt") -> str | None:
    """The md5 DVC recorded for the dataset archive (a stage dependency), else for the image cache.

    Parses dvc.lock defensively: any unexpected shape just means "unknown" (None).
    """
    try:
        lock = yaml.safe_load(Path(lock_path).read_text())
    except (OSError, yaml.YAMLError):
        return None
    stages = lock.get("stages") if isinstance(lock, dict) else None
    if not isinstance(stages, dict):
        return None
    found: dict[str, str] = {}
    for stage in stages.values():
        if not isinstance(stage, dict):
            continue
        for kind in ("deps", "outs"):
            entries = stage.get(kind)
            for entry in entries if isinstance(entries, list) else []:
                if isinstance(entry, dict) and isinstance(entry.get("md5"), str):
                    found.setdefault(str(entry.get("path")), entry["md5"])
    if archive in found:
        return f"{found[archive]} (md5 of {archive})"
    if cache in found:
        return f"{found[cache]} (md5 of {cache})"
    return None


def _differences(section: str, current: dict[str, Any], default: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    return [(f"{section}.{k}", v, default.get(k)) for k, v in current.items() if default.get(k) != v]


def changed_params(params: Params) -> list[tuple[str, Any, Any]]:
    """``(key, value, shipped)`` for every parameter that differs from the shipped params.yaml.

    The code's defaults are the shipped file's values (tests/test_params.py), so comparing with them
    shows what an experiment changed.
    """
    rows = _differences("data", to_dict(params.data), to_dict(DataParams()))
    rows += _differences("train", to_dict(params.train), to_dict(TrainParams()))
    rows += _differences("evaluate", to_dict(params.evaluate), to_dict(EvalParams()))
    for family, config in params.models.items():
        rows += _differences(family, to_dict(config), to_dict(type(config)()))
    return rows
