"""params.yaml as typed, validated dataclasses, parsed once.

Stage scripts call :func:`load_params` and read only their own section, so DVC's
per-section ``params:`` dependencies decide what re-runs. Model sections become
the typed configs of :mod:`convbench.families` (which needs no torch, so the
data stages stay light).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from convbench.config import ConfigError, flatten, parse_section, require, to_dict
from convbench.data.params import DataParams
from convbench.families import FAMILIES, FamilyConfig, model_config


@dataclass(frozen=True)
class TrainParams:
    """The recipe shared by every family, so the comparison is like for like."""

    epochs: int = 4
    batch_size: int = 128
    eval_batch_size: int = 128
    optimizer: Literal["sgd"] = "sgd"
    lr: float = 0.2
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    schedule: Literal["onecycle", "cosine"] = "onecycle"
    warmup_fraction: float = 0.25
    label_smoothing: float = 0.1
    patience: int = 5
    crop_padding: int = 2
    flip: bool = True
    alternating_flip: bool = False
    cutout: int = 0
    ema_decay: float = 0.0
    whiten: int = 3
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    channels_last: Literal["auto", "on", "off"] = "auto"
    threads: int = 0
    seed: int = 0
    nproc: int = 1
    sync_bn: bool = False

    def __post_init__(self) -> None:
        require(self.epochs >= 1, "epochs", f"must be at least 1, got {self.epochs}")
        require(self.batch_size >= 1, "batch_size", f"must be at least 1, got {self.batch_size}")
        require(self.eval_batch_size >= 1, "eval_batch_size", "must be at least 1")
        require(self.lr > 0, "lr", f"must be positive, got {self.lr}")
        require(0.0 <= self.momentum < 1.0, "momentum", "must be in [0, 1)")
        require(self.weight_decay >= 0, "weight_decay", "must be non-negative")
        require(0.0 <= self.warmup_fraction < 1.0, "warmup_fraction", "must be in [0, 1): a share of all epochs")
        require(0.0 <= self.label_smoothing < 1.0, "label_smoothing", "must be in [0, 1)")
        require(self.patience >= 1, "patience", "must be at least 1")
        require(self.crop_padding >= 0, "crop_padding", "must be non-negative")
        require(self.cutout >= 0, "cutout", "must be 0 (off) or a square side in pixels")
        require(self.flip or not self.alternating_flip, "alternating_flip", "needs train.flip: true")
        require(0.0 <= self.ema_decay < 1.0, "ema_decay", f"must be 0 (off) or in (0, 1), got {self.ema_decay}")
        require(self.whiten == 0 or (self.whiten >= 1 and self.whiten % 2 == 1), "whiten",
                f"must be 0 (off) or an odd patch side such as 3, got {self.whiten}")
        require(self.threads >= 0, "threads", "must be 0 (all cores) or a positive count")
        require(self.nproc >= 1, "nproc", f"must be at least 1, got {self.nproc}")
        require(
            self.batch_size % self.nproc == 0,
            "batch_size",
            f"{self.batch_size} must be divisible by train.nproc ({self.nproc}): it is the global batch",
        )


@dataclass(frozen=True)
class EvalParams:
    """How the evaluate stage scores the test split, and which score the report ranks by.

    Single-view scores are always computed (every run in the studies has them);
    ``tta`` adds the logits averaged over mirrored and shifted views
    (:func:`convbench.evaluation.tta.tta_views`).
    """

    tta: Literal["none", "flip", "flip_translate"] = "flip_translate"
    rank_by: Literal["plain", "tta"] = "tta"

    def __post_init__(self) -> None:
        require(self.rank_by == "plain" or self.tta != "none", "rank_by",
                "tta needs evaluate.tta set to flip or flip_translate")


@dataclass(frozen=True)
class Params:
    """The whole params.yaml: data, the shared recipe, evaluation, and every family's typed model config."""

    data: DataParams = field(default_factory=DataParams)
    train: TrainParams = field(default_factory=TrainParams)
    evaluate: EvalParams = field(default_factory=EvalParams)
    models: dict[str, FamilyConfig] = field(default_factory=lambda: {f: model_config(f) for f in FAMILIES})

    def run_params(self, family: str) -> dict[str, str]:
        """What a run of ``family`` logs to MLflow: ``family``, ``data.*``, ``train.*`` and ``model.*``, as strings.

        The one flattening of params for MLflow: training logs it, evaluation
        logs it on a run it has to create, and the cardinality study matches
        runs on it.
        """
        sections = {"data": to_dict(self.data), "train": to_dict(self.train), "model": to_dict(self.models[family])}
        return {"family": family} | {k: str(v) for k, v in flatten(sections).items()}


def parse_params(raw: dict[str, Any] | None) -> Params:
    """Validate a params mapping: unknown sections or keys, wrong types, bad ranges all fail here."""
    raw = dict(raw or {})
    known = {"data", "train", "evaluate", *FAMILIES}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"params: unknown section(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
    models = {}
    for family in FAMILIES:
        section = raw.get(family) or {}
        if not isinstance(section, dict):
            raise ConfigError(f"{family}: expected a mapping of keys, got {section!r}")
        models[family] = model_config(family, **section)
    return Params(
        data=parse_section(DataParams, raw.get("data"), "data"),
        train=parse_section(TrainParams, raw.get("train"), "train"),
        evaluate=parse_section(EvalParams, raw.get("evaluate"), "evaluate"),
        models=models,
    )


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate ``params.yaml`` (see :func:`parse_params`)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found (run from the project root)")
    with path.open() as fh:
        return parse_params(yaml.safe_load(fh))
