"""MLflow conventions shared by every stage: where the store is, one experiment, one run per training.

The default store is ``sqlite:///<project root>/mlflow.db`` with artifacts in
``<project root>/mlartifacts``, anchored at the real project root (``DVC_ROOT``)
so runs from queued DVC experiments, which execute in a temporary copy, land in
the same store. ``MLFLOW_TRACKING_URI`` overrides it.

Creating a brand-new sqlite store from several processes at once corrupts it,
so the pipeline calls :func:`ensure_store` (``convbench tracking``) once before
parallel training. With an ``http(s)://`` tracking server, :func:`ensure_store`
also checks that it answers, so a stage fails in seconds instead of after
MLflow's minutes of retries; calls a training could not send are replayed by
``convbench tracking sync`` (see :mod:`convbench.runlog`).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from convbench.errors import ConvbenchError

EXPERIMENT = "convbench"
ALIAS = "current"
"""Registry alias that always points at the newest version of a family's model."""
HEALTH_TIMEOUT = 5.0
"""Seconds the ``/health`` check waits for a tracking server."""
HTTP_RETRY_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
}
"""MLflow's HTTP retry settings for a server (read at every request; its defaults of 7 retries with
backoff factor 2 and a 120 s timeout stall a call for minutes when the server is gone)."""


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


def is_server(uri: str) -> bool:
    """True for an ``http(s)://`` tracking server: one with a ``/health`` check and MLflow's HTTP retries."""
    return uri.startswith(("http://", "https://"))


def short_reason(exc: BaseException) -> str:
    """The gist of a failed call (``[Errno 111] Connection refused``), not requests' 300-character chain."""
    text = str(exc)
    errno = re.search(r"\[Errno -?\d+\] [^'\")\]]+", text)
    if errno:
        return errno.group(0).strip()
    if "timed out" in text or "Timeout" in type(exc).__name__:
        return "timed out"
    first = text.strip().splitlines()[0][:200] if text.strip() else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def check_server(uri: str, timeout: float = HEALTH_TIMEOUT) -> None:
    """Raise a one-line :class:`ConvbenchError` unless ``uri`` (when a server) answers ``GET /health``.

    One plain request with a short timeout: MLflow's client would retry a dead
    server with backoff for minutes before failing. Other stores pass unchecked.
    """
    if not is_server(uri):
        return
    import requests

    try:
        response = requests.get(f"{uri.rstrip('/')}/health", timeout=timeout)
    except requests.RequestException as exc:
        reason = short_reason(exc)
    else:
        if response.ok:
            return
        reason = f"/health answered HTTP {response.status_code}"
    raise ConvbenchError(
        f"MLflow tracking server {uri} is not reachable ({reason}); start it, or unset MLFLOW_TRACKING_URI "
        "to use the local store"
    )


def registered_name(family: str) -> str:
    """The model-registry name of a family's trained models."""
    return f"convbench-{family}"


def ensure_store() -> str:
    """Create the store and the ``convbench`` experiment if missing; return the experiment id.

    Safe to call from parallel processes once the database exists: a lost race
    to create the experiment reads the winner's. A tracking server must answer
    (:func:`check_server`), and MLflow's HTTP retries are capped
    (:data:`HTTP_RETRY_DEFAULTS`, unless set in the environment).
    """
    uri = tracking_uri()
    if is_server(uri):
        for name, value in HTTP_RETRY_DEFAULTS.items():
            os.environ.setdefault(name, value)
        check_server(uri)
    from mlflow.exceptions import MlflowException

    try:
        return _experiment_id(uri)
    except MlflowException as exc:  # e.g. a server whose /health answers but whose --allowed-hosts refuses us
        raise ConvbenchError(f"MLflow store {uri} could not open experiment {EXPERIMENT!r} ({short_reason(exc)})") from exc


def _experiment_id(uri: str) -> str:
    """The experiment's id in ``uri``, created or restored if needed (a lost creation race reads the winner's)."""
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

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


def continuable(client: Any, run_id: str | None) -> str | None:
    """``run_id`` if the store still holds it (a resumed training may continue it), else None.

    The run is gone when the store was deleted or replaced since the checkpoint
    was written; the caller then starts a new run, and this says so.
    """
    from mlflow.exceptions import MlflowException

    if run_id is None:
        return None
    try:
        if client.get_run(run_id).info.lifecycle_stage != "deleted":
            return run_id
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
    print(f"MLflow run {run_id} not found in {tracking_uri()}; starting a new run", file=sys.stderr)
    return None


def open_run(family: str, run_id: str | None = None) -> Any:
    """Start a run named ``family`` in the experiment, or continue ``run_id`` (see :func:`continuable`).

    Returns mlflow's ``ActiveRun`` context manager.
    """
    import mlflow
    from mlflow.tracking import MlflowClient

    experiment_id = ensure_store()
    if continuable(MlflowClient(tracking_uri()), run_id):
        return mlflow.start_run(run_id=run_id)
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
    """``convbench tracking``: create the store once; ``convbench tracking sync``: send spooled calls.

    ``sync`` exits 0 when every spooled run was sent, 1 when something is still
    pending (one line per run saying why).
    """
    from convbench.stages import run_stage

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    parser = argparse.ArgumentParser(
        prog="convbench tracking",
        description="Create the MLflow store and experiment (once, before parallel runs); with `sync`, send the "
                    "calls a training buffered in mlflow-spool/ while its tracking server was unreachable.")
    parser.add_argument("command", nargs="?", choices=["sync"], help="send the buffered calls")
    args = parser.parse_args(argv)
    if args.command == "sync":
        from convbench.runlog import sync

        return sync()

    def body() -> None:
        experiment_id = ensure_store()
        print(f"MLflow store {tracking_uri()}, experiment {EXPERIMENT!r} (id {experiment_id})")

    return run_stage("tracking", body)


if __name__ == "__main__":
    raise SystemExit(main())
