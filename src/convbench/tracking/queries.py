"""Runs read back from the MLflow store: every failure becomes a reason, never an error.

The report reads runs of other parameter settings (a cardinality study, other
seeds) from here; DVC's workspace only holds the current one.
"""

from __future__ import annotations

from typing import Any

from convbench.tracking.store import EXPERIMENT, store_problem


def finished_runs(uri: str, filter_string: str = "") -> tuple[list[Any], str | None]:
    """Finished runs of the experiment that match ``filter_string`` (all if empty), newest first, or ``([], why not)``."""
    reason = store_problem(uri)
    if reason:
        return [], reason
    try:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(uri)
        experiment = client.get_experiment_by_name(EXPERIMENT)
        if experiment is None:
            return [], f"the store {uri} has no {EXPERIMENT!r} experiment yet"
        runs = client.search_runs(
            [experiment.experiment_id],
            filter_string=" and ".join(f for f in (filter_string, "attributes.status = 'FINISHED'") if f),
            order_by=["attributes.start_time DESC"],
            max_results=5000,
        )
    except Exception as exc:  # any store failure (corrupt db, server error) only disables a report section
        return [], f"could not read the MLflow store {uri}: {type(exc).__name__}: {exc}".splitlines()[0]
    return list(runs), None
