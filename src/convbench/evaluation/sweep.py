"""ResNeXt runs from the MLflow store that differ only in cardinality or base width.

Only the tracking store remembers runs of other parameter settings (DVC's
workspace holds one), so the cardinality study is read from there. Every failure
to read it becomes a message in the report, never an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from convbench.params import Params
from convbench.tracking.queries import finished_runs

SWEPT = ("cardinality", "base_width")
IGNORED = frozenset({"train.threads", "train.eval_batch_size", "train.device"})
"""Settings that change speed, not what is learned; runs differing only in these still compare."""
METRICS = ("test_accuracy", "test_accuracy_ci_low", "test_accuracy_ci_high", "model_params", "model_macs")


@dataclass(frozen=True)
class Sweep:
    """The usable runs (one per setting, newest first wins), or why there are none."""

    rows: list[dict[str, Any]]
    error: str | None = None
    considered: int = 0


def reference_params(params: Params) -> dict[str, str]:
    """The MLflow params a comparable ResNeXt run must share, named as the train stage logs them.

    Training logs :meth:`Params.run_params`; everything but cardinality and base
    width must match.
    """
    flat = params.run_params("resnext")
    return {k: v for k, v in flat.items() if k not in IGNORED and k.removeprefix("model.") not in SWEPT}


def comparable(run_params: Mapping[str, str], reference: Mapping[str, str]) -> bool:
    """True when every reference setting the run logged has the reference's value, and swept keys exist."""
    if not all(f"model.{k}" in run_params for k in SWEPT):
        return False
    return all(run_params[k] == v for k, v in reference.items() if k in run_params)


def query(uri: str, params: Params) -> Sweep:
    """Finished ResNeXt runs on the same data and recipe that logged a test accuracy, one per setting."""
    runs, reason = finished_runs(uri, "tags.family = 'resnext'")
    if reason:
        return Sweep([], reason)
    reference = reference_params(params)
    rows: dict[tuple[int, int], dict[str, Any]] = {}
    for run in runs:
        p, m = run.data.params, run.data.metrics
        if "test_accuracy" not in m or not comparable(p, reference):
            continue
        try:
            key = (int(p["model.cardinality"]), int(p["model.base_width"]))
        except ValueError:
            continue
        rows.setdefault(key, {
            "cardinality": key[0], "base_width": key[1], "run_id": run.info.run_id,
            "run_name": run.info.run_name, **{name: m.get(name) for name in METRICS},
        })
    ordered = sorted(rows.values(), key=lambda r: (r["base_width"], r["cardinality"]))
    return Sweep(ordered, None, len(runs))
