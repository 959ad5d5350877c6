"""End to end on a tiny synthetic project: the real train stage, then evaluate and report, MLflow in a tmp store."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from convbench.evaluation import markdown as md
from convbench.paths import Layout
from mdtables import summary_cells
from synthetic import write_params, write_synthetic_project

pytestmark = pytest.mark.slow  # end to end: DVC, torchrun, servers or the benchmark

FAMILIES = ("vgg", "resnet", "resnext")
SECTIONS: dict[str, Any] = {
    "data": {"image_size": 32},
    "train": {"epochs": 2, "batch_size": 16, "eval_batch_size": 32, "lr": 0.05, "warmup_fraction": 0.25,
              "precision": "fp32", "channels_last": "off", "threads": 1},
    "vgg": {"depth": 11, "width": 0.125},
    "resnet": {"depth": 18, "width": 0.125},
    "resnext": {"depth": 29, "cardinality": 2, "base_width": 16, "width": 0.125},
}


def run(module: str, *argv: str) -> None:
    """Run a stage's ``main`` in-process (one interpreter: imports are paid once) and require success."""
    import importlib

    assert importlib.import_module(module).main(list(argv)) == 0, f"{module} {argv} failed"


def train_and_evaluate(*families: str) -> None:
    for family in families:
        run("convbench.stages.train", family)
        run("convbench.stages.evaluate", family)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """cache + split, train all three families for 2 epochs, evaluate them, write the report."""
    base = tmp_path_factory.mktemp("project")
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(base)
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{base / 'mlflow.db'}")
        mp.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        mp.setenv("DVC_NO_ANALYTICS", "1")
        write_synthetic_project(base, classes=3, per_class=30, size=32)
        write_params(base, SECTIONS)
        run("convbench.tracking.__main__")
        train_and_evaluate(*FAMILIES)
        run("convbench.stages.runs")
        run("convbench.stages.report")
        yield base
    torch.set_num_threads(threads)


def test_report_matches_the_metrics_files_and_links_existing_images(project: Path) -> None:
    text = (project / "reports" / "comparison.md").read_text()
    rows = summary_cells(text)
    names = {"vgg": "VGG-11", "resnet": "ResNet-18", "resnext": "ResNeXt-29 2×16d"}
    assert set(rows) == set(names.values())
    for family, name in names.items():
        metrics = json.loads(Layout(project).metrics(family).read_text())
        cell = rows[name]
        assert cell["Test acc"] == md.pct(metrics["test"]["accuracy"])
        assert cell["Val acc"] == md.pct(metrics["val"]["accuracy"])
        assert cell["Test loss"] == md.loss(metrics["test"]["loss"])
        assert cell["Val loss"] == md.loss(metrics["val"]["loss"])
        assert cell["Params"] == md.count(metrics["params"])
        assert cell["MACs"] == md.count(metrics["macs"])
        assert cell["Best epoch"] == str(metrics["best_epoch"])
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert "figures/learning_curves.png" in links and "figures/confusion.png" in links
    for link in links:
        assert (project / "reports" / link).is_file(), link
    assert "Fewer than two comparable" in text  # one ResNeXt setting so far


def test_metrics_and_predictions_files(project: Path) -> None:
    layout = Layout(project)
    split = json.loads(layout.split.read_text())
    for family in FAMILIES:
        metrics = json.loads(layout.metrics(family).read_text())
        train = json.loads(layout.train_summary(family).read_text())
        for keys in (("test", "accuracy"), ("test", "loss"), ("val", "accuracy"), ("val", "loss"),
                     ("test", "macro_f1"), ("inference", "images_per_second"), ("inference", "latency_ms")):
            assert isinstance(metrics[keys[0]][keys[1]], float), keys
        assert 0.0 <= metrics["test"]["accuracy"] <= 1.0
        low, high = metrics["test"]["accuracy_ci"]
        assert low <= metrics["test"]["accuracy"] <= high
        for key in ("params", "macs", "best_epoch", "train_seconds", "train_images_per_second"):
            assert metrics[key] == train[key]
        predictions = pd.read_csv(layout.eval_dir(family) / "predictions.csv")
        assert predictions["index"].tolist() == split["test"]  # test-split order, cache indices
        hits = (predictions["label"] == predictions["pred"]).mean()
        assert hits == pytest.approx(metrics["test"]["accuracy"])
        tta_hits = predictions["label"] == predictions["tta_pred"]  # the defaults rank by 6-view TTA
        assert metrics["ranked_by"] == "tta" and metrics["tta"] == {"mode": "flip_translate", "views": 6}
        assert tta_hits.mean() == pytest.approx(metrics["test_tta"]["accuracy"])
        low, high = metrics["test_tta"]["accuracy_ci"]
        assert low <= metrics["test_tta"]["accuracy"] <= high
        confusion = json.loads((layout.eval_dir(family) / "confusion.json").read_text())
        assert sum(map(sum, confusion["matrix"])) == len(split["test"])
        assert confusion["predictions"] == "tta"
        assert np.trace(np.array(confusion["matrix"])) == tta_hits.sum()  # the ranked predictions' matrix
        assert (layout.eval_dir(family) / "confusion.png").stat().st_size > 1000


def test_evaluation_is_logged_to_the_training_run(project: Path) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    for family in ("resnet", "resnext"):
        train = json.loads(Layout(project).train_summary(family).read_text())
        metrics = json.loads(Layout(project).metrics(family).read_text())
        run = client.get_run(train["mlflow_run_id"])
        assert run.data.metrics["test_accuracy"] == pytest.approx(metrics["test"]["accuracy"])
        assert run.data.metrics["test_tta_accuracy"] == pytest.approx(metrics["test_tta"]["accuracy"])
        assert run.data.metrics["eval_val_loss"] == pytest.approx(metrics["val"]["loss"])
        assert run.info.status == "FINISHED"
    reports = client.search_runs([run.info.experiment_id], "tags.kind = 'report'")
    assert len(reports) == 1
    assert {a.path for a in client.list_artifacts(reports[0].info.run_id)} >= {"comparison.md", "figures"}


def test_restored_outputs_without_the_training_run_or_a_reachable_store(
        project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """What a DVC run-cache restore looks like: the files exist, the store does not know the runs."""
    copy = tmp_path / "copy"
    shutil.copytree(project, copy, ignore=shutil.ignore_patterns("mlflow.db", "mlartifacts"))
    monkeypatch.chdir(copy)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # nothing listens on the discard port
    before = (copy / "reports" / "comparison.md").read_text()
    run("convbench.stages.evaluate", "vgg")
    run("convbench.stages.runs")
    run("convbench.stages.report")
    err = capsys.readouterr().err
    assert "not logged to MLflow" in err
    after = (copy / "reports" / "comparison.md").read_text()
    assert "MLflow runs could not be read: MLflow tracking server http://127.0.0.1:9 is not reachable" in after
    assert summary_cells(after)["ResNet-18"] == summary_cells(before)["ResNet-18"]

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'fresh.db'}")  # a store without the runs
    run("convbench.stages.evaluate", "resnext")
    from mlflow.tracking import MlflowClient

    runs = MlflowClient(f"sqlite:///{tmp_path / 'fresh.db'}").search_runs(
        [MlflowClient(f"sqlite:///{tmp_path / 'fresh.db'}").get_experiment_by_name("convbench").experiment_id])
    assert len(runs) == 1 and "evaluation_only" in runs[0].data.tags
    assert runs[0].data.params["model.cardinality"] == "2" and "test_accuracy" in runs[0].data.metrics


def test_cardinality_study_reads_comparable_runs_from_mlflow(project: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(project, copy, ignore=shutil.ignore_patterns("mlflow.db", "mlartifacts"))
    monkeypatch.chdir(copy)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{project / 'mlflow.db'}")
    sections = yaml.safe_load((copy / "params.yaml").read_text())
    sections["resnext"]["cardinality"] = 1
    write_params(copy, sections)
    train_and_evaluate("resnext")
    run("convbench.stages.runs")
    run("convbench.stages.report")
    text = (copy / "reports" / "comparison.md").read_text()
    section = text.split("## ResNeXt: accuracy against cardinality")[1].split("\n## ")[0]
    rows = [line for line in section.splitlines() if re.match(r"\| \d+( \(baseline\))? \| 16 \|", line)]
    assert [row.split("|")[1].strip() for row in rows] == ["1 (baseline)", "2"]
    assert (copy / "reports" / "figures" / "cardinality.png").is_file()
