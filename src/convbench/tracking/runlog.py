"""One run's MLflow logging (a training, an evaluation, a report), made to outlive its tracking server.

Every call (params, metrics, tags, the dataset, an artifact, the model, the
final status) is sent at once while the store answers. When a call fails
because the server cannot be reached, the logger goes offline: it says so in
one line, and that call and every later one go to a spool,
``<project root>/mlflow-spool/<run id>/calls.jsonl`` plus copies of the files
they name, so training goes on and nothing is lost. It retries at most every
``retry_seconds`` (a dead server must not slow every epoch), and once more in
:meth:`RunLogger.finish`; ``convbench tracking sync`` (:func:`sync`) sends
whatever is left later. Any other failure (a rejected value, a model that
``torch.export`` cannot trace) is a genuine error: the stage stops with one
line instead of spooling a call that would never succeed.

Calls carry their own timestamps and are replayed in order. A call that reached
the server just before the connection dropped is harmless when replayed: MLflow
ignores a metric row it already holds and an identical param, an artifact is
overwritten with the same bytes, and a model already registered for the run is
not logged again.

A training run also carries MLflow's system metrics (``system/*``: CPU and
memory use, disk, network, GPU where there is one), sampled every 10 s by
MLflow's own monitor thread; they cost about 0.1 % of one core.
``MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING=false`` turns them off and
``MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL`` sets the interval. They describe the
machine, not the result, so they are not spooled: an outage ends them.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy

from convbench.errors import ConvbenchError
from convbench.files import atomic_write_bytes
from convbench.paths import project_root
from convbench.tracking import store

if TYPE_CHECKING:
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor
    from mlflow.tracking import MlflowClient

Call = dict[str, Any]
"""One logging call: ``{"op": <kind>, ...}``; file arguments are :class:`Path`, arrays are numpy."""
FILE_ARGS = ("path", "weights")
ARRAY_ARGS = ("input_example",)
SPOOL_DIR = "mlflow-spool"
SPOOL_FILE = "calls.jsonl"
SYNC_COMMAND = "python -m convbench.tracking sync"


def spool_root() -> Path:
    """Where every run's spool lives: at the real project root, so queued DVC experiments spool there too."""
    return project_root() / SPOOL_DIR


def _now_ms() -> int:
    return int(time.time() * 1000)


class Spool:
    """A run's unsent calls on disk, in order, with private copies of the files they name."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.file = folder / SPOOL_FILE
        lines = self.file.read_text().splitlines() if self.file.is_file() else []
        self.records: list[dict[str, Any]] = [json.loads(line) for line in lines if line.strip()]

    def append(self, call: Call) -> None:
        """Copy the call's files into the spool (later changes to the originals must not matter), then queue it."""
        store = self.folder / "files" / uuid.uuid4().hex
        record = dict(call)
        for key in FILE_ARGS + ARRAY_ARGS:
            if key not in call:
                continue
            store.mkdir(parents=True, exist_ok=True)
            if key in FILE_ARGS:
                target = store / Path(call[key]).name  # the name is the artifact's name in MLflow
                shutil.copy2(call[key], target)
            else:
                target = store / f"{key}.npy"
                numpy.save(target, call[key])
            record[key] = target.relative_to(self.folder).as_posix()
        self.folder.mkdir(parents=True, exist_ok=True)
        with self.file.open("a") as fh:
            fh.write(json.dumps(record) + "\n")
        self.records.append(record)

    def call(self, index: int) -> Call:
        """Record ``index`` with its files as paths into the spool and its arrays loaded."""
        call = dict(self.records[index])
        for key in FILE_ARGS:
            if key in call:
                call[key] = self.folder / call[key]
        for key in ARRAY_ARGS:
            if key in call:
                call[key] = numpy.load(self.folder / call[key])
        return call

    def drop_first(self, count: int) -> None:
        """Forget the first ``count`` records (sent); remove the whole spool when none is left."""
        self.records = self.records[count:]
        if not self.records:
            shutil.rmtree(self.folder, ignore_errors=True)
        elif count:
            atomic_write_bytes(self.file, "".join(json.dumps(r) + "\n" for r in self.records).encode())


OUTAGE_MARKERS = ("Max retries exceeded", "Connection refused", "Connection aborted", "Connection reset",
                  "RemoteDisconnected", "timed out", "error code 502", "error code 503", "error code 504")
"""Text of an ``MlflowException`` that wraps a lost connection (its REST client re-raises requests' errors)."""


def is_outage(exc: BaseException) -> bool:
    """True when ``exc`` means the store could not be reached (spool and retry), not that the call was wrong."""
    import requests

    chain: BaseException | None = exc
    while chain is not None:
        if isinstance(chain, (ConnectionError, TimeoutError, requests.ConnectionError, requests.Timeout,
                              store.ServerUnreachable)):
            return True
        if type(chain).__name__ == "MlflowException" and any(m in str(chain) for m in OUTAGE_MARKERS):
            return True
        chain = chain.__cause__ or chain.__context__
    return False


def describe(call: Call) -> str:
    """A call in a few words, for messages."""
    op = call["op"]
    if op == "metrics" and call["step"] is not None:
        return f"metrics of step {call['step']}"
    if op == "artifact":
        return f"artifact {Path(call['path']).name}"
    if op == "status":
        return f"status {call['status']}"
    return op


def send(client: MlflowClient, run_id: str, call: Call) -> None:
    """Make one call against the store (raises whatever the client or the network raises).

    urllib3 logs a warning for each retry of a dead server; they are muted
    meanwhile, since :class:`RunLogger` says it in one line.
    """
    retries = logging.getLogger("urllib3.connectionpool")
    level = retries.level
    retries.setLevel(logging.ERROR)
    try:
        _dispatch(client, run_id, call)
    finally:
        retries.setLevel(level)


def _dispatch(client: MlflowClient, run_id: str, call: Call) -> None:
    from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag

    op = call["op"]
    if op == "params":
        client.log_batch(run_id, params=[Param(k, v) for k, v in call["params"].items()])
    elif op == "metrics":
        metrics = [Metric(k, v, call["timestamp"], call["step"] or 0) for k, v in call["metrics"].items()]
        client.log_batch(run_id, metrics=metrics)
    elif op == "tags":
        client.log_batch(run_id, tags=[RunTag(k, v) for k, v in call["tags"].items()])
    elif op == "inputs":
        dataset = DatasetInput(Dataset(**call["dataset"]), tags=[InputTag("mlflow.data.context", call["context"])])
        client.log_inputs(run_id, datasets=[dataset])
    elif op == "artifact":
        client.log_artifact(run_id, str(call["path"]), call.get("artifact_path"))
    elif op == "model":
        _send_model(client, run_id, call)
    elif op == "status":
        client.set_terminated(run_id, call["status"], end_time=call["end_time"])
    else:
        raise ValueError(f"unknown spooled call {op!r}")


def _send_model(client: MlflowClient, run_id: str, call: Call) -> None:
    """Rebuild the model from its weights file on CPU in fp32, then log, register and alias it.

    Skipped when the run already has a registered version (registration comes
    after the upload, so that attempt was complete). Model logging exists only
    in MLflow's fluent API, hence the run is made active for it.
    """
    import mlflow

    from convbench.models.weights import load_trained

    name = store.registered_name(call["family"])
    if client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'"):
        return
    model, _ = load_trained(call["weights"])
    with mlflow.start_run(run_id=run_id):
        store.log_torch_model(model, call["family"], call["input_example"])


def drain(client: MlflowClient, run_id: str, spool: Spool) -> int:
    """Send the spooled calls in order and drop each once sent; return how many were sent.

    On a failure the unsent rest stays spooled and the exception propagates.
    """
    sent = 0
    try:
        for index in range(len(spool.records)):
            send(client, run_id, spool.call(index))
            sent += 1
    finally:
        spool.drop_first(sent)
    return sent


class RunLogger:
    """One run's MLflow calls, sent at once while the store answers and spooled while it cannot be reached."""

    def __init__(self, client: MlflowClient, run_id: str, *, backup: str = "", retry_seconds: float = 60.0,
                 continued: bool = False) -> None:
        """``client`` is an ``MlflowClient`` for the store of ``run_id``; a spool left by an earlier
        process of the same run (killed while offline) is picked up and sent first. ``backup`` says,
        in the warning about unsent calls of a finished run, where the same numbers are kept."""
        self._run_id = run_id
        self._client = client
        self._uri = client.tracking_uri
        self._backup = backup
        self._retry_seconds = retry_seconds
        self._spool = Spool(spool_root() / run_id)
        self._warned = False
        self._last_try = -math.inf
        self._monitor: SystemMetricsMonitor | None = None
        self.continued = continued
        """True when :meth:`start` continued an existing run rather than creating one."""

    @classmethod
    def start(cls, run_name: str, tags: dict[str, str], run_id: str | None = None, *, backup: str = "",
              retry_seconds: float = 60.0, system_metrics: bool = False) -> RunLogger:
        """Check the store, then continue ``run_id`` if it still exists (a resumed training, an evaluation)
        or create a run named ``run_name`` with ``tags`` (plus git and DVC tags); a store that fails now
        raises one :class:`ConvbenchError` line, before any work. ``system_metrics`` starts MLflow's
        sampler of the machine (see the module's docstring) until :meth:`finish`."""
        experiment_id = store.ensure_store()  # first: a dead server fails before mlflow's slow import
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient
        from mlflow.tracking.context.registry import resolve_tags

        uri = store.tracking_uri()
        client = MlflowClient(uri)
        try:
            continued = bool(store.continuable(client, run_id))
            if continued:
                client.update_run(run_id, status="RUNNING")
            else:
                all_tags = resolve_tags(store.run_tags(**tags))  # the user and source tags mlflow.start_run adds
                run_id = client.create_run(experiment_id, tags=all_tags, run_name=run_name).info.run_id
        except MlflowException as exc:
            raise ConvbenchError(f"MLflow store {uri} failed to start the run ({store.short_reason(exc)})") from exc
        logger = cls(client, run_id, backup=backup, retry_seconds=retry_seconds, continued=continued)
        if system_metrics:
            logger._start_system_metrics()
        return logger

    @classmethod
    def start_or_note(cls, stage: str, run_name: str, tags: dict[str, str], run_id: str | None = None, *,
                      backup: str = "") -> RunLogger | None:
        """:meth:`start`, or None with a one-line note when the server is unreachable from the start.

        For stages whose DVC outputs are the record (evaluate, report): they go
        on without MLflow rather than fail; an outage later in the stage is
        spooled like training's.
        """
        try:
            return cls.start(run_name, tags, run_id, backup=backup)
        except store.ServerUnreachable as exc:
            print(f"convbench {stage}: note: not logged to MLflow: {exc}", file=sys.stderr)
            return None

    def _start_system_metrics(self) -> None:
        """Start MLflow's monitor thread unless ``MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING`` says false.

        Its log lines are muted below errors: it starts and stops with every
        run, and an outage is already told by this logger in one line.
        """
        from mlflow.environment_variables import MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        if MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING.is_set() and not MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING.get():
            return
        logging.getLogger("mlflow.system_metrics").setLevel(logging.ERROR)
        self._monitor = SystemMetricsMonitor(self._run_id, resume_logging=self.continued, tracking_uri=self._uri)
        self._monitor.start()

    @property
    def run_id(self) -> str:
        return self._run_id

    @property
    def pending(self) -> int:
        """How many calls are spooled, unsent."""
        return len(self._spool.records)

    def log_params(self, params: dict[str, str]) -> None:
        self._call({"op": "params", "params": {k: str(v) for k, v in params.items()}})

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Timestamped now, so metrics sent later keep the time they were measured."""
        self._call({"op": "metrics", "metrics": {k: float(v) for k, v in metrics.items()}, "step": step,
                    "timestamp": _now_ms()})

    def set_tags(self, tags: dict[str, str]) -> None:
        self._call({"op": "tags", "tags": {k: str(v) for k, v in tags.items()}})

    def log_dataset(self, dataset: dict[str, str], context: str) -> None:
        """An MLflow dataset input (``name``, ``digest``, ``source_type``, ``source``, ``schema``, ``profile``)."""
        self._call({"op": "inputs", "dataset": dataset, "context": context})

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self._call({"op": "artifact", "path": Path(path), "artifact_path": artifact_path})

    def log_artifacts(self, folder: Path, artifact_path: str) -> None:
        """Every file under ``folder``, at the same relative place under ``artifact_path``."""
        for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
            parent = path.parent.relative_to(folder).as_posix()
            self.log_artifact(path, artifact_path if parent == "." else f"{artifact_path}/{parent}")

    def log_model(self, weights: Path, family: str, input_example: numpy.ndarray) -> None:
        """Log the weights file's model (rebuilt on CPU, fp32), register it and point alias ``current`` at it."""
        self._call({"op": "model", "weights": Path(weights), "family": family, "input_example": input_example})

    def __enter__(self) -> RunLogger:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        """Finish the run: ``FAILED`` when the block raised (the exception goes on), else ``FINISHED``."""
        self.finish("FAILED" if kind else "FINISHED")

    def finish(self, status: str = "FINISHED") -> None:
        """Set the run's terminal status with a last attempt to send everything; say where the rest is kept."""
        if self._monitor is not None and not self.pending:  # its last samples go in before the run ends
            self._monitor.finish()  # (offline, its flush would wait on the dead server; the thread is a daemon)
        self._monitor = None
        self._call({"op": "status", "status": status, "end_time": _now_ms()}, final=True)
        if not self.pending:
            return
        backup = f" {self._backup}" if status == "FINISHED" and self._backup else ""
        print(f"convbench: warning: {self.pending} MLflow call(s) of run {self.run_id} are not sent to {self._uri}; "
              f"they are kept in {self._spool.file}: send them with `{SYNC_COMMAND}` once it is back.{backup}",
              file=sys.stderr, flush=True)

    def _call(self, call: Call, *, final: bool = False) -> None:
        """Send ``call`` now if nothing is queued before it; else queue it and retry if it is time."""
        if not self.pending:
            try:
                send(self._client, self.run_id, call)
                return
            except Exception as exc:
                if not is_outage(exc):
                    raise _genuine(call, exc) from exc
                self._spool.append(call)
                self._went_offline(f"{time.strftime('%H:%M:%S')} ({describe(call)} call)", exc)
                return
        self._spool.append(call)
        if final or time.monotonic() - self._last_try >= self._retry_seconds:
            self._retry()

    def _retry(self) -> None:
        """Probe the server (one cheap request), then send the spool in order."""
        self._last_try = time.monotonic()
        try:
            store.check_server(self._uri)
            sent = drain(self._client, self.run_id, self._spool)
        except Exception as exc:
            if not is_outage(exc):
                raise _genuine(self._spool.call(0), exc) from exc
            self._went_offline("an earlier process of this run", exc)
            return
        self._warned = False  # a later outage gets its own warning
        print(f"convbench: MLflow {self._uri} answers again: sent {sent} buffered call(s) of run {self.run_id}",
              file=sys.stderr, flush=True)

    def _went_offline(self, since: str, exc: BaseException) -> None:
        """The one warning of a run's outage (later failures of the same outage stay quiet)."""
        self._last_try = time.monotonic()
        if self._warned:
            return
        self._warned = True
        print(f"convbench: warning: MLflow {self._uri} unreachable since {since}: {store.short_reason(exc)}; "
              f"calls are buffered in {self._spool.file} and the stage goes on", file=sys.stderr, flush=True)


def _genuine(call: Call, exc: BaseException) -> ConvbenchError:
    """The one-line error of a call the store refused, or a model that could not be exported."""
    return ConvbenchError(f"MLflow {describe(call)} failed: {store.short_reason(exc)}")


def sync() -> int:
    """Send every spooled run to the current store; print what was sent; 0 if all was sent, else 1."""
    folders = sorted(spool_root().glob(f"*/{SPOOL_FILE}"))
    if not folders:
        print(f"nothing to sync: no spooled MLflow calls in {spool_root()}")
        return 0
    uri = store.tracking_uri()
    try:
        store.ensure_store()
    except ConvbenchError as exc:
        print(f"convbench tracking sync: {len(folders)} spooled run(s) still pending: {exc}", file=sys.stderr)
        return 1
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    pending = 0
    for file in folders:
        run_id, spool = file.parent.name, Spool(file.parent)
        try:
            sent = drain(client, run_id, spool)
        except Exception as exc:  # report it, keep the rest spooled, go on with the other runs
            pending += 1
            why = "server unreachable" if is_outage(exc) else "refused; fix the cause and run sync again"
            print(f"convbench tracking sync: run {run_id}: {len(spool.records)} call(s) still pending in "
                  f"{spool.file} ({why}: {store.short_reason(exc)})", file=sys.stderr)
            continue
        print(f"sent {sent} buffered call(s) of run {run_id} to {uri}")
    return 1 if pending else 0
