"""The ``data`` section of params.yaml on its own, so the data stages never import the model code.

A change to a model's formula or section then re-runs no data stage (``unzip``, ``cache`` and ``split``
depend on this module, not on :mod:`convbench.params`, which imports every family's config).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from convbench.config import ConfigError, parse_section, require


@dataclass(frozen=True)
class DataParams:
    """Where the images come from and how they are cached and split."""

    archive: str = "data/cifar10.zip"
    image_size: int = 32
    val_fraction: float = 0.1
    test_fraction: float = 0.15
    seed: int = 42
    max_per_class: int = 0
    stratify: bool = True
    max_files: int = 500_000
    max_bytes: int = 8 * 2**30
    max_ratio: float = 100.0
    max_file_bytes: int = 268_435_456

    def __post_init__(self) -> None:
        require(bool(self.archive), "archive", "must name a .zip file")
        require(8 <= self.image_size <= 1024, "image_size", f"must be in 8..1024, got {self.image_size}")
        require(0.0 <= self.val_fraction < 1.0, "val_fraction", f"must be in [0, 1), got {self.val_fraction}")
        require(0.0 <= self.test_fraction < 1.0, "test_fraction", f"must be in [0, 1), got {self.test_fraction}")
        require(
            self.val_fraction + self.test_fraction < 1.0,
            "val_fraction",
            "val_fraction + test_fraction must leave some training images",
        )
        require(self.max_per_class >= 0, "max_per_class", "must be 0 (all) or a positive count")
        require(self.max_files > 0, "max_files", "must be positive")
        require(self.max_bytes > 0, "max_bytes", "must be positive")
        require(self.max_ratio >= 1, "max_ratio", f"must be at least 1 (uncompressed/compressed), got {self.max_ratio}")
        require(self.max_file_bytes > 0, "max_file_bytes", "must be positive")


def load_data_params(path: str | Path = "params.yaml") -> DataParams:
    """Read and validate only the ``data`` section of ``params.yaml`` (the training stages validate the rest)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found (run from the project root)")
    with path.open() as fh:
        raw = yaml.safe_load(fh) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(raw).__name__}")
    return parse_section(DataParams, raw.get("data"), "data")
