"""A tiny synthetic project for tests: data/cache.pt + data/split.json (and optionally params.yaml).

Each class is one colour (hues evenly spaced around the colour wheel) with
pixel noise and a faint class-specific stripe pattern, so even a tiny network
separates the classes within an epoch or two, and crops and flips keep the
label true.
"""

from __future__ import annotations

import colorsys
import os
from pathlib import Path
from typing import Any

import torch
import yaml

from convbench.data.format import Cache, save_cache, save_split
from convbench.paths import Layout

SPLIT_FRACTIONS = (0.6, 0.2, 0.2)
"""Per-class train/val/test shares of the synthetic images."""


def synthetic_cache(classes: int = 3, per_class: int = 40, size: int = 16, seed: int = 0) -> Cache:
    """An in-memory :class:`Cache` of ``classes * per_class`` RGB images, class-major order."""
    generator = torch.Generator().manual_seed(seed)
    images = []
    for k in range(classes):
        colour = torch.tensor(colorsys.hsv_to_rgb(k / classes, 0.8, 0.9)) * 255
        stripes = (torch.arange(size) // (k + 1) % 2).float() * 20 - 10
        base = colour.view(3, 1, 1) + stripes.view(1, 1, size)
        noise = torch.randn(per_class, 3, size, size, generator=generator) * 25
        images.append((base + noise).clamp(0, 255).round().to(torch.uint8))
    images_t = torch.cat(images)
    labels = torch.arange(classes).repeat_interleave(per_class)
    scaled = images_t.float() / 255
    names = [f"class{k}" for k in range(classes)]
    return Cache(
        images=images_t,
        labels=labels,
        onehot=torch.nn.functional.one_hot(labels, classes).to(torch.uint8),
        classes=names,
        mean=scaled.mean(dim=(0, 2, 3)),
        std=scaled.std(dim=(0, 2, 3)),
        counts=torch.full((classes,), per_class, dtype=torch.long),
        origin=torch.zeros(len(labels), dtype=torch.uint8),
        files=[f"{names[k]}/{j:04d}.png" for k in range(classes) for j in range(per_class)],
        skipped=[],
        ignored=[],
    )


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
