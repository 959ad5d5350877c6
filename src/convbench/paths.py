"""Where convbench's files live, relative to the project root.

The root is ``DVC_ROOT`` when DVC runs a stage (it points at the real repo even
inside a queued experiment's temporary copy), else the nearest folder upward
that holds ``dvc.yaml``, else the current directory.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path


def project_root(start: Path | None = None) -> Path:
    """The real project root (see module docstring)."""
    if os.environ.get("DVC_ROOT"):
        return Path(os.environ["DVC_ROOT"]).resolve()
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "dvc.yaml").is_file():
            return folder
    return here


def git_head(root: Path) -> str | None:
    """``git rev-parse HEAD`` in ``root``, or None outside git or before the first commit."""
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


@dataclass(frozen=True)
class Layout:
    """Every stage input and output path, relative to the working directory ``base``.

    Stages run in the working copy DVC gives them (a temp copy for queued
    experiments), so outputs are relative to it; only the MLflow store is
    anchored at :func:`project_root`.
    """

    base: Path = Path(".")

    @property
    def data(self) -> Path:
        return self.base / "data"

    @property
    def images(self) -> Path:
        return self.data / "images"

    @property
    def unzip_manifest(self) -> Path:
        return self.data / "unzip.json"

    @property
    def cache(self) -> Path:
        return self.data / "cache.pt"

    @property
    def split(self) -> Path:
        return self.data / "split.json"

    @property
    def checkpoints(self) -> Path:
        return self.data / "checkpoints"

    @property
    def models(self) -> Path:
        return self.base / "models"

    @property
    def reports(self) -> Path:
        return self.base / "reports"

    def weights(self, family: str) -> Path:
        return self.models / f"{family}.pt"

    def checkpoint(self, family: str) -> Path:
        return self.checkpoints / f"{family}.pt"

    def train_summary(self, family: str) -> Path:
        return self.reports / "train" / f"{family}.json"

    def history(self, family: str) -> Path:
        return self.reports / "train" / f"{family}_history.csv"

    def metrics(self, family: str) -> Path:
        return self.reports / "metrics" / f"{family}.json"

    def summary(self, family: str) -> Path:
        return self.reports / "summary" / f"{family}.json"

    def eval_dir(self, family: str) -> Path:
        return self.reports / "eval" / family
