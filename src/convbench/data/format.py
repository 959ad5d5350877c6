"""On-disk formats shared by the data, training and evaluation stages.

The cache is one ``torch.save`` file of plain tensors, strings and numbers, so it
loads with ``weights_only=True`` and memory-maps: images stay uint8 until a batch
is on the training device.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from convbench.files import atomic_path, write_json

ORIGINS: tuple[str, ...] = ("all", "train", "val", "test")
"""Which folder of the archive an image came from (pre-split archives keep their split)."""


@dataclass(frozen=True)
class Cache:
    """The decoded dataset: ``images`` (N, 3, H, W) uint8, ``labels`` (N,) int64, and metadata."""

    images: torch.Tensor
    labels: torch.Tensor
    onehot: torch.Tensor
    classes: list[str]
    mean: torch.Tensor
    std: torch.Tensor
    counts: torch.Tensor
    origin: torch.Tensor
    files: list[str]
    skipped: list[list[str]]
    ignored: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` through a temporary file and an atomic rename."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def save_cache(path: Path, cache: Cache) -> None:
    """Write ``cache`` atomically (see :class:`Cache` for the fields)."""
    atomic_torch_save(
        {
            "images": cache.images.contiguous(),
            "labels": cache.labels,
            "onehot": cache.onehot,
            "classes": list(cache.classes),
            "mean": cache.mean,
            "std": cache.std,
            "counts": cache.counts,
            "origin": cache.origin,
            "files": list(cache.files),
            "skipped": [list(s) for s in cache.skipped],
            "ignored": list(cache.ignored),
        },
        path,
    )


def load_cache(path: Path) -> Cache:
    """Memory-map the cache written by :func:`save_cache`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no image cache; run `dvc repro cache` first")
    raw = torch.load(path, mmap=True, weights_only=True)
    return Cache(**raw)


def save_split(path: Path, split: dict[str, list[int]]) -> None:
    """Write sorted train/val/test index lists; same input gives the same bytes."""
    write_json(path, {name: sorted(int(i) for i in split[name]) for name in ("train", "val", "test")})


def load_split(path: Path) -> dict[str, torch.Tensor]:
    """The split as int64 index tensors keyed ``train``, ``val``, ``test``."""
    with Path(path).open() as fh:
        raw = json.load(fh)
    return {name: torch.tensor(raw[name], dtype=torch.long) for name in ("train", "val", "test")}
