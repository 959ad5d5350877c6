"""The committed ``reports/runs.json`` as the studies' record: a store that never held a recorded run (a fresh
clone, another machine) keeps it, flagged; a run the store deleted, or a changed recipe, drops it. Built on a real
sqlite MLflow store with constructed runs (no training)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from convbench.evaluation.studies import Runs, collect, encode_runs, load_runs, recipe_params, recorded_only
from convbench.params import Params
from convbench.tracking.store import EXPERIMENT

PARAMS = Params()


def log_run(client: MlflowClient, experiment: str, family: str, epochs: int, accuracy: float) -> str:
    """A finished run as training logs one: the family's params (with ``epochs``) and a test accuracy."""
    run_params = {**PARAMS.run_params(family), "train.epochs": str(epochs)}
    run_id = client.create_run(experiment).info.run_id
    client.log_batch(run_id, params=[Param(k, v) for k, v in run_params.items()],
                     metrics=[Metric("test_accuracy", accuracy, 0, 0)])
    client.set_terminated(run_id)
    return run_id


@pytest.fixture()
def store(tmp_path: Path) -> tuple[str, MlflowClient, str]:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    return uri, client, client.create_experiment(EXPERIMENT)


def recorded(entries: list[dict], recipe: dict[str, str] | None = None) -> Runs:
    return Runs(entries, None, recipe_params(PARAMS) if recipe is None else recipe)


def entry(run_id: str, family: str = "resnet", epochs: int = 16) -> dict:
    return {"run_id": run_id, "family": family, "seed": 0, "epochs": epochs, "start_time": 1, "model": {},
            "in_store": True, "test_accuracy": 0.87}


def test_runs_the_store_never_held_are_kept_and_flagged(store: tuple[str, MlflowClient, str]) -> None:
    uri, client, experiment = store
    here = log_run(client, experiment, "resnet", 4, 0.80)
    deleted = log_run(client, experiment, "resnet", 8, 0.84)
    client.delete_run(deleted)
    record = recorded([entry("elsewhere"), entry(deleted, epochs=8), entry(here, epochs=4)])

    runs = collect(uri, PARAMS, record)

    assert runs.error is None and runs.recipe == recipe_params(PARAMS)
    by_id = {r["run_id"]: r for r in runs.runs}
    assert set(by_id) == {here, "elsewhere"}  # the deleted run is gone; the store's own run is not doubled
    assert by_id[here]["in_store"] is True and by_id[here]["test_accuracy"] == pytest.approx(0.80)
    assert [r["run_id"] for r in recorded_only(runs)] == ["elsewhere"]
    assert by_id["elsewhere"]["test_accuracy"] == 0.87  # as recorded


def test_a_changed_recipe_drops_the_record(store: tuple[str, MlflowClient, str]) -> None:
    uri, client, experiment = store
    log_run(client, experiment, "vgg", 4, 0.83)
    other = recipe_params(dataclasses.replace(PARAMS, train=dataclasses.replace(PARAMS.train, lr=0.123)))
    assert other != recipe_params(PARAMS)
    assert recorded_only(collect(uri, PARAMS, recorded([entry("elsewhere")], other))) == []
    assert recorded_only(collect(uri, PARAMS, Runs([entry("elsewhere")]))) == []  # a record without its recipe


def test_an_absent_local_store_holds_nothing_and_keeps_the_record(tmp_path: Path) -> None:
    runs = collect(f"sqlite:///{tmp_path / 'none.db'}", PARAMS, recorded([entry("elsewhere")]))
    assert runs.error is None and [r["run_id"] for r in recorded_only(runs)] == ["elsewhere"]


def test_an_unreachable_server_keeps_the_record_as_it_was() -> None:
    runs = collect("http://127.0.0.1:9", PARAMS, recorded([entry("there")]))
    assert runs.error and "not reachable" in runs.error
    assert [(r["run_id"], r["in_store"]) for r in runs.runs] == [("there", True)]


def test_the_record_round_trips_with_its_recipe(tmp_path: Path, store: tuple[str, MlflowClient, str]) -> None:
    uri, client, experiment = store
    log_run(client, experiment, "resnext", 2, 0.72)
    runs = collect(uri, PARAMS, recorded([entry("elsewhere", "vgg")]))
    path = tmp_path / "runs.json"
    path.write_bytes(encode_runs(runs))
    assert load_runs(path) == runs
    assert encode_runs(collect(uri, PARAMS, load_runs(path))) == path.read_bytes()  # a second pass is a no-op
