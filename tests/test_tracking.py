"""The tracking package on a local sqlite store: what is an outage, what is an error, the alias, the UI tags."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from bench.synthetic import synthetic_cache
from convbench.errors import ConvbenchError
from convbench.evaluation.evaluate import log_evaluation
from convbench.evaluation.report import log_report
from convbench.models import create_model
from convbench.tracking import runlog, store
from convbench.tracking.runlog import RunLogger, Spool, is_outage, spool_root, sync
from convbench.models.weights import save_trained
from synthetic import synthetic_split
from flaky import FlakyClient


@pytest.fixture
def sqlite_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A fresh sqlite store as the project's, with the project root (and its spool) in ``tmp_path``."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    store.ensure_store()
    return MlflowClient(uri)


def test_the_experiment_opens_as_model_training_in_the_ui(sqlite_store: Any) -> None:
    experiment = sqlite_store.get_experiment_by_name(store.EXPERIMENT)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    sqlite_store.delete_experiment_tag(experiment.experiment_id, "mlflow.experimentKind")  # a store from before
    store.ensure_store()
    assert sqlite_store.get_experiment_by_name(store.EXPERIMENT).tags["mlflow.experimentKind"] == "custom_model_development"


def test_outages_and_genuine_errors_are_told_apart() -> None:
    from mlflow.exceptions import MlflowException

    lost = MlflowException("API request to http://h:5000/api/2.0/mlflow/runs/log-batch failed with exception "
                           "HTTPConnectionPool(host='h', port=5000): Max retries exceeded with url")
    assert is_outage(ConnectionError("[Errno 111] Connection refused")) and is_outage(lost)
    assert is_outage(store.ServerUnreachable("MLflow tracking server http://h is not reachable"))
    assert not is_outage(MlflowException("INVALID_PARAMETER_VALUE: Param value too long"))
    assert not is_outage(RuntimeError("torch.export failed to trace the model"))


class RefusingClient(FlakyClient):
    """A client whose store answers but refuses every write (a genuine error, not an outage)."""

    def __getattr__(self, name: str) -> Any:
        from mlflow.exceptions import MlflowException

        def refuse(*args: Any, **kwargs: Any) -> Any:
            raise MlflowException("INVALID_PARAMETER_VALUE: Metric value must be a number")

        return refuse if name.startswith("log") else getattr(self.client, name)


def test_a_refused_call_fails_in_one_line_and_is_not_spooled(sqlite_store: Any) -> None:
    run_id = sqlite_store.create_run(store.ensure_store()).info.run_id
    logger = RunLogger(RefusingClient(sqlite_store), run_id, retry_seconds=3600)
    with pytest.raises(ConvbenchError, match=r"^MLflow metrics of step 1 failed: MlflowException: INVALID_PARAM"):
        logger.log_metrics({"loss": 1.0}, step=1)
    assert logger.pending == 0 and not (spool_root() / run_id).exists()


def _weights(path: Path) -> Path:
    cache = synthetic_cache(classes=3, per_class=4, size=16)
    model = create_model("resnet", 3, width=0.125)
    save_trained(path, model, family="resnet", config={"width": 0.125}, cache=cache, best_epoch=1, mlflow_run_id="x")
    return path


def test_a_model_that_cannot_be_exported_fails_the_stage_instead_of_spooling(
        sqlite_store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_export(*args: Any, **kwargs: Any) -> int:
        raise RuntimeError("torch.export: could not trace data-dependent control flow")

    monkeypatch.setattr(store, "log_torch_model", broken_export)
    run_id = sqlite_store.create_run(store.ensure_store()).info.run_id
    logger = RunLogger(sqlite_store, run_id, retry_seconds=3600)
    with pytest.raises(ConvbenchError, match="MLflow model failed: RuntimeError: torch.export: could not trace"):
        logger.log_model(_weights(tmp_path / "w.pt"), "resnet", torch.zeros(2, 3, 16, 16).numpy())
    assert logger.pending == 0 and not (spool_root() / run_id).exists()


def test_sync_of_an_older_run_does_not_move_the_alias_backwards(sqlite_store: Any, tmp_path: Path) -> None:
    experiment = store.ensure_store()
    older = sqlite_store.create_run(experiment, start_time=1_000).info.run_id
    newer = sqlite_store.create_run(experiment, start_time=2_000).info.run_id
    weights, example = _weights(tmp_path / "w.pt"), torch.zeros(2, 3, 16, 16).numpy()
    name = store.registered_name("resnet")

    RunLogger(sqlite_store, newer).log_model(weights, "resnet", example)  # the newer training logged at once
    assert sqlite_store.get_model_version_by_alias(name, store.ALIAS).run_id == newer
    Spool(spool_root() / older).append({"op": "model", "weights": weights, "family": "resnet",
                                        "input_example": example})  # the older one was cut off
    assert sync() == 0
    versions = {v.run_id: int(v.version) for v in sqlite_store.search_model_versions(f"name = '{name}'")}
    assert versions[older] > versions[newer]  # registered later...
    assert sqlite_store.get_model_version_by_alias(name, store.ALIAS).run_id == newer  # ...but not current

    newest = sqlite_store.create_run(experiment, start_time=3_000).info.run_id
    RunLogger(sqlite_store, newest).log_model(weights, "resnet", example)
    assert sqlite_store.get_model_version_by_alias(name, store.ALIAS).run_id == newest


def _down(monkeypatch: pytest.MonkeyPatch, client: Any) -> FlakyClient:
    """Make every RunLogger started from now on talk to ``client`` through a client that is down."""
    flaky = FlakyClient(client)
    started = RunLogger.start.__func__

    def start(cls: type[RunLogger], *args: Any, **kwargs: Any) -> RunLogger:
        logger = started(cls, *args, **kwargs)
        logger._client = flaky
        flaky.mode = "down"
        return logger

    monkeypatch.setattr(RunLogger, "start", classmethod(start))
    return flaky


def test_evaluate_and_report_spool_when_the_server_goes_away_mid_stage(
        sqlite_store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "eval"
    (out / "figures").mkdir(parents=True)
    (out / "confusion.json").write_text("[[1]]")
    (out / "figures" / "confusion.png").write_bytes(b"png")
    report = tmp_path / "comparison.md"
    report.write_text("# report")
    flaky = _down(monkeypatch, sqlite_store)

    metrics = {"params": 1000, "macs": 5000, "test": {"accuracy": 0.75, "loss": 0.5}, "val": {"accuracy": 0.7},
               "inference": {"images_per_second": 123.0}, "machine": {"machine.cpu": "Test CPU"}}
    evaluated = log_evaluation("resnet", metrics, None, out, {"family": "resnet", "train.lr": "0.1"})
    reported = log_report(report, out / "figures", {"resnet_test_accuracy": 0.75})
    assert evaluated and reported
    err = capsys.readouterr().err
    assert err.count("unreachable since") == 2 and err.count(runlog.SYNC_COMMAND) == 2, err
    assert {p.name for p in spool_root().iterdir()} == {evaluated, reported}

    flaky.mode = "up"
    assert sync() == 0 and not any(spool_root().iterdir())
    run = sqlite_store.get_run(evaluated)
    assert run.data.metrics["test_accuracy"] == 0.75 and run.data.params["train.lr"] == "0.1"
    assert "evaluation_only" in run.data.tags and run.info.status == "FINISHED"
    assert run.data.tags["evaluate.machine.cpu"] == "Test CPU"  # what evaluated it
    assert {a.path for a in sqlite_store.list_artifacts(evaluated, "eval")} == {"eval/confusion.json", "eval/figures"}
    assert {a.path for a in sqlite_store.list_artifacts(reported)} >= {"comparison.md", "figures"}


def test_a_training_run_records_its_dataset(tmp_path: Path) -> None:
    archive = tmp_path / "tiny.zip"
    archive.write_bytes(b"not really a zip, but bytes with an md5")
    cache = synthetic_cache(classes=3, per_class=10, size=16)
    dataset = store.dataset_input(str(archive), cache, synthetic_split(3, 10))
    assert dataset["name"] == "tiny" and dataset["digest"] == hashlib.md5(archive.read_bytes()).hexdigest()
    features = json.loads(json.loads(dataset["schema"])["mlflow_tensorspec"]["features"])
    assert features[0]["tensor-spec"]["shape"] == [-1, 3, 16, 16]
    assert json.loads(dataset["profile"])["train_images"] == 18


def test_ui_link_opens_the_model_training_view() -> None:
    """MLflow 3.17 opens experiments in its GenAI overview unless the link asks for the Model training view."""
    assert store.ui_link("sqlite:////p/mlflow.db", "3") == \
        "http://127.0.0.1:5000/#/experiments/3?workflowType=machine_learning"
    assert store.ui_link("http://tracker:8080/", "7") == "http://tracker:8080/#/experiments/7?workflowType=machine_learning"
    assert "mlflow ui --backend-store-uri sqlite:////p/mlflow.db" in store.ui_hint("sqlite:////p/mlflow.db", "3")
    assert store.ui_hint("http://tracker:8080", "7") == "MLflow runs: http://tracker:8080/#/experiments/7?workflowType=machine_learning"


@pytest.mark.parametrize("enabled", [None, "false"])
def test_a_training_run_samples_the_machine_unless_turned_off(
        sqlite_store: Any, monkeypatch: pytest.MonkeyPatch, enabled: str | None) -> None:
    """MLflow's system metrics (CPU, memory) in the run until it finishes, sampled twice a second here."""
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.5")
    if enabled is not None:
        monkeypatch.setenv("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", enabled)
    logger = RunLogger.start("vgg", {"family": "vgg"}, system_metrics=True)
    time.sleep(2)
    logger.finish()
    run = sqlite_store.get_run(logger.run_id)
    system = {k for k in run.data.metrics if k.startswith("system/")}
    if enabled == "false":
        assert not system
        return
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= system
    assert len(sqlite_store.get_metric_history(logger.run_id, "system/cpu_utilization_percentage")) >= 2
    assert run.info.status == "FINISHED"
