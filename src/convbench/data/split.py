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

``stratify=False`` (``data.stratify: false``) is the course notebook's split instead:
scikit-learn's ``train_test_split`` over all images at once, so class proportions
vary by chance, exactly as in the notebook.
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


def _stratified(
    labels: np.ndarray, origin: np.ndarray, n_classes: int, *, val_fraction: float, test_fraction: float,
    given: dict[str, bool], seed: int,
) -> dict[str, np.ndarray]:
    """Each class's pool shuffled by its own generator and cut into test, val and train; given folders shuffled."""
    pool_mask = np.isin(origin, [ORIGINS.index("all"), ORIGINS.index("train")])
    parts: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    for c in range(n_classes):
        rng = np.random.default_rng([seed, c])
        pool = rng.permutation(np.flatnonzero((labels == c) & pool_mask))
        n = len(pool)
        n_test = 0 if given["test"] else min(_count(n, test_fraction), max(n - 1, 0))
        n_val = 0 if given["val"] else min(_count(n, val_fraction), max(n - 1 - n_test, 0))
        parts["test"].append(pool[:n_test])
        parts["val"].append(pool[n_test : n_test + n_val])
        parts["train"].append(pool[n_test + n_val :])
        for name in ("val", "test"):
            if given[name]:
                parts[name][-1] = rng.permutation(np.flatnonzero((labels == c) & (origin == ORIGINS.index(name))))
    return {s: np.concatenate(parts[s] or [np.empty(0, np.int64)]) for s in SPLITS}


def _unstratified(
    origin: np.ndarray, *, val_fraction: float, test_fraction: float, given: dict[str, bool], seed: int
) -> dict[str, np.ndarray]:
    """The course notebook's split: scikit-learn's ``train_test_split`` twice over the pool in cache order.

    First ``val + test`` of the pool is held out, then ``test / (val + test)`` of
    that is the test split and the rest the val split, both with
    ``random_state=seed``. The cache lists images as ``ImageFolder`` does
    (classes sorted, files sorted), so the indices equal the notebook's.
    Given val/test folders are kept whole, shuffled by ``seed``.
    """
    from sklearn.model_selection import train_test_split

    pool = np.flatnonzero(np.isin(origin, [ORIGINS.index("all"), ORIGINS.index("train")]))
    val = 0.0 if given["val"] else val_fraction
    test = 0.0 if given["test"] else test_fraction
    chosen = {"train": pool, "val": np.empty(0, np.int64), "test": np.empty(0, np.int64)}
    if val + test > 0 and len(pool) >= 2:
        chosen["train"], held = train_test_split(pool, test_size=val + test, random_state=seed)
        if val and test:
            chosen["val"], chosen["test"] = train_test_split(held, test_size=test / (val + test), random_state=seed)
        else:
            chosen["val" if val else "test"] = held
    rng = np.random.default_rng(seed)
    for name in ("val", "test"):
        if given[name]:
            chosen[name] = rng.permutation(np.flatnonzero(origin == ORIGINS.index(name)))
    return chosen


def make_split(
    labels: np.ndarray,
    origin: np.ndarray,
    *,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    max_per_class: int = 0,
    stratify: bool = True,
    classes: list[str] | None = None,
) -> dict[str, list[int]]:
    """Sorted index lists ``train``/``val``/``test`` over the cache (see the module docstring).

    ``labels`` (N,) and ``origin`` (N,) are the cache's; ``classes`` only names classes
    in error messages. ``stratify=False`` divides the pool as the course notebook
    does (:func:`_unstratified`). Raises :class:`ConvbenchError` when a split that
    should hold images ends up empty, or a class has no training images.
    """
    labels = np.asarray(labels, dtype=np.int64)
    origin = np.asarray(origin, dtype=np.int64)
    given = {name: bool((origin == ORIGINS.index(name)).any()) for name in ("val", "test")}
    num_classes = int(labels.max()) + 1 if len(labels) else 0
    names = classes or [str(c) for c in range(num_classes)]
    fractions = {"val": val_fraction, "test": test_fraction}
    cut = {"val_fraction": val_fraction, "test_fraction": test_fraction, "given": given, "seed": seed}
    chosen = _stratified(labels, origin, num_classes, **cut) if stratify else _unstratified(origin, **cut)
    missing = sorted(set(labels.tolist()) - set(labels[chosen["train"]].tolist()))
    if missing:
        raise ConvbenchError(f"class {names[missing[0]]!r} has no training images; add some to the archive's train/ folder")
    split = {s: sorted(int(i) for i in _first_per_class(chosen[s], labels, max_per_class)) for s in SPLITS}
    for name in ("val", "test"):
        if not split[name] and fractions[name] > 0:
            raise ConvbenchError(
                f"the {name} split is empty: too few images per class for data.{name}_fraction = "
                f"{fractions[name]}; add images or raise data.{name}_fraction"
            )
    return split


def _first_per_class(index: np.ndarray, labels: np.ndarray, max_per_class: int) -> np.ndarray:
    """The first ``max_per_class`` of each class in ``index``'s (shuffled) order; all of it for 0."""
    if not max_per_class:
        return index
    rank = np.zeros(len(index), np.int64)
    seen: dict[int, int] = {}
    for i, label in enumerate(labels[index].tolist()):
        rank[i] = seen.get(label, 0)
        seen[label] = rank[i] + 1
    return index[rank < max_per_class]


def describe_split(split: dict[str, list[int]], origin: np.ndarray) -> str:
    """One line: split sizes and which ones came from archive folders."""
    origin = np.asarray(origin)
    kept = [name for name in ("val", "test") if (origin == ORIGINS.index(name)).any()]
    sizes = ", ".join(f"{name} {len(split[name]):,}" for name in SPLITS)
    source = f" ({' and '.join(kept)} from the archive's folders)" if kept else ""
    return f"split: {sizes}{source}"
