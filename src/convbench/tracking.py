"""MLflow conventions shared by every stage: where the store is, one experiment, one run per training.

The default store is ``sqlite:///<project root>/mlflow.db`` with artifacts in
``<project root>/mlartifacts``, anchored at the real project root (``DVC_ROOT``)
so runs from queued DVC experiments, which execute in a temporary copy, land in
the same store. ``MLFLOW_TRACKING_URI`` overrides it.

Creating a brand-new sqlite store from several processes at once corrupts it,
so the pipeline calls :func:`ensure_store` (``convbench tracking``) once before
parallel training.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

EXPERIMENT = "convbench"
ALIAS = "current"
"""Registry alias that always points at the newest version of a family's model."""


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the sqlite store at the project root."""
    from convbench.paths import project_root

    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_root() / 'mlflow.db'}"


def artifact_location(uri: str) -> str | None:
    """``mlartifacts/`` next to a sqlite database; other stores (servers) choose their own."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        return None
    return (Path(uri[len(prefix) :]).resolve().parent / "mlartifacts").as_uri()


def registered_name(family: str) -> str:
    """The model-registry name of a family's trained models."""
    return f"convbench-{family}"


def ensure_store() -> str:
    """Create the store and the ``convbench`` experiment if missing; return the experiment id.

    Safe to call from parallel processes once the database exists: a lost race
    to create the experiment reads the winner's.
    """
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    if experiment is None:
        try:
            return client.create_experiment(EXPERIMENT, artifact_location=artifact_location(uri))
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            experiment = client.get_experiment_by_name(EXPERIMENT)
    if experiment.lifecycle_stage == "deleted":
        client.restore_experiment(experiment.experiment_id)
    return experiment.experiment_id


def git_commit() -> str | None:
    """``git rev-parse HEAD`` of the project, or None outside git or before the first commit."""
    from convbench.paths import project_root

    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=project_root(), capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def run_tags(family: str) -> dict[str, str]:
    """Family, git commit, and the DVC stage / experiment that launched the run (when set)."""
    tags = {"family": family}
    sources = {
        "git_commit": git_commit(),
        "dvc_stage": os.environ.get("DVC_STAGE"),
        "dvc_exp_name": os.environ.get("DVC_EXP_NAME"),
    }
    tags.update({k: v for k, v in sources.items() if v})
    return tags


def flatten_params(sections: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """``{"train": {"lr": 0.1}}`` -> ``{"train.lr": "0.1"}`` (MLflow params are strings)."""
    return {f"{section}.{key}": str(value) for section, values in sections.items() for key, value in values.items()}


def open_run(family: str, run_id: str | None = None) -> Any:
    """Start a run named ``family`` in the experiment, or continue ``run_id`` (a resumed training).

    Returns mlflow's ``ActiveRun`` context manager. If ``run_id`` no longer
    exists (the store was deleted), a new run is started instead.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    experiment_id = ensure_store()
    if run_id is not None:
        try:
            mlflow.get_run(run_id)
            return mlflow.start_run(run_id=run_id)
        except MlflowException:
            print(f"MLflow run {run_id} not found in {tracking_uri()}; starting a new run", file=sys.stderr)
    return mlflow.start_run(experiment_id=experiment_id, run_name=family, tags=run_tags(family))


def pip_requirements() -> list[str]:
    """Explicit requirements of a logged model (inference would take ~9 s per model)."""
    import mlflow
    import numpy
    import torch

    return [
        f"mlflow=={mlflow.__version__}",
        f"torch=={torch.__version__.split('+')[0]}",
        f"numpy=={numpy.__version__}",
    ]


def log_torch_model(model: Any, family: str, input_example: Any) -> int:
    """Log ``model`` to the active run, register it and point alias ``current`` at the new version.

    The model is saved as a ``torch.export`` program (MLflow's default ``pt2``
    format: no pickle, loads without convbench installed). ``input_example``
    must hold at least 2 images: with one, ``torch.export`` fixes the batch size
    at 1 and the logged model rejects any other batch size.
    """
    import mlflow.pytorch
    from mlflow.tracking import MlflowClient

    info = mlflow.pytorch.log_model(
        model,
        name="model",
        input_example=input_example,
        serialization_format="pt2",
        pip_requirements=pip_requirements(),
        registered_model_name=registered_name(family),
    )
    version = int(info.registered_model_version)
    MlflowClient(tracking_uri()).set_registered_model_alias(registered_name(family), ALIAS, str(version))
    return version


def main(argv: list[str] | None = None) -> int:
    """``convbench tracking``: create the store and experiment once, print where they are."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    if argv:
        print("usage: convbench tracking   (creates the MLflow store; no arguments)", file=sys.stderr)
        return 2
    experiment_id = ensure_store()
    print(f"MLflow store {tracking_uri()}, experiment {EXPERIMENT!r} (id {experiment_id})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
