"""Training against a real `mlflow server`: logs everything to it, fails fast without it, survives losing it."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from convbench.paths import Layout
from convbench.tracking.runlog import RunLogger, spool_root
from flaky import FlakyClient
from synthetic import write_params, write_synthetic_project

pytestmark = pytest.mark.slow  # end to end: DVC, torchrun, servers or the benchmark

SRC = Path(__file__).resolve().parents[1] / "src"
TINY = {
    "data": {"image_size": 16},
    "train": {"epochs": 3, "batch_size": 16, "eval_batch_size": 64, "lr": 0.05, "warmup_fraction": 0.25,
              "patience": 10, "precision": "fp32", "channels_last": "off", "threads": 1},
    "resnet": {"depth": 18, "width": 0.125},
}
HEALTH_WAIT = 120.0
"""Seconds a starting server may take to answer /health (about 5 s on an idle 2-core machine)."""


def free_port() -> int:
    """A TCP port nothing listens on (just now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """A real `mlflow server` on 127.0.0.1 with a sqlite backend and proxied artifacts under ``base``."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.log = base / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start (or restart, on the same backend and port) and wait for /health."""
        command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{self.base / 'server.db'}",
                   "--artifacts-destination", str(self.base / "artifacts"), "--host", "127.0.0.1",
                   "--port", str(self.port), "--workers", "1"]
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        with self.log.open("ab") as log:  # the server runs uvicorn in a child: own session, killed as a group
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + HEALTH_WAIT
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                if requests.get(f"{self.uri}/health", timeout=2).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        self.kill()
        pytest.fail(f"mlflow server did not answer /health within {HEALTH_WAIT:.0f} s:\n{self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL the server and its workers: no graceful shutdown, like a crashed host."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait()

    def get(self, endpoint: str, **params: str) -> dict[str, Any]:
        """A REST call with plain HTTP, not through MLflow's client."""
        response = requests.get(f"{self.uri}/api/2.0/mlflow/{endpoint}", params=params, timeout=10)
        assert response.ok, f"{endpoint}: HTTP {response.status_code} {response.text[:500]}"
        return response.json()


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the module (starting one takes about 10 s); each test gets its own project and run."""
    running = Server(tmp_path_factory.mktemp("server"))
    running.start()
    yield running
    running.kill()


@pytest.fixture
def server(shared_server: Server) -> Server:
    """The shared server, restarted if an earlier test killed it and failed before restarting it."""
    if shared_server.proc is None or shared_server.proc.poll() is not None:
        shared_server.start()
    return shared_server


def project(base: Path, epochs: int) -> Path:
    write_synthetic_project(base, classes=3, per_class=40, size=16)
    write_params(base, {**TINY, "train": {**TINY["train"], "epochs": epochs}})
    return base


def stage_env(base: Path, uri: str) -> dict[str, str]:
    """The train stage's environment: our sources, the server, and ``base`` as the project root (for the spool)."""
    return {**os.environ, "PYTHONPATH": str(SRC), "MLFLOW_TRACKING_URI": uri, "DVC_ROOT": str(base)}


def train(base: Path, uri: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "convbench.stages.train", "resnet"], cwd=base,
                          env=stage_env(base, uri) | env, capture_output=True, text=True, timeout=600)


def history_rows(base: Path) -> list[dict[str, str]]:
    with Layout(base).history("resnet").open() as fh:
        return list(csv.DictReader(fh))


def assert_run_complete(server: Server, base: Path, epochs: int) -> None:
    """Params, every epoch's metrics (steps 1..epochs, values as in the DVC history), artifacts, the model."""
    rows = history_rows(base)
    assert [int(float(r["epoch"])) for r in rows] == list(range(1, epochs + 1))
    run_id = json.loads(Layout(base).train_summary("resnet").read_text())["mlflow_run_id"]
    run = server.get("runs/get", run_id=run_id)["run"]
    params = {p["key"]: p["value"] for p in run["data"]["params"]}
    assert params["train.epochs"] == str(epochs) and params["model.width"] == "0.125" and params["family"] == "resnet"
    assert {m["key"] for m in run["data"]["metrics"]} >= {"model_params", "best_val_loss", "epochs_run"}
    assert run["info"]["status"] == "FINISHED"
    for key in (k for k in rows[0] if k != "epoch"):
        history = server.get("metrics/get-history", run_id=run_id, metric_key=key)["metrics"]
        assert sorted((int(m["step"]), float(m["value"])) for m in history) == [
            (int(float(r["epoch"])), pytest.approx(float(r[key]), rel=1e-9)) for r in rows], key
    files = {f["path"] for f in server.get("artifacts/list", run_id=run_id).get("files", [])}
    assert files >= {"resnet_history.csv", "resnet_curves.png"}
    version = server.get("registered-models/alias", name="convbench-resnet", alias="current")["model_version"]
    assert version["run_id"] == run_id


def test_training_logs_everything_to_the_server(server: Server, tmp_path: Path) -> None:
    base = project(tmp_path / "project", epochs=3)
    done = train(base, server.uri, MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL="0.5")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "unreachable" not in done.stderr and "system metrics" not in done.stderr
    assert_run_complete(server, base, epochs=3)
    run_id = json.loads(Layout(base).train_summary("resnet").read_text())["mlflow_run_id"]
    metrics = {m["key"] for m in server.get("runs/get", run_id=run_id)["run"]["data"]["metrics"]}
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= metrics
    assert not (base / "mlflow-spool").exists()


def test_training_survives_losing_the_server_and_sync_sends_the_rest(server: Server, tmp_path: Path) -> None:
    epochs = 6
    base = project(tmp_path / "project", epochs=epochs)
    stderr = tmp_path / "train.err"
    with stderr.open("w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "convbench.stages.train", "resnet"], cwd=base,
                                env=stage_env(base, server.uri), stdout=subprocess.PIPE, stderr=err, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            if f"resnet epoch 1/{epochs}" in line:
                break
        server.kill()
        proc.stdout.read()
        assert proc.wait(timeout=600) == 0, stderr.read_text()[-3000:]
    err_text = stderr.read_text()
    layout = Layout(base)
    assert layout.weights("resnet").is_file() and layout.train_summary("resnet").is_file()
    assert len(history_rows(base)) == epochs
    assert not layout.checkpoint("resnet").exists()
    spools = list((base / "mlflow-spool").iterdir())
    assert len(spools) == 1 and f"{spools[0] / 'calls.jsonl'}" in err_text, err_text
    assert err_text.count("unreachable since") == 1 and "python -m convbench.tracking sync" in err_text, err_text
    spooled = [json.loads(line) for line in (spools[0] / "calls.jsonl").read_text().splitlines()]
    assert {"metrics", "artifact", "model", "status"} <= {c["op"] for c in spooled}
    assert any(c["op"] == "metrics" and c["step"] == epochs for c in spooled)  # the last epoch went through the spool

    sync = [sys.executable, "-m", "convbench.tracking", "sync"]
    pending = subprocess.run(sync, cwd=base, env=stage_env(base, server.uri), capture_output=True, text=True, timeout=120)
    assert pending.returncode == 1 and pending.stderr.count("\n") == 1 and server.uri in pending.stderr, pending.stderr
    assert spools[0].is_dir()

    server.start()
    sent = subprocess.run(sync, cwd=base, env=stage_env(base, server.uri), capture_output=True, text=True, timeout=300)
    assert sent.returncode == 0, sent.stderr[-3000:]
    assert f"of run {spools[0].name} to {server.uri}" in sent.stdout, sent.stdout
    assert not spools[0].exists()
    assert_run_complete(server, base, epochs=epochs)


def test_an_unreachable_server_stops_training_before_it_starts(tmp_path: Path) -> None:
    base = project(tmp_path, epochs=3)
    uri = f"http://127.0.0.1:{free_port()}"
    began = time.monotonic()
    done = train(base, uri)
    took = time.monotonic() - began
    assert done.returncode == 2, done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and uri in lines[0] and "not reachable" in lines[0], done.stderr
    assert took < 30
    layout = Layout(base)
    assert not layout.checkpoint("resnet").exists() and not layout.weights("resnet").exists()
    assert not (base / "mlflow-spool").exists()


def test_run_logger_spools_while_the_store_fails_and_replays_in_order(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from mlflow.tracking import MlflowClient

    from convbench.tracking import store

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    client = MlflowClient(uri)
    run_id = client.create_run(store.ensure_store()).info.run_id
    flaky = FlakyClient(client)
    logger = RunLogger(flaky, run_id, retry_seconds=3600)
    notes = tmp_path / "notes.txt"
    notes.write_text("as logged")

    logger.log_params({"train.lr": "0.1"})
    flaky.mode = "drop"  # the store gets step 1, the logger never hears back
    logger.log_metrics({"loss": 1.0}, step=1)
    flaky.mode = "down"
    before = int(time.time() * 1000)
    logger.log_metrics({"loss": 0.5}, step=2)
    after = int(time.time() * 1000) + 1
    logger.log_params({"train.lr": "0.1"})  # identical again: harmless
    logger.log_artifact(notes)
    notes.write_text("changed later")
    assert logger.pending == 4 and (spool_root() / run_id / "calls.jsonl").is_file()
    flaky.mode = "up"
    logger.finish()

    assert logger.pending == 0 and not (spool_root() / run_id).exists()
    err = capsys.readouterr().err
    assert err.count("unreachable since") == 1 and "Connection reset by peer" in err and "answers again" in err, err
    history = client.get_metric_history(run_id, "loss")
    assert sorted((m.step, m.value) for m in history) == [(1, 1.0), (2, 0.5)]  # the replayed step 1 is not doubled
    assert before <= next(m.timestamp for m in history if m.step == 2) <= after  # measured, not replayed, time
    run = client.get_run(run_id)
    assert run.data.params == {"train.lr": "0.1"} and run.info.status == "FINISHED"
    assert Path(client.download_artifacts(run_id, "notes.txt", str(tmp_path / "down"))).read_text() == "as logged"
