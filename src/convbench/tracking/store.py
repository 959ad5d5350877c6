"""The MLflow store: where it is, its one experiment, whether it answers, run tags, model registration.

The default store is ``sqlite:///<project root>/mlflow.db`` with artifacts in
``<project root>/mlartifacts``, anchored at the real project root (``DVC_ROOT``)
so runs from queued DVC experiments, which execute in a temporary copy, land in
the same store. ``MLFLOW_TRACKING_URI`` overrides it.

Creating a brand-new sqlite store from several processes at once corrupts it,
so the pipeline calls :func:`ensure_store` (``convbench tracking``) once before
parallel training. With an ``http(s)://`` tracking server, :func:`ensure_store`
also checks that it answers, so a stage fails in seconds instead of after
MLflow's minutes of retries; calls a stage could not send are replayed by
``convbench tracking sync`` (see :mod:`convbench.tracking.runlog`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from convbench.errors import ConvbenchError
from convbench.paths import git_head, project_root

if TYPE_CHECKING:
    from convbench.data.format import Cache

EXPERIMENT = "convbench"
ALIAS = "current"
"""Registry alias that points at the model of a family's most recently started training run."""
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}
"""Makes MLflow 3's UI open the experiment as model training (runs, metrics, models), not its GenAI overview."""
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


def store_problem(uri: str, timeout: float = HEALTH_TIMEOUT) -> str | None:
    """Why the store at ``uri`` cannot be used right now, or None: a server that does not answer ``GET /health``
    (one plain request with a short timeout, where MLflow's client would retry for minutes), or a sqlite file
    that does not exist yet (for readers; writers create it with :func:`ensure_store`)."""
    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///"))
        return None if path.is_file() else f"no MLflow store at {path} yet"
    if not is_server(uri):
        return None
    import requests

    try:
        response = requests.get(f"{uri.rstrip('/')}/health", timeout=timeout)
    except requests.RequestException as exc:
        return f"MLflow tracking server {uri} is not reachable ({short_reason(exc)})"
    return None if response.ok else f"MLflow tracking server {uri} is not reachable (/health answered HTTP {response.status_code})"


def check_server(uri: str, timeout: float = HEALTH_TIMEOUT) -> None:
    """Raise a one-line :class:`ServerUnreachable` unless ``uri`` (when a server) answers ``GET /health``."""
    problem = store_problem(uri, timeout) if is_server(uri) else None
    if problem:
        raise ServerUnreachable(f"{problem}; start it, or unset MLFLOW_TRACKING_URI to use the local store")


class ServerUnreachable(ConvbenchError):
    """The tracking server does not answer: an outage, not an error in what is logged."""


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
            return client.create_experiment(EXPERIMENT, artifact_location=artifact_location(uri), tags=EXPERIMENT_TAGS)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            experiment = client.get_experiment_by_name(EXPERIMENT)
    if experiment.lifecycle_stage == "deleted":
        client.restore_experiment(experiment.experiment_id)
    for key, value in EXPERIMENT_TAGS.items():  # stores created before the tag existed
        if experiment.tags.get(key) != value:
            client.set_experiment_tag(experiment.experiment_id, key, value)
    return experiment.experiment_id


def ui_link(uri: str, experiment_id: str) -> str:
    """Where a browser lands on the experiment's runs table.

    MLflow 3.17's UI opens an experiment in its GenAI overview by default (a global toggle, whatever the
    experiment's kind tag says); ``workflowType=machine_learning`` opens the Model training view instead.
    """
    base = uri.rstrip("/") if is_server(uri) else "http://127.0.0.1:5000"
    return f"{base}/#/experiments/{experiment_id}?workflowType=machine_learning"


def ui_hint(uri: str, experiment_id: str) -> str:
    """The command that serves a local store and the link to open, or just the link for a tracking server."""
    link = ui_link(uri, experiment_id)
    if is_server(uri):
        return f"MLflow runs: {link}"
    return (f"MLflow runs: `MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false mlflow ui --backend-store-uri {uri} --workers 1`, "
            f"then open {link}")


def browse_hint() -> str | None:
    """:func:`ui_hint` for this project's store, or None where the store cannot be opened now (the run is spooled)."""
    uri = tracking_uri()
    try:
        return ui_hint(uri, ensure_store())
    except ConvbenchError:
        return None


def run_tags(**tags: str) -> dict[str, str]:
    """``tags`` plus the git commit and the DVC stage / experiment that launched the run (when set)."""
    sources = {
        "git_commit": git_head(project_root()),
        "dvc_stage": os.environ.get("DVC_STAGE"),
        "dvc_exp_name": os.environ.get("DVC_EXP_NAME"),
    }
    tags.update({k: v for k, v in sources.items() if v})
    return tags


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
    """Log ``model`` to the active run, register it, and point alias ``current`` at it unless a newer run has it.

    The model is saved as a ``torch.export`` program (MLflow's default ``pt2``
    format: no pickle, loads without convbench installed). ``input_example``
    must hold at least 2 images: with one, ``torch.export`` fixes the batch size
    at 1 and the logged model rejects any other batch size. A run synced late
    (``convbench tracking sync``) registers a new version but leaves the alias
    on the model of a run that started after it.
    """
    import mlflow
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
    client = MlflowClient(tracking_uri())
    run = mlflow.active_run()
    if _alias_is_newer(client, registered_name(family), client.get_run(run.info.run_id).info.start_time):
        print(f"convbench: {registered_name(family)} version {version} registered; alias {ALIAS!r} stays on the "
              "model of a run started later", file=sys.stderr)
    else:
        client.set_registered_model_alias(registered_name(family), ALIAS, str(version))
    return version


def _alias_is_newer(client: Any, name: str, start_time: int) -> bool:
    """True when alias ``current`` of ``name`` points at the model of a run that started after ``start_time``."""
    from mlflow.exceptions import MlflowException

    try:
        holder = client.get_model_version_by_alias(name, ALIAS)
        return client.get_run(holder.run_id).info.start_time > start_time
    except MlflowException:  # no alias yet, or its run was deleted
        return False


def dataset_input(archive: str, cache: Cache, split: Mapping[str, Any]) -> dict[str, str]:
    """The MLflow dataset a run trained on: the archive's name and md5, its images' shape, the split's sizes.

    Logged as the run's dataset input, so MLflow's runs table shows which data
    each run used and runs on the same bytes share one digest.
    """
    path = Path(archive)
    digest = hashlib.md5()
    if path.is_file():
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    shape = [-1, *map(int, cache.images.shape[1:])]
    spec = {"features": json.dumps([{"name": "image", "type": "tensor",
                                     "tensor-spec": {"dtype": "uint8", "shape": shape}}]),
            "targets": json.dumps([{"name": "label", "type": "tensor", "tensor-spec": {"dtype": "int64", "shape": [-1]}}])}
    profile = {"images": int(cache.images.shape[0]), "classes": list(cache.classes),
               **{f"{name}_images": len(index) for name, index in split.items()}}
    return {
        "name": path.stem,
        "digest": digest.hexdigest() if path.is_file() else "missing",
        "source_type": "local",
        "source": json.dumps({"uri": str(path.resolve())}),
        "schema": json.dumps({"mlflow_tensorspec": spec}),
        "profile": json.dumps(profile),
    }
