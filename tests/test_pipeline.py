"""The DVC pipeline end to end on a tiny synthetic project.

One module-scoped project (a real git repo with DVC, this checkout's dvc.yaml
and src/) is reproduced once; the tests then check what DVC re-runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from dvcproject import FAMILIES, TINY_PARAMS, build_project, run, stages_run


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A committed tiny convbench project after one full ``dvc repro``."""
    base = tmp_path_factory.mktemp("project")
    return base, build_project(base)


def test_repro_builds_every_output(project: tuple[Path, dict[str, str]]) -> None:
    base, _ = project
    assert (base / "data" / "cache.pt").is_file()
    split = json.loads((base / "data" / "split.json").read_text())
    assert sum(len(v) for v in split.values()) == 36
    for family in FAMILIES:
        assert (base / "models" / f"{family}.pt").is_file()
        metrics = json.loads((base / "reports" / "metrics" / f"{family}.json").read_text())
        assert 0.0 <= metrics["test"]["accuracy"] <= 1.0
    assert (base / "reports" / "comparison.md").is_file()
    assert (base / "reports" / "dataset.md").is_file()


def test_second_repro_runs_nothing(project: tuple[Path, dict[str, str]]) -> None:
    base, env = project
    out = run(["dvc", "repro"], base, env)
    assert stages_run(out) == set(), out


def test_metrics_are_listed_by_dvc(project: tuple[Path, dict[str, str]]) -> None:
    base, env = project
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], base, env))
    files = next(iter(shown.values()))["data"]
    for family in FAMILIES:
        assert "accuracy" in files[f"reports/metrics/{family}.json"]["data"]["test"]


def test_changing_resnext_cardinality_reruns_only_its_chain(project: tuple[Path, dict[str, str]]) -> None:
    base, env = project
    out = run(["dvc", "exp", "run", "-S", "resnext.cardinality=2"], base, env)
    assert stages_run(out) == {"train@resnext", "evaluate@resnext", "report"}, out
    lock = yaml.safe_load((base / "dvc.lock").read_text())
    assert lock["stages"]["train@resnext"]["params"]["params.yaml"]["resnext"]["cardinality"] == 2
    resnet = lock["stages"]["train@resnet"]["params"]["params.yaml"]["resnet"]
    assert resnet["width"] == TINY_PARAMS["resnet"]["width"]


def test_training_runs_carry_their_dataset_in_mlflow(project: tuple[Path, dict[str, str]]) -> None:
    import hashlib

    from mlflow.tracking import MlflowClient

    base, _ = project
    client = MlflowClient(f"sqlite:///{base / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("convbench")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    runs = client.search_runs([experiment.experiment_id], "tags.family = 'resnet'")
    inputs = runs[-1].inputs.dataset_inputs
    assert len(inputs) == 1 and inputs[0].dataset.name == "tiny"
    assert inputs[0].dataset.digest == hashlib.md5((base / "data" / "tiny.zip").read_bytes()).hexdigest()
