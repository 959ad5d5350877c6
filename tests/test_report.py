"""The comparison report from synthetic metrics, predictions and histories (no training, no MLflow).

The tests assert on the page's facts (:class:`convbench.evaluation.report.Page`: tables, numbers, verdict enums);
its wording is pinned once, by the golden file ``tests/golden/comparison.md`` (see
:func:`test_the_rendered_page_matches_the_golden_file`).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from convbench.data.format import Cache, save_cache
from convbench.files import write_json
from convbench.errors import ConvbenchError
from convbench.evaluation import markdown as md
from convbench.evaluation.evaluate import SplitScores, split_metrics, write_eval_dir
from convbench.evaluation.discussion import Compute, Contrast, Extreme, FitVerdict, Lead, Stop
from convbench.evaluation.report import (
    Origin, Page, TrendVerdict, cardinality_study, render, seconds_to_reach, write_report,
)
from convbench.evaluation.stats import bootstrap_ci, mcnemar_exact
from convbench.evaluation.studies import Runs, SeedVerdict
from convbench.config import to_dict
from convbench.params import parse_params
from convbench.paths import Layout
from mdtables import summary_cells, table

CLASSES = ["cat", "dog", "car"]
N_IMAGES = 120
TEST = np.arange(60, 120)
VAL = np.arange(30, 60)
SECTIONS: dict[str, Any] = {
    "data": {"image_size": 8},
    "train": {"epochs": 4, "patience": 2},
    "vgg": {"depth": 11, "width": 0.25},
    "resnet": {"depth": 18, "width": 0.25},
    "resnext": {"depth": 29, "cardinality": 8, "base_width": 16, "width": 0.25},
}
NAMES = {"vgg": "VGG-11", "resnet": "ResNet-18", "resnext": "ResNeXt-29 8×16d"}
ORIGIN = Origin("0123abc (test commit)", "2.x", "Test-OS")
"""What wrote the page, injected so that the page does not depend on the machine that runs the test."""
GOLDEN = Path(__file__).parent / "golden" / "comparison.md"


def labels_of(index: np.ndarray) -> np.ndarray:
    return index % len(CLASSES)


def wrong_on(positions: range | list[int]) -> np.ndarray:
    """A per-test-image hit mask that misses the given positions."""
    hits = np.ones(len(TEST), dtype=bool)
    hits[list(positions)] = False
    return hits


def write_cache(layout: Layout) -> None:
    images = torch.randint(0, 256, (N_IMAGES, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    labels = torch.as_tensor(labels_of(np.arange(N_IMAGES)))
    save_cache(layout.cache, Cache(
        images=images, labels=labels, onehot=torch.nn.functional.one_hot(labels, 3).to(torch.uint8),
        classes=CLASSES, mean=torch.full((3,), 0.5), std=torch.full((3,), 0.25), counts=torch.full((3,), 40),
        origin=torch.zeros(N_IMAGES, dtype=torch.uint8), files=[f"{i}.png" for i in range(N_IMAGES)],
        skipped=[], ignored=[]))


def scores(index: np.ndarray, hits: np.ndarray, loss: float) -> SplitScores:
    labels = labels_of(index)
    preds = np.where(hits, labels, (labels + 1) % len(CLASSES))
    return SplitScores(index, labels, preds, np.linspace(0.4, 0.99, len(index)), loss)


def write_family(layout: Layout, family: str, hits: np.ndarray, *, val_acc: float, loss: float,
                 params: int, macs: int, seconds: float, history: list[tuple[float, float, float, float]],
                 best_epoch: int, stopped_early: bool = False, tta_hits: np.ndarray | None = None) -> dict[str, Any]:
    """Everything the train and evaluate stages would leave for one family (ranked by TTA if ``tta_hits``)."""
    test = {"plain": scores(TEST, hits, loss)} | ({} if tta_hits is None else {"tta": scores(TEST, tta_hits, loss - 0.05)})
    ranked_by = "plain" if tta_hits is None else "tta"
    val_hits = np.arange(len(VAL)) < round(val_acc * len(VAL))
    val_summary, _, _ = split_metrics(scores(VAL, val_hits, loss + 0.01), CLASSES)
    summaries = {}
    for kind, split in test.items():
        summaries[kind], per_class, matrix = split_metrics(split, CLASSES)
        low, high = bootstrap_ci(split.labels == split.preds, 500)
        summaries[kind] |= {"accuracy_ci": [low, high], "accuracy_ci_low": low, "accuracy_ci_high": high}
    write_eval_dir(layout.eval_dir(family), family, CLASSES, test, ranked_by, per_class, matrix, {
        "config": SECTIONS[family], "image_size": 8, "torch": "2.x", "python": "3.x",
        "convolutions": {"grouped_layers": 9, "grouped_params": 1000, "grouped_dense_equivalent": 8000}
        if family == "resnext" else {"grouped_layers": 0, "grouped_params": 0, "grouped_dense_equivalent": 0}})
    rows = ["epoch,train_loss,train_accuracy,val_loss,val_accuracy,lr,seconds,images_per_second"]
    rows += [f"{e},{tl},{ta},{vl},{va},0.1,{seconds / len(history)},1000" for e, (tl, ta, vl, va) in
             enumerate(history, 1)]
    layout.history(family).parent.mkdir(parents=True, exist_ok=True)
    layout.history(family).write_text("\n".join(rows) + "\n")
    train = {"best_epoch": best_epoch, "epochs_run": len(history), "stopped_early": stopped_early,
             "train_seconds": seconds, "train_images_per_second": 72 * len(history) / seconds, "params": params,
             "macs": macs, "device": "cpu", "precision": "fp32", "mlflow_run_id": None}
    write_json(layout.train_summary(family), train)
    tta = {} if tta_hits is None else {"test_tta": summaries["tta"], "tta": {"mode": "flip_translate", "views": 6}}
    metrics = {"test": summaries["plain"], **tta, "ranked_by": ranked_by, "val": val_summary, "params": params,
               "macs": macs, "best_epoch": best_epoch,
               "epochs_run": len(history), "train_seconds": seconds,
               "train_images_per_second": train["train_images_per_second"],
               "inference": {"images_per_second": 5000.0 * 1e6 / macs, "latency_ms": macs / 1e6,
                             "batch_size": 60, "latency_runs": 5, "device": "cpu", "precision": "fp32",
                             "channels_last": False, "threads": 1}}
    write_json(layout.metrics(family), metrics)
    return metrics


CURVE_SMOOTH = [(1.0, 0.5, 0.9, 0.6), (0.8, 0.65, 0.8, 0.7), (0.6, 0.75, 0.7, 0.78), (0.5, 0.8, 0.65, 0.8)]
CURVE_OVERFIT = [(1.0, 0.6, 0.9, 0.6), (0.5, 0.85, 0.7, 0.75), (0.2, 0.95, 0.8, 0.7), (0.1, 0.99, 0.95, 0.72)]
CURVE_JUMPY = [(1.0, 0.5, 0.9, 0.6), (0.8, 0.65, 0.7, 0.8), (0.6, 0.75, 0.9, 0.6), (0.5, 0.8, 0.6, 0.82)]


def make_project(base: Path, hits: dict[str, np.ndarray] | None = None,
                 tta_hits: dict[str, np.ndarray] | None = None) -> dict[str, dict[str, Any]]:
    """Three families: ResNeXt best by default; vs ResNet b=10, c=3 (p=0.092), vs VGG b=9, c=0 (p=0.0039)."""
    layout = Layout(base)
    write_cache(layout)
    hits = hits or {"resnext": wrong_on(range(0, 3)), "resnet": wrong_on(range(3, 13)), "vgg": wrong_on(range(0, 12))}
    tta = tta_hits or {}
    return {
        "vgg": write_family(layout, "vgg", hits["vgg"], val_acc=0.8, loss=0.61, params=900_000, macs=40_000_000,
                            seconds=30.0, history=CURVE_OVERFIT, best_epoch=2, stopped_early=True,
                            tta_hits=tta.get("vgg")),
        "resnet": write_family(layout, "resnet", hits["resnet"], val_acc=0.8333, loss=0.52, params=700_000,
                               macs=35_000_000, seconds=40.0, history=CURVE_SMOOTH, best_epoch=4,
                               tta_hits=tta.get("resnet")),
        "resnext": write_family(layout, "resnext", hits["resnext"], val_acc=0.9, loss=0.33, params=500_000,
                                macs=60_000_000, seconds=80.0, history=CURVE_JUMPY, best_epoch=4,
                                tta_hits=tta.get("resnext")),
    }


def build(base: Path, runs: Runs = Runs([], "MLflow not used in this test"), **kwargs: Any) -> tuple[str, Page]:
    """Make the project, write its report; the text and the facts."""
    make_project(base, **kwargs)
    path, _, page = write_report(parse_params(SECTIONS), runs, Layout(base), ORIGIN)
    return path.read_text(), page


def table_rows(text: str, first_header: str) -> dict[str, list[str]]:
    """The rows of the pipe table whose first header cell is ``first_header``, keyed by first cell."""
    return table(text, first_header)[1]


def write_lock(base: Path) -> None:
    """A dvc.lock with the dataset archive's md5, for the footer."""
    (base / "dvc.lock").write_text(
        "schema: '2.0'\nstages:\n  unzip:\n    cmd: x\n    deps:\n    - path: data/cifar10.zip\n"
        "      hash: md5\n      md5: 0123456789abcdef0123456789abcdef\n      size: 10\n")


@pytest.fixture(scope="module")
def default(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, dict[str, dict[str, Any]], Page]:
    """One report of the default synthetic project, shared by the read-only tests (figures are slow)."""
    base = tmp_path_factory.mktemp("report")
    write_lock(base)
    metrics = make_project(base)
    path, results, page = write_report(parse_params(SECTIONS), Runs([], "MLflow not used in this test"),
                                       Layout(base), ORIGIN)
    assert [r.family for r in results] == ["vgg", "resnet", "resnext"]
    return base, path.read_text(), metrics, page


def test_summary_table_has_a_row_per_model_with_the_metrics_numbers(default: tuple) -> None:
    _, text, metrics, _ = default
    rows = summary_cells(text)
    assert set(rows) == set(NAMES.values())
    assert len(table(text, "Model")[0]) <= 9  # the columns a reader compares; the rest are details
    for family, name in NAMES.items():
        cell = rows[name]
        m = metrics[family]
        assert cell["Test acc"] == md.pct(m["test"]["accuracy"])
        assert cell["Val acc"] == md.pct(m["val"]["accuracy"])
        assert cell["Test loss"] == md.loss(m["test"]["loss"])
        assert cell["Params"] == md.count(m["params"])
        assert cell["MACs"] == md.count(m["macs"])
        assert cell["Best epoch"] == str(m["best_epoch"])


def test_summary_says_whether_the_models_cost_the_same(default: tuple, tmp_path: Path) -> None:
    """MACs 40 M, 35 M, 60 M: ResNeXt needs 1.71x ResNet's; then 40, 36, 44 M: 1.22x."""
    page = default[3]
    cost = page.summary.cost
    assert (cost.high, cost.low, cost.matched) == (NAMES["resnext"], NAMES["resnet"], False)
    assert cost.ratio == pytest.approx(60 / 35)
    assert page.discussion.architecture.compute is Compute.DIFFERENT  # this pair cannot separate C from size
    make_project(tmp_path)
    for family, macs in (("vgg", 40_000_000), ("resnet", 36_000_000), ("resnext", 44_000_000)):
        metrics = json.loads(Layout(tmp_path).metrics(family).read_text())
        write_json(Layout(tmp_path).metrics(family), metrics | {"macs": macs})
    _, _, page = write_report(parse_params(SECTIONS), Runs([], "unused"), Layout(tmp_path), ORIGIN)
    assert page.summary.cost.matched and page.summary.cost.ratio == pytest.approx(44 / 36)
    # ResNeXt at 1.22x ResNet's MACs: similar compute, but one seed does not make the gap architectural
    assert page.discussion.architecture.compute is Compute.SIMILAR


def test_time_to_accuracy_column_and_figure(default: tuple) -> None:
    """Threshold: lowest final val accuracy (VGG 72 %) minus 2 points; each model first reaches 70 % at epoch 2."""
    base, text, _, page = default
    rows = summary_cells(text)
    reach = {family: rows[name]["Time to 70.0 % val"] for family, name in NAMES.items()}
    assert reach == {"vgg": "15.0 s", "resnet": "20.0 s", "resnext": "40.0 s"}  # 2 of 4 epochs of 30, 40, 80 s
    assert page.time.threshold == 0.70 and page.time.first == Extreme(NAMES["vgg"], 15.0)
    assert (base / "reports" / "figures" / "time_to_accuracy.png").stat().st_size > 0


def test_seconds_to_reach_is_none_when_never_reached() -> None:
    history = pd.DataFrame({"val_accuracy": [0.5, 0.6], "seconds": [10.0, 12.0]})
    assert seconds_to_reach(history, 0.6) == 22.0
    assert seconds_to_reach(history, 0.61) is None and seconds_to_reach(None, 0.5) is None


def test_best_values_are_bold_with_the_right_direction(default: tuple) -> None:
    text = default[1]
    rows = summary_cells(text, bold=True)

    def bold(name: str, column: str) -> bool:
        return rows[name][column].startswith("**")

    assert bold(NAMES["resnext"], "Test acc") and not bold(NAMES["vgg"], "Test acc")
    assert bold(NAMES["resnext"], "Test loss")  # lowest loss
    assert bold(NAMES["resnext"], "Params")  # fewest params
    assert bold(NAMES["resnet"], "MACs") and not bold(NAMES["resnext"], "MACs")  # fewest MACs
    assert bold(NAMES["vgg"], "Train time")  # shortest
    assert bold(NAMES["resnet"], "Infer img/s") and bold(NAMES["resnet"], "Latency ms")
    assert not any(r["95 % CI"].startswith("**") for r in rows.values())


def test_pairwise_mcnemar_counts_and_p_values(default: tuple) -> None:
    text = default[1]
    rows = table_rows(text, "Pair (A vs B)")
    resnet_vs_resnext = rows[f"{NAMES['resnet']} vs {NAMES['resnext']}"]
    assert resnet_vs_resnext[:2] == ["3", "10"]  # only ResNet right: 3, only ResNeXt right: 10
    assert resnet_vs_resnext[3] == md.p_value(mcnemar_exact(3, 10))
    assert resnet_vs_resnext[4] == "no"
    vgg_vs_resnext = rows[f"{NAMES['vgg']} vs {NAMES['resnext']}"]
    assert vgg_vs_resnext[:2] == ["0", "9"]
    assert vgg_vs_resnext[3] == md.p_value(2 / 2**9) == "0.003906"
    assert vgg_vs_resnext[4:] == ["yes", "yes"]  # 0.0039 < 0.05 / 3


def test_discussion_follows_the_numbers(default: tuple, tmp_path: Path) -> None:
    first = default[3].discussion
    assert [m.name for m in first.ranking.order] == [NAMES["resnext"], NAMES["resnet"], NAMES["vgg"]]
    assert first.ranking.epochs == 4 and first.ranking.margin == pytest.approx(0.1167, abs=1e-4)
    assert first.ranking.lead is Lead.NOT_SIGNIFICANT  # 10 vs 3 discordant pairs: p = 0.09
    assert first.ranking.grouped is None  # ResNeXt won
    assert first.architecture.contrast is Contrast.AHEAD

    # VGG now clearly best: wrong on 1 image; ResNeXt wrong on 25, a superset of ResNet's 10
    _, swapped = build(tmp_path, hits={"resnext": wrong_on(range(0, 25)), "resnet": wrong_on(range(3, 13)),
                                       "vgg": wrong_on([59])})
    ranking = swapped.discussion.ranking
    assert ranking.order[0].name == NAMES["vgg"] and ranking.lead is Lead.SIGNIFICANT
    assert ranking.grouped.place == 3 and ranking.grouped.gap == pytest.approx(59 / 60 - 35 / 60)
    assert swapped.discussion.architecture.contrast is Contrast.BEHIND_SIGNIFICANT  # b=0, c=15


def test_ranked_by_tta_uses_the_tta_predictions_everywhere(tmp_path: Path) -> None:
    """Single view: ResNeXt best (as in the default project); with TTA, ResNet is right on every image."""
    tta = {"resnext": wrong_on(range(0, 3)), "resnet": wrong_on([]), "vgg": wrong_on(range(0, 12))}
    metrics = make_project(tmp_path, tta_hits=tta)
    path, _, page = write_report(parse_params(SECTIONS), Runs([], "MLflow not used in this test"), Layout(tmp_path),
                                 ORIGIN)
    text = path.read_text()
    rows = summary_cells(text)
    for family, name in NAMES.items():
        cell = rows[name]
        assert cell["Test acc"] == md.pct(metrics[family]["test"]["accuracy"])
        assert cell["TTA acc"] == md.pct(metrics[family]["test_tta"]["accuracy"])
        assert cell["TTA loss"] == md.loss(metrics[family]["test_tta"]["loss"])
        low, high = metrics[family]["test_tta"]["accuracy_ci"]
        assert cell["95 % CI"] == f"{md.pct(low)} – {md.pct(high)}"
    assert page.summary.ranked_by_tta and page.summary.tta_views == 6
    ranking = page.discussion.ranking
    assert ranking.tta and ranking.order[0].name == NAMES["resnet"] and ranking.order[1].name == NAMES["resnext"]
    assert ranking.margin == pytest.approx(0.05)
    pair = table_rows(text, "Pair (A vs B)")[f"{NAMES['resnet']} vs {NAMES['resnext']}"]
    assert pair[:2] == ["3", "0"]  # McNemar on the TTA hits: only ResNet right on 3 images, only ResNeXt on none
    assert {m.name: m.wrong for m in page.gallery}[NAMES["resnet"]] == 0  # the gallery too
    assert page.discussion.efficiency.table.headers[:2] == ["Model", "TTA acc"]  # efficiency per parameter and MAC

    plain = make_project(tmp_path / "mixed", tta_hits={"resnet": wrong_on([])})
    assert plain["vgg"]["ranked_by"] == "plain"
    with pytest.raises(ConvbenchError, match="ranked by test-time augmentation and some not"):
        write_report(parse_params(SECTIONS), Runs([], "unused"), Layout(tmp_path / "mixed"))


def test_training_analysis_reports_overfitting_early_stopping_and_volatility(default: tuple) -> None:
    training = default[3].discussion.training
    curves = {c.family: c for c in training.curves}
    assert curves["vgg"].fit.verdict is FitVerdict.OVERFITTING and curves["vgg"].stop is Stop.EARLY
    assert curves["vgg"].fit.epochs_run == 4 and curves["resnet"].stop is Stop.LAST_EPOCH
    assert training.jumpy.name == NAMES["resnext"]
    train_rows = dict((row[0], row[1:]) for row in training.table.rows)
    assert train_rows[NAMES["vgg"]][0] == "2 / 4 / 4"
    assert train_rows[NAMES["vgg"]][3] == md.points(0.99 - 0.72)  # train-val gap at the last epoch


def test_architecture_section_uses_params_and_measured_grouping(default: tuple) -> None:
    architecture = default[3].discussion.architecture
    assert architecture.grouped.config["cardinality"] == 8 and architecture.grouped.config["base_width"] == 16
    dense = architecture.dense
    assert dense.other.name == NAMES["resnet"]
    assert dense.params_ratio == pytest.approx(5 / 7) and dense.macs_ratio == pytest.approx(60 / 35)
    assert architecture.grouping.dense == 8000  # grouped 1000 params -> 8000 dense
    [vgg] = architecture.others
    assert vgg.other.name == NAMES["vgg"] and vgg.params_ratio == pytest.approx(5 / 9)
    assert vgg.macs_ratio == pytest.approx(1.5) and vgg.difference == pytest.approx(0.15)


def test_every_linked_image_exists_and_links_are_relative(default: tuple) -> None:
    base, text, _, _ = default
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert {"figures/learning_curves.png", "figures/confusion.png", "figures/per_class.png",
            "figures/misclassified_resnext.png"} <= set(links)
    for link in links:
        assert not Path(link).is_absolute()
        assert (base / "reports" / link).stat().st_size > 1000
    assert "cardinality.png" not in text  # no sweep: no plot


def test_per_class_table_marks_best_model_per_class(default: tuple) -> None:
    text = default[1]
    rows = table_rows(text, "Class")
    assert set(rows) == set(CLASSES)
    # ResNeXt misses positions 0-2 = one image of each class (labels cycle): 19/20 per class
    assert all(cells[-1] == f"**{md.pct(19 / 20)}**" for cells in rows.values())
    assert rows["cat"][:2] == [md.pct(16 / 20), md.pct(16 / 20)]  # not bold: ResNeXt is better


def mlflow_run(family: str, seed: int, accuracy: float, **model: Any) -> dict[str, Any]:
    """One entry of reports/runs.json: a finished run of ``family`` with SECTIONS' model except ``model``."""
    config = {k: str(v) for k, v in to_dict(parse_params(SECTIONS).models[family]).items()}
    params = 1e5 * model.get("cardinality", 1)
    return {"run_id": f"{family}{seed}{accuracy}", "family": family, "seed": seed, "start_time": seed,
            "model": config | {k: str(v) for k, v in model.items()}, "test_accuracy": accuracy,
            "model_params": model.pop("params", params), "model_macs": 1e7}


def cardinality_runs() -> list[dict[str, Any]]:
    """Two seeds at C = 2, 8 (the workspace's) and 32; C = 32 is 1.3x the baseline's size."""
    return [mlflow_run("resnext", seed, acc + 0.01 * seed, cardinality=c, base_width=d, params=p)
            for c, d, acc, p in ((2, 30, 0.80, 1.0e5), (8, 16, 0.83, 1.02e5), (32, 6, 0.86, 1.3e5))
            for seed in (0, 1)]


def test_cardinality_section_with_and_without_runs(tmp_path: Path) -> None:
    params = parse_params(SECTIONS)
    without = cardinality_study(Runs([mlflow_run("resnext", 0, 0.8)]), params, tmp_path)
    assert without.found == ["8x16d"] and without.table is None
    assert cardinality_study(Runs([], "not reachable"), params, tmp_path).found == []
    assert not list(tmp_path.glob("*.png"))

    runs = cardinality_runs()
    runs.append(mlflow_run("resnext", 0, 0.99, cardinality=4, base_width=16, depth=20))  # another model: not shown
    text, page = build(tmp_path, Runs(runs))
    table = table_rows(text, "Cardinality C")
    assert list(table) == ["2", "8 (baseline)", "32"]
    assert table["32"][1:3] == [md.count(1.3e5), "1.27x"] and table["2"][5] == "2"
    assert table["8 (baseline)"][-2] == f"{md.pct(0.835)} ± {md.pct(0.01 / 2 ** 0.5)}"
    study = page.studies.cardinality
    assert [g.cardinality for g in study.off] == [32]  # 1.27x the baseline's parameters: not fixed complexity
    assert study.trend.points == 6 and study.verdict is TrendVerdict.HOLDS
    assert (tmp_path / "reports" / "figures" / "cardinality.png").is_file()


def test_seed_section_aggregates_seeds_and_pairs_them(tmp_path: Path) -> None:
    single, page = build(tmp_path / "one", Runs([mlflow_run(f, 0, 0.8) for f in ("vgg", "resnet", "resnext")]))
    assert page.studies.seeds.table is None and page.studies.seeds.tested == []
    assert all(row["Seeds"] == "1" for row in summary_cells(single).values())

    accs = {"vgg": (0.80, 0.82, 0.81), "resnet": (0.84, 0.85, 0.86), "resnext": (0.83, 0.86, 0.82)}
    runs = [mlflow_run(f, seed, a) for f, values in accs.items() for seed, a in enumerate(values)]
    runs.append(mlflow_run("vgg", 0, 0.5, width=0.5))  # another VGG: excluded
    runs.append(mlflow_run("vgg", 3, 0.7) | {"start_time": -1, "seed": 1})  # an older run of seed 1: replaced
    text, page = build(tmp_path / "three", Runs(runs))
    seeds = table_rows(text, "Model over seeds")
    assert seeds["VGG-11"][:3] == ["3", f"{md.pct(0.81)} ± {md.pct(0.01)}", f"{md.pct(0.81 - 4.303 * 0.01 / 3 ** 0.5)} – "
                                   f"{md.pct(0.81 + 4.303 * 0.01 / 3 ** 0.5)}"]
    assert seeds["VGG-11"][3] == f"{md.pct(0.80)} – {md.pct(0.82)}"
    pairs = table_rows(text, "Pair")
    assert pairs["VGG-11 vs ResNet-18"][:3] == ["3", "ResNet-18 ahead in 3 of 3", "-4.00 points"]
    assert pairs["ResNet-18 vs ResNeXt-29 8×16d"][1] == "ResNet-18 ahead in 2 of 3"
    # VGG-ResNet differences -4, -3, -5 points: t = -6.93 on 2 df, p = 0.020; the others are not consistent or p > 0.05
    assert pairs["VGG-11 vs ResNet-18"][3] == "0.0202"
    verdicts = {(c.leader, c.other): c.verdict for c in page.studies.seeds.tested}
    assert verdicts == {("ResNet-18", "VGG-11"): SeedVerdict.ARCHITECTURE,
                        ("ResNeXt-29 8×16d", "VGG-11"): SeedVerdict.CONSISTENT,  # 3 of 3, p = 0.094
                        ("ResNet-18", "ResNeXt-29 8×16d"): SeedVerdict.NOISE}  # 2 of 3
    assert summary_cells(text)["VGG-11"]["Seeds"] == "3"


def test_footer_lists_changed_params_and_dataset_hash(default: tuple) -> None:
    footer = default[3].footer
    assert footer.dataset == "0123456789abcdef0123456789abcdef (md5 of data/cifar10.zip)"
    changed = {key: (value, shipped) for key, value, shipped in footer.changed}
    assert changed["train.patience"] == (2, 5) and changed["resnext.base_width"] == (16, 24)
    assert "train.epochs" not in changed  # 4, as shipped
    assert "data.archive" not in changed  # unchanged


def test_an_unreadable_store_is_named_in_every_study(default: tuple) -> None:
    """The seed, budget and cardinality sections each say why they have no runs."""
    text, page = default[1], default[3]
    assert page.studies.error == "MLflow not used in this test"
    for section in ("## Repeated seeds", "## Accuracy against training budget", "## ResNeXt: accuracy against"):
        assert page.studies.error in text.split(section)[1].split("\n## ")[0]


def budget_runs() -> list[dict[str, Any]]:
    """Each family at 2 and 4 epochs on the (unknown) machine of the constructed project; ResNeXt leads only at 4."""
    accuracy = {"vgg": (0.70, 0.80), "resnet": (0.66, 0.78), "resnext": (0.60, 0.82)}
    return [mlflow_run(f, 0, acc) | {"run_id": f"{f}-{epochs}", "epochs": epochs, "train_seconds": 25.0 * epochs,
                                     "train_images_per_second": 72.0, "machine": "unknown machine"}
            for f, values in accuracy.items() for epochs, acc in zip((2, 4), values)]


def test_the_rendered_page_matches_the_golden_file(tmp_path: Path) -> None:
    """The wording of the whole page, for a constructed project with seeds, budgets and cardinalities.

    The other tests check facts; this one shows a rewording in review as a diff of ``tests/golden/comparison.md``.
    After an intended change, regenerate it with ``CONVBENCH_UPDATE_GOLDEN=1 pytest tests/test_report.py -k golden``
    and commit the file. The page is deterministic: no date, and the commit, torch and platform are injected.
    """
    write_lock(tmp_path)
    runs = budget_runs() + cardinality_runs() + [mlflow_run(f, seed, 0.8 + 0.01 * seed + 0.02 * k)
                                                 for k, f in enumerate(("vgg", "resnet")) for seed in (0, 1, 2)]
    text, page = build(tmp_path, Runs(runs))
    assert render(page) == text
    if os.environ.get("CONVBENCH_UPDATE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text(), "the page changed; see this test's docstring to regenerate the golden file"


def test_runs_known_only_from_the_committed_record_are_named_in_every_study(tmp_path: Path) -> None:
    """A fresh clone's empty store: the studies' runs come from runs.json, and each study section says so."""
    runs = budget_runs()
    recorded = [r | {"in_store": False} for r in runs[:4]] + runs[4:]
    text, page = build(tmp_path, Runs(recorded))
    assert (page.studies.recorded, page.studies.total) == (4, len(runs))
    for section in ("## Repeated seeds", "## Accuracy against training budget", "## ResNeXt: accuracy against"):
        assert f"4 of the {len(runs)} runs behind the studies come from the committed `reports/runs.json`" in \
            text.split(section)[1].split("\n## ")[0]


def test_missing_metrics_is_a_one_line_error_naming_the_stage(tmp_path: Path) -> None:
    with pytest.raises(ConvbenchError, match="dvc repro evaluate"):
        write_report(parse_params(SECTIONS), Runs([], "off"), Layout(tmp_path))


def test_report_stage_main_exits_2_without_metrics(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from convbench.stages.report import main

    (tmp_path / "params.yaml").write_text(json.dumps(SECTIONS))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'none.db'}")
    assert main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("convbench report: error:") and "dvc repro evaluate" in err
    assert not (tmp_path / "none.db").exists()  # no store is created just to look for sweeps
