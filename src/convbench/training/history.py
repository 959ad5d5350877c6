"""The per-epoch history as CSV (a DVC output) and as a loss/accuracy figure (an MLflow artifact)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from convbench.data.format import atomic_write_bytes
from convbench.training.loop import HISTORY_COLUMNS


def write_history_csv(path: Path, history: dict[str, list[float]]) -> None:
    """One row per epoch, columns :data:`~convbench.training.loop.HISTORY_COLUMNS`; floats round-trip exactly."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HISTORY_COLUMNS)
    for i in range(len(history["epoch"])):
        writer.writerow([repr(history[name][i]) for name in HISTORY_COLUMNS])
    atomic_write_bytes(Path(path), out.getvalue().encode())


def plot_history(path: Path, history: dict[str, list[float]], title: str) -> None:
    """Loss and accuracy, train vs validation, per epoch, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    epochs = history["epoch"]
    for ax, metric, label in ((ax_loss, "loss", "loss"), (ax_acc, "accuracy", "accuracy")):
        ax.plot(epochs, history[f"train_{metric}"], marker="o", label="train")
        ax.plot(epochs, history[f"val_{metric}"], marker="o", label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.savefig(path, dpi=100)
    plt.close(fig)
