"""The tiny ResNet recipe and the train stage run as DVC runs it, shared by the training and whitening tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
TINY = {
    "data": {"image_size": 16},
    "train": {"epochs": 3, "batch_size": 16, "eval_batch_size": 64, "lr": 0.05, "warmup_fraction": 0.17,
              "crop_padding": 4, "precision": "fp32", "channels_last": "off", "threads": 1},
    "resnet": {"depth": 18, "stem": "cifar", "width": 0.125},
}


def stage(base: Path, family: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the train stage as DVC would, in ``base`` (``killer_env`` in ``env`` kills it after a checkpoint)."""
    environ = {**os.environ, "PYTHONPATH": str(SRC), "MLFLOW_TRACKING_URI": f"sqlite:///{base / 'mlflow.db'}", **env}
    return subprocess.run([sys.executable, "-m", "convbench.stages.train", family], cwd=base, env=environ,
                          capture_output=True, text=True, timeout=600)
