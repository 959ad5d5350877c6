"""Every PNG figure convbench draws: dataset report, training curves, evaluation and comparison report.

Figures are drawn on ``matplotlib.figure.Figure`` objects (Agg canvas), never
through ``pyplot``'s global figure registry or ``matplotlib.use``, so stages and
tests can draw in parallel without a display, without leaking figures and
without changing the process's backend. Files are written atomically. This
module sits outside ``data``/``training``/``evaluation`` and imports only
``convbench.data.format``, so the data stages can use it without pulling in models.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from convbench.files import atomic_write_bytes

_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
_ANNOTATE_MAX_CLASSES = 12
"""Above this many classes the confusion-matrix cells are too small for numbers."""


def _save(fig: Figure, path: Path) -> None:
    """Write ``fig`` as PNG atomically (no software/version metadata, so reruns compare equal)."""
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, metadata={"Software": None})
    atomic_write_bytes(Path(path), buffer.getvalue())


def confusion_figure(matrices: Mapping[str, np.ndarray], classes: Sequence[str], path: Path) -> None:
    """Confusion matrices side by side (rows: true class, columns: predicted), coloured by row share.

    Colouring by the share of each true class keeps small classes visible; the cell
    text is the raw count so the numbers match ``confusion.json``.
    """
    n = len(matrices)
    side = 1.0 + 0.45 * len(classes)
    fig = Figure(figsize=(max(3.5, side) * n, max(3.0, side)), layout="constrained")
    axes = fig.subplots(1, n, squeeze=False)[0]
    for ax, (title, matrix) in zip(axes, matrices.items()):
        counts = np.asarray(matrix, dtype=np.int64)
        share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
        ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
        ax.set_title(title)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ticks = np.arange(len(classes))
        ax.set_xticks(ticks, labels=classes, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(ticks, labels=classes, fontsize=8)
        if len(classes) <= _ANNOTATE_MAX_CLASSES:
            for i, j in np.ndindex(counts.shape):
                ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if share[i, j] > 0.5 else "black")
    _save(fig, path)


def learning_curves(histories: Mapping[str, Mapping[str, Sequence[float]]],
                    best_epochs: Mapping[str, int], path: Path) -> None:
    """Loss and accuracy per epoch, train dashed and validation solid, one colour per model.

    ``histories[name]`` holds the history CSV's columns; a dot marks the restored best epoch.
    """
    fig = Figure(figsize=(11, 4), layout="constrained")
    loss_ax, acc_ax = fig.subplots(1, 2)
    for color, (name, history) in zip(_COLORS, histories.items()):
        epochs = np.asarray(history["epoch"])
        for ax, metric, scale in ((loss_ax, "loss", 1.0), (acc_ax, "accuracy", 100.0)):
            train = np.asarray(history[f"train_{metric}"], dtype=float) * scale
            val = np.asarray(history[f"val_{metric}"], dtype=float) * scale
            ax.plot(epochs, train, "--", color=color, label=f"{name} train")
            ax.plot(epochs, val, "-", color=color, label=f"{name} val")
            best = best_epochs.get(name)
            if best is not None and best in set(epochs.tolist()):
                ax.plot([best], [val[list(epochs).index(best)]], "o", color=color)
    loss_ax.set(title="loss", xlabel="epoch", ylabel="cross-entropy")
    acc_ax.set(title="accuracy (dot: restored best epoch)", xlabel="epoch", ylabel="%")
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    acc_ax.legend(fontsize=8, ncol=2)
    _save(fig, path)


def time_to_accuracy(curves: Mapping[str, tuple[Sequence[float], Sequence[float]]], threshold: float,
                     path: Path) -> None:
    """Validation accuracy against training wall-clock seconds, one line per model, the threshold dashed.

    ``curves[name]`` is (seconds elapsed at each epoch's end, validation accuracy there).
    """
    fig = Figure(figsize=(6.5, 4), layout="constrained")
    ax = fig.subplots()
    for color, (name, (seconds, accuracy)) in zip(_COLORS, curves.items()):
        ax.plot(np.asarray(seconds, dtype=float), 100 * np.asarray(accuracy, dtype=float), "o-", color=color,
                label=name)
    ax.axhline(100 * threshold, color="grey", linestyle="--", linewidth=1, label=f"{100 * threshold:.1f} %")
    ax.set(xlabel="training wall-clock seconds (validation passes included)", ylabel="validation accuracy (%)",
           title="time to accuracy")
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)


def per_class_bars(accuracy: Mapping[str, Sequence[float]], classes: Sequence[str], path: Path) -> None:
    """Grouped bars of per-class test accuracy (recall), one bar per model in each class."""
    fig = Figure(figsize=(max(6.0, 0.9 * len(classes) * max(1, len(accuracy)) / 2 + 3), 3.8),
                 layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(classes))
    width = 0.8 / max(1, len(accuracy))
    for k, (color, (name, values)) in enumerate(zip(_COLORS, accuracy.items())):
        ax.bar(x + (k - (len(accuracy) - 1) / 2) * width, np.asarray(values) * 100, width,
               label=name, color=color)
    ax.set_xticks(x, labels=classes, rotation=30, ha="right")
    ax.set(ylabel="test accuracy (%)", ylim=(0, 100), title="per-class test accuracy")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    _save(fig, path)


def image_grid(rows: Sequence[Sequence[np.ndarray]], path: Path, *, captions: Sequence[Sequence[str]] | None = None,
               row_labels: Sequence[str] | None = None, title: str | None = None, tile: int = 64) -> None:
    """Rows of uint8 (H, W, 3) images, with an optional caption per image, label per row and title.

    The images are tiled into one mosaic (nearest-neighbour upscaled to about
    ``tile`` pixels) and drawn as a single image: one axes instead of one per
    image keeps a gallery cheap to render. Rows may differ in length.
    """
    height, width = next(image for row in rows for image in row).shape[:2]
    scale = max(1, tile // max(height, width))
    cell_h, cell_w = height * scale, width * scale
    gap_x, gap_y = cell_w // 8, cell_h // 2 if captions else cell_h // 8
    left = 6 * max(map(len, row_labels)) + 8 if row_labels else 0
    columns = max(len(row) for row in rows)
    mosaic = np.full((len(rows) * (cell_h + gap_y), left + columns * (cell_w + gap_x), 3), 255, dtype=np.uint8)
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            y, x = r * (cell_h + gap_y) + gap_y, left + c * (cell_w + gap_x)
            mosaic[y:y + cell_h, x:x + cell_w] = np.asarray(image).repeat(scale, 0).repeat(scale, 1)
    top = 0.3 if title else 0.0
    fig = Figure(figsize=(mosaic.shape[1] / 80, mosaic.shape[0] / 80 + top))
    ax = fig.add_axes((0, 0, 1, 1 - top / (mosaic.shape[0] / 80 + top)))
    ax.imshow(mosaic, interpolation="nearest")
    ax.axis("off")
    for r in range(len(rows)):
        y = r * (cell_h + gap_y) + gap_y
        if row_labels:
            ax.text(left - 4, y + cell_h / 2, row_labels[r], ha="right", va="center", fontsize=8)
        for c, caption in enumerate(captions[r] if captions else ()):
            ax.text(left + c * (cell_w + gap_x) + cell_w / 2, y - 2, caption, ha="center", va="bottom", fontsize=6.5)
    if title:
        fig.suptitle(title, fontsize=9, y=0.995, va="top")
    _save(fig, path)


def cardinality_plot(rows: Sequence[Mapping[str, float | None]], path: Path) -> None:
    """Mean test accuracy against cardinality (log2 axis), one standard deviation over seeds as error bars.

    ``rows`` hold ``cardinality``, ``base_width``, ``mean``, ``sd`` (None for
    one seed) and ``params_ratio`` (parameters relative to the baseline setting).
    """
    fig = Figure(figsize=(6.5, 4), layout="constrained")
    ax = fig.subplots()
    points = sorted(rows, key=lambda r: r["cardinality"])
    xs = [r["cardinality"] for r in points]
    ys = [100 * r["mean"] for r in points]
    errors = [100 * (r["sd"] or 0.0) for r in points]
    ax.errorbar(xs, ys, yerr=errors, fmt="o-", color=_COLORS[0], capsize=4)
    for r, x, y in zip(points, xs, ys):
        ratio = f", {r['params_ratio']:.2f}x params" if r.get("params_ratio") else ""
        ax.annotate(f"{int(r['cardinality'])}x{int(r['base_width'])}d{ratio}", (x, y), textcoords="offset points",
                    xytext=(4, 6), fontsize=7)
    ax.set_xscale("log", base=2)
    ax.set(xlabel="cardinality C (groups)", ylabel="test accuracy (%)",
           title="ResNeXt at fixed complexity: accuracy vs cardinality")
    ax.grid(alpha=0.3)
    _save(fig, path)


def budget_plot(series: Mapping[str, Sequence[Mapping[str, float | None]]], path: Path) -> None:
    """Accuracy against training seconds and against training compute (log x), one line per series.

    ``series`` maps a label (a family, with its machine where there are several) to points holding ``seconds``,
    ``compute`` (MACs, may be None), ``epochs``, ``mean`` and ``sd`` (None for one seed: no error bar).
    """
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    for i, (label, points) in enumerate(series.items()):
        color, points = _COLORS[i % len(_COLORS)], sorted(points, key=lambda r: r["epochs"])
        ys = [100 * r["mean"] for r in points]
        errors = [100 * (r["sd"] or 0.0) for r in points]
        for ax, key, scale in ((axes[0], "seconds", 1.0), (axes[1], "compute", 1e-12)):
            shown = [(r[key] * scale, y, e, r["epochs"]) for r, y, e in zip(points, ys, errors) if r[key]]
            if not shown:
                continue
            xs, ys_, es, epochs = zip(*shown)
            ax.errorbar(xs, ys_, yerr=es, fmt="o-", color=color, capsize=3, label=label)
            for x, y, e in zip(xs, ys_, epochs):
                ax.annotate(f"{e}", (x, y), textcoords="offset points", xytext=(3, -10), fontsize=7, color=color)
    axes[0].set(xscale="log", xlabel="training time (s, log scale)", ylabel="test accuracy (%)",
                title="Accuracy against training time (labels: epochs)")
    axes[1].set(xscale="log", xlabel="training compute (10^12 MACs: 3 x forward MACs x images, log scale)",
                title="Accuracy against training compute")
    for ax in axes:
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=8)
    _save(fig, path)
