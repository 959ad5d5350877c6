"""Stratified, seeded train/val/test split of the cache's indices.

Each class is split on its own, so every split keeps the class proportions (to
within one image). A pre-split archive keeps its folders: images from a ``test/``
folder are the test split and images from a ``val/`` folder the val split; only the
remaining images (``train/`` or a not-pre-split archive) are divided, using
``test_fraction`` only when there is no test folder and ``val_fraction`` only when
there is no val folder. E.g. CIFAR-10's train/test zip: test = its 10,000 test
images, val = ``val_fraction`` of its train folder per class, test_fraction unused.

Randomness comes from one NumPy Generator per class seeded with ``(seed, class)``,
so the result depends only on the labels, origins and params, and adding a class
does not reshuffle the others. ``max_per_class`` keeps the first N images of each
class in each split after that shuffle: a deterministic random subset for quick runs.
"""

from __future__ import annotations

import math

import numpy as np

from convbench.data.format import ORIGINS
from convbench.errors import ConvbenchError

SPLITS: tuple[str, ...] = ("train", "val", "test")


def _count(n: int, fraction: float) -> int:
    """``n * fraction`` rounded half up (Python's round() is half-to-even)."""
    return math.floor(n * fraction + 0.5)


def make_split(
    labels: np.ndarray,
    origin: np.ndarray,
    *,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    max_per_class: int = 0,
    classes: list[str] | None = None,
) -> dict[str, list[int]]:
    """Sorted index lists ``train``/``val``/``test`` over the cache (see the module docstring).

    ``labels`` (N,) and ``origin`` (N,) are the cache's; ``classes`` only names classes
    in error messages. Raises :class:`ConvbenchError` when a split that should hold
    images ends up empty, or a class has no training images.
    """
    labels = np.asarray(labels, dtype=np.int64)
    origin = np.asarray(origin, dtype=np.int64)
    given = {name: bool((origin == ORIGINS.index(name)).any()) for name in ("val", "test")}
    pool_mask = np.isin(origin, [ORIGINS.index("all"), ORIGINS.index("train")])
    num_classes = int(labels.max()) + 1 if len(labels) else 0
    names = classes or [str(c) for c in range(num_classes)]
    parts: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    for c in range(num_classes):
        rng = np.random.default_rng([seed, c])
        of_class = labels == c
        pool = rng.permutation(np.flatnonzero(of_class & pool_mask))
        n = len(pool)
        n_test = 0 if given["test"] else min(_count(n, test_fraction), max(n - 1, 0))
        n_val = 0 if given["val"] else min(_count(n, val_fraction), max(n - 1 - n_test, 0))
        chosen = {
            "test": pool[:n_test],
            "val": pool[n_test : n_test + n_val],
            "train": pool[n_test + n_val :],
        }
        for name in ("val", "test"):
            if given[name]:
                chosen[name] = rng.permutation(np.flatnonzero(of_class & (origin == ORIGINS.index(name))))
        if len(chosen["train"]) == 0 and of_class.any():
            raise ConvbenchError(f"class {names[c]!r} has no training images; add some to the archive's train/ folder")
        for name in SPLITS:
            parts[name].append(chosen[name][:max_per_class] if max_per_class else chosen[name])
    split = {s: sorted(int(i) for i in np.concatenate(parts[s] or [np.empty(0, np.int64)])) for s in SPLITS}
    fractions = {"val": val_fraction, "test": test_fraction}
    for name in ("val", "test"):
        if not split[name] and fractions[name] > 0:
            raise ConvbenchError(
                f"the {name} split is empty: too few images per class for data.{name}_fraction = "
                f"{fractions[name]}; add images or raise data.{name}_fraction"
            )
    return split


def describe_split(split: dict[str, list[int]], origin: np.ndarray) -> str:
    """One line: split sizes and which ones came from archive folders."""
    origin = np.asarray(origin)
    kept = [name for name in ("val", "test") if (origin == ORIGINS.index(name)).any()]
    sizes = ", ".join(f"{name} {len(split[name]):,}" for name in SPLITS)
    source = f" ({' and '.join(kept)} from the archive's folders)" if kept else ""
    return f"split: {sizes}{source}"
