"""``reports/dataset.md``: what the cache holds, so a bad dataset is seen before hours of training.

Class distribution per origin, skipped and ignored files, a grid of sample images and
the per-class mean image (a quick check that classes differ and nothing is misfiled).
Figures are drawn by :func:`convbench.figures.image_grid` and linked relatively.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from convbench.data.format import ORIGINS, Cache
from convbench.data.unzip import format_listing
from convbench.figures import image_grid

SAMPLES_PER_CLASS = 8
MAX_CLASSES_SHOWN = 20
LIST_CAP = 50
MEAN_CHUNK = 1024
MEANS_PER_ROW = 10


def class_means(cache: Cache) -> np.ndarray:
    """Per-class mean image as (C, H, W, 3) floats in 0..1, summed in chunks (never a float copy of the data)."""
    images = cache.images.numpy()
    labels = cache.labels.numpy()
    out = np.zeros((cache.num_classes, *images.shape[2:], 3), dtype=np.float64)
    for c in range(cache.num_classes):
        idx = np.flatnonzero(labels == c)
        acc = np.zeros(images.shape[1:], dtype=np.float64)
        for start in range(0, len(idx), MEAN_CHUNK):
            acc += images[idx[start : start + MEAN_CHUNK]].sum(axis=0, dtype=np.float64)
        out[c] = (acc / max(len(idx), 1) / 255.0).transpose(1, 2, 0)
    return out


def _bullets(items: list[str]) -> list[str]:
    """A capped Markdown bullet list (``None.`` when empty)."""
    return [f"- {line}" for line in format_listing(items, LIST_CAP)] or ["None."]


def _distribution_table(cache: Cache) -> list[str]:
    origins = cache.origin.numpy()
    labels = cache.labels.numpy()
    present = [o for code, o in enumerate(ORIGINS) if (origins == code).any()]
    counts = {o: np.bincount(labels[origins == ORIGINS.index(o)], minlength=cache.num_classes) for o in present}
    lines = [
        "| class | " + " | ".join(present) + " | total |",
        "|---|" + "---:|" * (len(present) + 1),
    ]
    for c, name in enumerate(cache.classes):
        cells = " | ".join(str(int(counts[o][c])) for o in present)
        lines.append(f"| {name} | {cells} | {int(cache.counts[c])} |")
    lines.append("| **total** | " + " | ".join(str(int(counts[o].sum())) for o in present) + f" | {len(labels)} |")
    return lines


def write_dataset_report(cache: Cache, md_path: Path, fig_dir: Path) -> None:
    """Write ``md_path`` and its figures ``fig_dir/samples.png`` and ``fig_dir/class_means.png``."""
    md_path, fig_dir = Path(md_path), Path(fig_dir)
    images = cache.images.numpy()
    labels = cache.labels.numpy()
    shown = list(range(min(cache.num_classes, MAX_CLASSES_SHOWN)))
    samples = []
    for c in shown:
        idx = np.flatnonzero(labels == c)
        pick = idx[np.unique(np.linspace(0, len(idx) - 1, min(SAMPLES_PER_CLASS, len(idx))).round().astype(int))]
        samples.append([images[i].transpose(1, 2, 0) for i in pick])
    image_grid(samples, fig_dir / "samples.png", row_labels=[cache.classes[c] for c in shown])
    means = np.rint(class_means(cache) * 255).astype(np.uint8)
    rows = [shown[i : i + MEANS_PER_ROW] for i in range(0, len(shown), MEANS_PER_ROW)]
    image_grid(
        [[means[c] for c in row] for row in rows],
        fig_dir / "class_means.png",
        captions=[[cache.classes[c] for c in row] for row in rows],
    )

    rel = Path(os.path.relpath(fig_dir, md_path.parent)).as_posix()
    mean = ", ".join(f"{v:.4f}" for v in cache.mean.tolist())
    std = ", ".join(f"{v:.4f}" for v in cache.std.tolist())
    more = f" (first {len(shown)} of {cache.num_classes} classes)" if cache.num_classes > len(shown) else ""
    lines = [
        "# Dataset",
        "",
        f"{len(labels)} images, {cache.num_classes} classes, {cache.image_size}x{cache.image_size} RGB.",
        f"Channel mean (0..1): {mean}; std: {std} (over all cached images).",
        "",
        "## Class distribution",
        "",
        "Origin is the archive folder an image came from (`all` when the archive was not pre-split).",
        "",
        *_distribution_table(cache),
        "",
        f"## Skipped files ({len(cache.skipped)})",
        "",
        "Files that could not be decoded; they are not in the cache.",
        "",
        *_bullets([f"`{p}`: {reason}" for p, reason in cache.skipped]),
        "",
        f"## Ignored archive entries ({len(cache.ignored)})",
        "",
        "OS junk, non-image files and images outside class folders (reasons in `data/unzip.json`).",
        "",
        *_bullets([f"`{name}`" for name in cache.ignored]),
        "",
        f"## Samples{more}",
        "",
        f"![sample images per class]({rel}/samples.png)",
        "",
        "## Per-class mean image",
        "",
        f"![mean image per class]({rel}/class_means.png)",
        "",
    ]
    md_path.parent.mkdir(parents=True, exist_ok=True)
    md_path.write_text("\n".join(lines))
