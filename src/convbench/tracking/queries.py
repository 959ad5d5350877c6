"""Runs read back from the MLflow store: every failure becomes a reason, never an error.

The report reads runs of other parameter settings (a cardinality study, other
seeds) from here; DVC's workspace only holds the current one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from convbench.tracking.store import EXPERIMENT, store_problem


@dataclass(frozen=True)
class StoreRuns:
    """What the store holds: its finished runs (newest first) and every run id it knows, deleted ones included.

    ``known`` tells a run this store never saw (trained on another machine, or before the store was reset)
    from one it holds but that failed or was deleted on purpose.
    """

    finished: list[Any] = field(default_factory=list)
    known: frozenset[str] = frozenset()
    error: str | None = None


def store_runs(uri: str) -> StoreRuns:
    """The experiment's runs in ``uri``; an absent store or experiment holds none, an unreadable one gives a reason."""
    reason = store_problem(uri)
    if reason:  # a local store is created by the first training: until then it holds nothing
        return StoreRuns() if uri.startswith("sqlite:///") else StoreRuns(error=reason)
    try:
        from mlflow.entities import LifecycleStage, RunStatus, ViewType
        from mlflow.tracking import MlflowClient

        client = MlflowClient(uri)
        experiment = client.get_experiment_by_name(EXPERIMENT)
        if experiment is None:
            return StoreRuns()
        runs = client.search_runs([experiment.experiment_id], run_view_type=ViewType.ALL,
                                  order_by=["attributes.start_time DESC"], max_results=50000)
    except Exception as exc:  # any store failure (corrupt db, server error) only disables a report section
        return StoreRuns(error=f"could not read the MLflow store {uri}: {type(exc).__name__}: {exc}".splitlines()[0])
    finished = [r for r in runs if r.info.status == RunStatus.to_string(RunStatus.FINISHED)
                and r.info.lifecycle_stage == LifecycleStage.ACTIVE]
    return StoreRuns(finished, frozenset(r.info.run_id for r in runs))
