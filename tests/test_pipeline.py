"""The DVC pipeline end to end on a tiny synthetic project.

One module-scoped project (a real git repo with DVC, this checkout's dvc.yaml
and src/), a copy of the session's reproduced one; the tests then check what DVC re-runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from mlflow.entities import Param

from dvcproject import FAMILIES, TINY_PARAMS, copy_project, run, stages_run

pytestmark = pytest.mark.slow  # end to end: DVC, torchrun, servers or the benchmark


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, reproduced_project: Path) -> tuple[Path, dict[str, str]]:
    """A committed tiny convbench project after one full ``dvc repro`` (this module's own copy)."""
    base = tmp_path_factory.mktemp("project")
    return base, copy_project(reproduced_project, base)


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


def test_second_repro_reruns_nothing_but_the_runs_summary(project: tuple[Path, dict[str, str]]) -> None:
    base, env = project
    before = (base / "reports" / "runs.json").read_bytes()
    out = run(["dvc", "repro"], base, env)
    assert stages_run(out) == {"runs"}, out  # always_changed: it looks at MLflow, finds nothing new
    assert (base / "reports" / "runs.json").read_bytes() == before and "Stage 'report' didn't change" in out


def test_a_new_mlflow_run_reruns_only_the_summary_and_the_report(project: tuple[Path, dict[str, str]]) -> None:
    """A finished run of another seed (as a queued experiment would log) reaches the report without -f."""
    from mlflow.tracking import MlflowClient

    base, env = project
    client = MlflowClient(f"sqlite:///{base / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("convbench").experiment_id
    source = client.search_runs([experiment], "tags.family = 'resnet' and attributes.status = 'FINISHED'")[0]
    copy = client.create_run(experiment, tags={"family": "resnet"}).info.run_id
    client.log_batch(copy, params=[Param(k, "7" if k == "train.seed" else v) for k, v in source.data.params.items()])
    client.log_metric(copy, "test_accuracy", source.data.metrics["test_accuracy"] + 0.01)
    client.set_terminated(copy)
    out = run(["dvc", "repro"], base, env)
    assert stages_run(out) == {"runs", "report"}, out
    seeds = (base / "reports" / "comparison.md").read_text().split("## Repeated seeds")[1].split("\n## ")[0]
    resnet = next(line for line in seeds.splitlines() if line.startswith("| ResNet"))
    assert resnet.split("|")[2].strip() == "2"


def test_metrics_are_listed_by_dvc(project: tuple[Path, dict[str, str]]) -> None:
    base, env = project
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], base, env))
    files = next(iter(shown.values()))["data"]
    assert set(files) == {f"reports/summary/{family}.json" for family in FAMILIES}  # the details stay out
    for family in FAMILIES:
        summary = files[f"reports/summary/{family}.json"]["data"]
        assert set(summary) == {"test_accuracy", "tta_accuracy", "train_seconds", "params", "macs"}
        assert 0.0 <= summary["test_accuracy"] <= 1.0 and summary["macs"] > 0


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


def test_cardinality_64_reruns_only_the_resnext_chain_at_fixed_complexity(project: tuple[Path, dict[str, str]]) -> None:
    base, env = project
    out = run(["dvc", "exp", "run", "-S", "resnext.cardinality=64"], base, env)
    assert stages_run(out) == {"train@resnext", "evaluate@resnext", "runs", "report"}, out
    stages = yaml.safe_load((base / "dvc.lock").read_text())["stages"]
    lock = stages["train@resnext"]["params"]["params.yaml"]
    assert lock["resnext"]["base_width"] == "auto" and lock["resnext"]["cardinality"] == 64
    assert stages["train@resnet"]["params"]["params.yaml"]["resnet"]["width"] == TINY_PARAMS["resnet"]["width"]
    section = (base / "reports" / "comparison.md").read_text().split("## ResNeXt: accuracy against")[1].split("\n## ")[0]
    rows = {cells[0]: cells[1:] for line in section.splitlines() if line.startswith("| ")
            for cells in [[c.strip() for c in line.strip("|").split("|")]] if cells[0][:1].isdigit()}
    assert set(rows) >= {"64 (baseline)", "4"}  # the new setting next to the default one, with both sizes
    assert rows["64 (baseline)"][2] == "1.00x" and rows["4"][2].endswith("x") and rows["4"][2] != "1.00x"
    assert "per doubling of C" in section
