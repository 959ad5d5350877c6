"""Accuracy against training budget, cost and cardinality: the facts (ranks, crossings, Pareto front, time to a
target, mismatches, trend), from constructed runs (no training, no MLflow)."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest

from convbench.evaluation import budget
from convbench.evaluation.report import TrendVerdict, budget_headline, budget_study, cardinality_study, cost
from convbench.evaluation.studies import Runs, SeedVerdict, budget_points, machine_label
from convbench.params import Params

PARAMS = Params()
TAGS = {"machine.cpu": "Test CPU 9000", "machine.cores": "2", "machine.cpu_bf16": "true", "machine.cpu_amx": "false",
        "machine.precision": "bf16"}
HERE = machine_label(TAGS)
NAMES = {"vgg": "VGG-11", "resnet": "ResNet-18", "resnext": "ResNeXt-20"}
# family -> epochs -> (seconds, test accuracy): VGG leads at 2 and 4 epochs, ResNeXt passes it at 8
CURVES = {
    "vgg": {2: (100.0, 0.70), 4: (200.0, 0.80), 8: (400.0, 0.84)},
    "resnet": {2: (120.0, 0.66), 4: (240.0, 0.78), 8: (480.0, 0.83)},
    "resnext": {2: (150.0, 0.60), 4: (300.0, 0.76), 8: (600.0, 0.86)},
}


def run(family: str, epochs: int, seconds: float, acc: float, seed: int = 0, machine: str = HERE) -> dict:
    config = {k: str(v) for k, v in vars(PARAMS.models[family]).items()}
    return {"run_id": f"{family}{epochs}{seed}", "family": family, "seed": seed, "epochs": epochs,
            "start_time": seed, "machine": machine, "model": config, "test_accuracy": acc,
            "test_tta_accuracy": acc + 0.01, "model_params": 1e6, "model_macs": 4e7, "train_seconds": seconds,
            "train_images_per_second": 45_000 * epochs / seconds, "epochs_run": epochs}


def curve_runs(seeds: tuple[int, ...] = (0,)) -> list[dict]:
    return [run(f, e, s + seed, a + 0.002 * seed, seed) for f, points in CURVES.items()
            for e, (s, a) in points.items() for seed in seeds]


def results() -> list[SimpleNamespace]:
    return [SimpleNamespace(family=f, name=n, train={"machine": TAGS}) for f, n in NAMES.items()]


def test_budget_points_group_runs_by_family_budget_and_machine() -> None:
    other = machine_label(TAGS | {"machine.cpu_bf16": "false", "machine.precision": "fp32"})
    runs = Runs(curve_runs((0, 1)) + [run("vgg", 4, 400.0, 0.80, machine=other)])
    points = budget_points(runs, PARAMS)
    assert len(points) == 10
    vgg4 = [p for p in points if (p.family, p.epochs, p.machine) == ("vgg", 4, HERE)][0]
    assert vgg4.test.n == 2 and vgg4.test.mean == pytest.approx(0.801) and vgg4.seconds == pytest.approx(200)  # the fastest seed
    assert vgg4.compute == pytest.approx(3 * 4e7 * 45_000 * 4)  # 3 x MACs x images seen
    assert [p.machine for p in points if (p.family, p.epochs) == ("vgg", 4)] == [HERE, other]


def test_ranks_crossings_front_and_time_to_target() -> None:
    points = budget_points(Runs(curve_runs((0, 1, 2))), PARAMS)
    ranked = budget.ranks(points, tta=False)
    assert [[p.family for p in r.order] for r in ranked] == [["vgg", "resnet", "resnext"]] * 2 + [
        ["resnext", "vgg", "resnet"]]
    assert ranked[2].margin == pytest.approx(0.02) and ranked[2].pair is not None and ranked[2].pair.seeds == 3
    assert ranked[0].verdict is SeedVerdict.ARCHITECTURE  # 3 of 3 seeds, a constant gap: p = 0
    flips = budget.crossings(ranked)
    assert {(c.low, c.high, c.passer, c.passed) for c in flips} == {(4, 8, "resnext", "vgg"), (4, 8, "resnext", "resnet")}
    front = budget.pareto_front(points, tta=False)
    assert [(p.family, p.epochs) for p in front] == [("vgg", 2), ("vgg", 4), ("vgg", 8), ("resnext", 8)]
    vgg = [p for p in points if p.family == "vgg"]
    # fastest seed, mean accuracy over seeds: 2 epochs 100 s 70.2 %, 4 epochs 200 s 80.2 %, 8 epochs 400 s 84.2 %
    assert budget.seconds_to(vgg, 0.80, tta=False) == pytest.approx(math.exp(
        math.log(100) + 0.98 * (math.log(200) - math.log(100))))
    assert budget.seconds_to(vgg, 0.90, tta=False) is None
    assert budget.seconds_to(vgg, 0.50, tta=False) == pytest.approx(100)  # below the shortest budget: its time
    assert budget.seconds_to(vgg, 0.822, tta=False) == pytest.approx((200 * 400) ** 0.5)  # half way, log time


def test_budget_section_table_figure_and_verdict(tmp_path: Path) -> None:
    study = budget_study(results(), Runs(curve_runs()), PARAMS, tmp_path)
    assert (tmp_path / "budget.png").stat().st_size > 10_000
    assert {(c.low, c.high, c.passer, c.passed) for c in study.crossings} == {(4, 8, "resnext", "vgg"),
                                                                              (4, 8, "resnext", "resnet")}
    eight = study.ranks[-1]
    assert eight.epochs == 8 and [p.family for p in eight.order] == ["resnext", "vgg", "resnet"]
    assert eight.margin == pytest.approx(0.02) and eight.pair is None  # one seed: no paired test
    assert study.here == HERE and study.epochs == [2, 4, 8]
    assert ["VGG-11", "8", "6.7 min"] == next(row[:3] for row in study.table.rows if row[:2] == ["VGG-11", "8"])
    assert not any("nan" in cell.lower() for row in study.table.rows + study.reach.rows for cell in row)


def test_budget_section_says_what_is_missing(tmp_path: Path) -> None:
    one = Runs([r for r in curve_runs() if r["epochs"] == 4])
    study = budget_study(results(), one, PARAMS, tmp_path)
    assert study.table is None and study.epochs == [4]
    assert not (tmp_path / "budget.png").exists()
    assert budget_study(results(), Runs([], "no store"), PARAMS, tmp_path).epochs == []


def test_seed_and_cardinality_studies_use_only_the_workspace_budget(tmp_path: Path) -> None:
    """A 16-epoch run of C = 16 is a budget point, not a cardinality point at the workspace's 4 epochs."""
    config = {k: str(v) for k, v in vars(PARAMS.models["resnext"]).items()}
    runs = Runs([run("resnext", 4, 300.0, 0.76), run("resnext", 4, 300.0, 0.76, seed=1)]
                + [run("resnext", 16, 900.0, 0.88) | {"model": config | {"cardinality": "16", "base_width": "6"}}])
    study = cardinality_study(runs, PARAMS, tmp_path)
    assert study.table is None and study.found == [f"{PARAMS.models['resnext'].cardinality}x"
                                                   f"{PARAMS.models['resnext'].base_width}d"]


def test_cardinality_section_with_no_spread_has_no_interval(tmp_path: Path) -> None:
    config = {k: str(v) for k, v in vars(PARAMS.models["resnext"]).items()}
    runs = Runs([run("resnext", 4, 300.0, 0.5, seed=s) | {"model": config | {"cardinality": str(c),
                                                                              "base_width": str(d)}}
                 for c, d in ((1, 40), (4, 24), (16, 6)) for s in (0, 1)])
    study = cardinality_study(runs, PARAMS, tmp_path)
    assert study.verdict is TrendVerdict.NO_INTERVAL and study.trend.ci is None
    assert not any("nan" in cell.lower() for row in study.table.rows for cell in row)
    assert ["16", "6"] == study.table.rows[-1][:2]
    assert [row[-1] for row in study.table.rows] == ["5.0 min"] * 3  # each setting's training time


def test_cost_section_says_when_matched_macs_are_not_matched_time() -> None:
    def result(family: str, macs: float, rate: float) -> SimpleNamespace:
        values = {"macs": macs, "params": 1e6, "train_images_per_second": rate}
        return SimpleNamespace(family=family, name=NAMES[family], train={"machine": TAGS},
                               metric=lambda key, v=values: v.get(key))

    found = cost([result("resnet", 43e6, 800.0), result("resnext", 42e6, 600.0)])
    assert found.base == "ResNeXt-20" and found.machines == [HERE]
    [mismatch] = found.mismatches
    assert mismatch.name == "ResNet-18" and mismatch.mac_ratio == pytest.approx(43 / 42)
    assert mismatch.time_ratio == pytest.approx(0.75)
    assert cost([result("resnet", 43e6, 800.0), result("resnext", 42e6, 810.0)]).mismatches == []


def test_the_headline_names_the_ranking_at_every_other_budget() -> None:
    headline = budget_headline(results(), Runs(curve_runs()), PARAMS)
    assert [(r.epochs, [p.family for p in r.order]) for r in headline.others] == [
        (2, ["vgg", "resnet", "resnext"]), (8, ["resnext", "vgg", "resnet"])]
    assert headline.changes
    assert budget_headline(results(), Runs([r for r in curve_runs() if r["epochs"] == 4]), PARAMS) is None
