"""The per-epoch history as CSV (a DVC output; its figure is :func:`convbench.figures.learning_curves`)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from convbench.files import atomic_write_bytes
from convbench.training.loop import HISTORY_COLUMNS


def write_history_csv(path: Path, history: dict[str, list[float]]) -> None:
    """One row per epoch, columns :data:`~convbench.training.loop.HISTORY_COLUMNS`; floats round-trip exactly."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HISTORY_COLUMNS)
    for i in range(len(history["epoch"])):
        writer.writerow([repr(history[name][i]) for name in HISTORY_COLUMNS])
    atomic_write_bytes(Path(path), out.getvalue().encode())
