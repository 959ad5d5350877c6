"""The files the evaluate and train stages leave behind, read back for the report.

The report reads only these files (never MLflow) for its numbers, so it is the
same whether DVC just ran the stages or restored their outputs from its run-cache.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from convbench.errors import ConvbenchError
from convbench.families import CONFIGS
from convbench.paths import Layout

PREDICTION_COLUMNS = ("index", "label", "pred", "prob")
HISTORY_COLUMNS = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy")


def display_name(family: str, config: dict[str, Any]) -> str:
    """A paper-style name: ``VGG-16``, ``ResNet-18``, ``ResNeXt-29 8×64d``."""
    base = CONFIGS[family].DISPLAY_NAME if family in CONFIGS else family
    name = f"{base}-{config['depth']}" if "depth" in config else base
    if "cardinality" in config and "base_width" in config:
        name += f" {config['cardinality']}×{config['base_width']}d"
    return name


def read_json(path: Path, stage: str) -> dict[str, Any]:
    """A JSON object from ``path``; a missing or broken file names the stage that writes it."""
    try:
        with Path(path).open() as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise ConvbenchError(f"{path} is missing; run `dvc repro {stage}` first") from None
    except json.JSONDecodeError as exc:
        raise ConvbenchError(f"{path} is not valid JSON ({exc.msg}); run `dvc repro {stage}` again") from None
    if not isinstance(data, dict):
        raise ConvbenchError(f"{path} should hold a JSON object; run `dvc repro {stage}` again")
    return data


@dataclass(frozen=True)
class FamilyResult:
    """Everything the report knows about one trained and evaluated family."""

    family: str
    name: str
    config: dict[str, Any]
    metrics: dict[str, Any]
    train: dict[str, Any]
    model: dict[str, Any]
    classes: list[str]
    confusion: np.ndarray
    per_class: list[dict[str, Any]]
    predictions: pd.DataFrame
    history: pd.DataFrame | None = field(default=None)

    def metric(self, *keys: str) -> Any:
        """A nested metrics value (``metric("test", "accuracy")``), or None when absent."""
        value: Any = self.metrics
        for key in keys:
            if not isinstance(value, dict) or key not in value:
                return None
            value = value[key]
        return value

    @property
    def ranked_by(self) -> str:
        """``"tta"`` when the evaluate stage ranks by test-time augmentation, else ``"plain"`` (also older files)."""
        return "tta" if self.metrics.get("ranked_by") == "tta" and "test_tta" in self.metrics else "plain"

    @property
    def test_key(self) -> str:
        """The metrics section of the test scores the report ranks by: ``test_tta`` or ``test``."""
        return "test_tta" if self.ranked_by == "tta" else "test"

    @property
    def pred_columns(self) -> tuple[str, str]:
        """The predictions.csv columns (class, probability) of the predictions the report ranks by."""
        return ("tta_pred", "tta_prob") if self.ranked_by == "tta" else ("pred", "prob")

    @property
    def correct(self) -> pd.Series:
        """Per-test-image hit (True/False) of the ranked predictions, indexed by cache index."""
        pred, _ = self.pred_columns
        return (self.predictions["label"] == self.predictions[pred]).set_axis(self.predictions["index"])

    @property
    def epochs_run(self) -> int | None:
        value = self.train.get("epochs_run")
        if value is None and self.history is not None:
            value = int(self.history["epoch"].max())
        return None if value is None else int(value)


def _read_csv(path: Path, columns: Sequence[str], stage: str) -> pd.DataFrame:
    if not path.is_file():
        raise ConvbenchError(f"{path} is missing; run `dvc repro {stage}` first")
    frame = pd.read_csv(path)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ConvbenchError(f"{path} lacks column(s) {', '.join(missing)}; run `dvc repro {stage}` again")
    return frame


def load_family(layout: Layout, family: str, config: dict[str, Any]) -> FamilyResult:
    """Read one family's metrics, training summary, history and evaluation files."""
    evaluate = f"evaluate@{family}"
    metrics = read_json(layout.metrics(family), evaluate)
    eval_dir = layout.eval_dir(family)
    confusion = read_json(eval_dir / "confusion.json", evaluate)
    per_class = read_json(eval_dir / "per_class.json", evaluate)
    model = read_json(eval_dir / "model.json", evaluate)
    train_path = layout.train_summary(family)
    train = read_json(train_path, f"train@{family}") if train_path.is_file() else {}
    history_path = layout.history(family)
    history = _read_csv(history_path, HISTORY_COLUMNS, f"train@{family}") if history_path.is_file() else None
    result = FamilyResult(
        family=family,
        name=display_name(family, config),
        config=config,
        metrics=metrics,
        train=train,
        model=model,
        classes=list(confusion["classes"]),
        confusion=np.asarray(confusion["matrix"], dtype=np.int64),
        per_class=list(per_class["classes"]),
        predictions=_read_csv(eval_dir / "predictions.csv", PREDICTION_COLUMNS, evaluate),
        history=history,
    )
    missing = [c for c in result.pred_columns if c not in result.predictions.columns]
    if missing:
        raise ConvbenchError(f"{eval_dir / 'predictions.csv'} lacks column(s) {', '.join(missing)}; "
                             f"run `dvc repro {evaluate}` again")
    return result


def load_results(layout: Layout, configs: dict[str, dict[str, Any]]) -> list[FamilyResult]:
    """Every family in ``configs`` (in order) that has a metrics file; at least one is required."""
    results = [load_family(layout, f, c) for f, c in configs.items() if layout.metrics(f).is_file()]
    if not results:
        raise ConvbenchError(
            f"no metrics in {layout.reports / 'metrics'}; run `dvc repro evaluate` "
            "(or `convbench evaluate <family>`) first"
        )
    classes = {tuple(r.classes) for r in results}
    if len(classes) > 1:
        raise ConvbenchError(
            "the families were evaluated on different class lists; run `dvc repro` to re-evaluate them")
    if len({r.ranked_by for r in results}) > 1:
        raise ConvbenchError("some families were ranked by test-time augmentation and some not; "
                             "run `dvc repro` to re-evaluate them with the same evaluate params")
    return results
