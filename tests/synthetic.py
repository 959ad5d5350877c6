"""A tiny synthetic project for tests: data/cache.pt + data/split.json (and optionally params.yaml).

The images come from :func:`bench.synthetic.synthetic_cache`, the generator the benchmark uses too.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from bench.synthetic import synthetic_cache
from convbench.data.format import Cache, save_cache, save_split
from convbench.paths import Layout

SPLIT_FRACTIONS = (0.6, 0.2, 0.2)
"""Per-class train/val/test shares of the synthetic images."""


def synthetic_split(classes: int, per_class: int) -> dict[str, list[int]]:
    """Stratified split: the first 60% of each class train, the next 20% val, the rest test."""
    n_train = round(per_class * SPLIT_FRACTIONS[0])
    n_val = round(per_class * SPLIT_FRACTIONS[1])
    split: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for k in range(classes):
        first = k * per_class
        split["train"] += range(first, first + n_train)
        split["val"] += range(first + n_train, first + n_train + n_val)
        split["test"] += range(first + n_train + n_val, first + per_class)
    return split


def write_synthetic_project(
    base: Path, classes: int = 3, per_class: int = 40, size: int = 16, seed: int = 0
) -> Cache:
    """Write ``base``/data/cache.pt and ``base``/data/split.json; return the cache."""
    layout = Layout(Path(base))
    cache = synthetic_cache(classes, per_class, size, seed)
    save_cache(layout.cache, cache)
    save_split(layout.split, synthetic_split(classes, per_class))
    return cache


def write_params(base: Path, sections: dict[str, Any]) -> Path:
    """Write ``base``/params.yaml from a mapping of sections (omitted sections take defaults)."""
    path = Path(base) / "params.yaml"
    path.write_text(yaml.safe_dump(sections, sort_keys=False))
    return path


def killer_env(epoch: int) -> dict[str, str]:
    """Environment that makes a train stage SIGKILL itself after the checkpoint of ``epoch`` (tests/killer/)."""
    tests = Path(__file__).resolve().parent
    return {"CONVBENCH_KILL_AFTER_EPOCH": str(epoch),
            "PYTHONPATH": os.pathsep.join([str(tests / "killer"), str(tests.parent / "src")])}
