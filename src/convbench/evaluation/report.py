"""reports/comparison.md: the three families side by side, with figures and a data-driven discussion.

All numbers come from files: what the train and evaluate stages write (so a DVC
run-cache restore, which skips the scripts, still gives a correct report), and
``reports/runs.json``, the ``runs`` stage's summary of the MLflow runs of other
seeds and other cardinalities (see :mod:`convbench.evaluation.studies`).

The page is facts and one template: this module and :mod:`.discussion` compute a
:class:`Page` (tables, numbers and verdicts as enums, figures drawn on the way),
and :func:`render` words it with ``templates/comparison.md.j2``, which holds
every sentence: a rewording changes the template only.
"""

from __future__ import annotations

import enum
import math
import platform
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd
import torch

from convbench import figures
from convbench.config import to_dict
from convbench.data.format import Cache, load_cache
from convbench.files import atomic_write_bytes
from convbench.evaluation import budget, discussion, provenance
from convbench.evaluation import markdown as md
from convbench.evaluation.budget import BudgetRank, Crossing
from convbench.evaluation.results import FamilyResult, load_results
from convbench.evaluation.studies import (
    COMPLEXITY_TOLERANCE, BudgetPoint, CardinalityGroup, Runs, SeedPair, SeedStats, SeedVerdict, Trend,
    budget_points, cardinality_groups, cardinality_trend, machine_label, recorded_only, seed_pair, seed_runs,
    seed_stats, seed_verdict,
)
from convbench.families import CONFIGS, DENSE, FAMILIES, GROUPED
from convbench.params import Params
from convbench.paths import Layout

GALLERY_SIZE = 16
"""Misclassified images shown per model: the most confident mistakes."""
GALLERY_COLUMNS = 8
"""Images per row of the gallery."""
BUDGET_TARGETS = (0.80, 0.85)
"""Accuracies whose time to reach the budget section reads off each family's line (plus the lowest family's best)."""
TIME_MISMATCH = 0.15
"""Relative time per image beyond this from the relative MACs: matched MACs are not matched time."""
MAC_BAND = 0.25
"""Like-for-like cost: the costliest model's forward MACs at most this fraction above the cheapest's."""


def family_configs(params: Params) -> dict[str, dict[str, Any]]:
    """Each family's full config (params.yaml section plus code defaults), in report order."""
    return {f: to_dict(params.models[f]) for f in FAMILIES}


def accuracy_threshold(results: Sequence[FamilyResult]) -> float | None:
    """The lowest final validation accuracy minus 2 points, floored to a half point; None without histories.

    Every model reaches it, so the seconds to reach it compare speed of learning, not the end point.
    """
    finals = [float(r.history["val_accuracy"].iloc[-1]) for r in results if r.history is not None]
    return math.floor(round((min(finals) - 0.02) * 200, 6)) / 200 if finals else None  # round: 0.72 - 0.02 is 0.6999...


def seconds_to_reach(history: pd.DataFrame | None, threshold: float | None) -> float | None:
    """Training wall-clock seconds (validation included) at the end of the first epoch with val accuracy >= threshold."""
    if history is None or threshold is None:
        return None
    reached = history["val_accuracy"] >= threshold
    return float(history["seconds"].cumsum()[reached].iloc[0]) if reached.any() else None


def inference(result: FamilyResult) -> dict[str, Any]:
    """How inference was timed: batch_size, latency_runs, device, precision, channels_last, threads (None: unknown)."""
    timing = result.metric("inference") or {}
    return {k: timing.get(k) for k in ("batch_size", "latency_runs", "device", "precision", "channels_last",
                                       "threads")}


def machine(result: Any) -> str:
    """What trained ``result`` (a FamilyResult, or anything with its ``train`` dict)."""
    return machine_label(result.train.get("machine", {}))


# -- summary -----------------------------------------------------------------------------------------

def summary_columns(seeds: dict[str, int], tta: bool = False) -> list[md.Column]:
    """The columns a reader compares: accuracy (single view, TTA), its interval, seeds, size, cost and speed.

    The 95 % CI is that of the predictions the report ranks by.
    """
    return [
        md.Column("Test acc", _m("test", "accuracy"), md.pct, "higher"),
        *([md.Column("TTA acc", _m("test_tta", "accuracy"), md.pct, "higher")] if tta else []),
        md.Column("95 % CI", _ranked("accuracy_ci"),
                  lambda v: md.MISSING if not v else f"{md.pct(v[0])} – {md.pct(v[1])}"),
        md.Column("Seeds", lambda r: seeds.get(r.family, 1), str),
        md.Column("Params", _m("params"), md.count, "lower"),
        md.Column("MACs", _m("macs"), md.count, "lower"),
        md.Column("Train time", _m("train_seconds"), md.seconds, "lower"),
        md.Column("Train img/s", _m("train_images_per_second"), md.rate, "higher"),
    ]


def detail_columns(threshold: float | None = None, tta: bool = False) -> list[md.Column]:
    """The course's losses and validation accuracy, macro-F1, best epoch, time to accuracy and inference speed."""
    reach = ([] if threshold is None else
             [md.Column(f"Time to {md.pct(threshold, 1)} val", lambda r: seconds_to_reach(r.history, threshold),
                        md.seconds, "lower")])
    return [
        md.Column("Val loss", _m("val", "loss"), md.loss, "lower"),
        md.Column("Val acc", _m("val", "accuracy"), md.pct, "higher"),
        md.Column("Test loss", _m("test", "loss"), md.loss, "lower"),
        *([md.Column("TTA loss", _m("test_tta", "loss"), md.loss, "lower")] if tta else []),
        md.Column("Macro-F1", _ranked("macro_f1"), lambda v: md.MISSING if v is None else f"{v:.4f}", "higher"),
        md.Column("Best epoch", lambda r: r.metric("best_epoch"),
                  lambda v: md.MISSING if v is None else str(int(v))),
        *reach,
        md.Column("Infer img/s", _m("inference", "images_per_second"), md.rate, "higher"),
        md.Column("Latency ms", _m("inference", "latency_ms"), md.millis, "lower"),
    ]


def _m(*keys: str) -> Any:
    return lambda r: r.metric(*keys)


def _ranked(key: str) -> Any:
    return lambda r: r.metric(r.test_key, key)


@dataclass(frozen=True)
class MacCost:
    """Whether the models cost the same per image: the costliest against the cheapest in forward MACs."""

    high: str
    low: str
    ratio: float
    band: float = MAC_BAND

    @property
    def matched(self) -> bool:
        return self.ratio <= 1 + self.band


def mac_cost(results: Sequence[FamilyResult]) -> MacCost | None:
    """None with fewer than two models with MACs."""
    macs = {r.name: r.metric("macs") for r in results if r.metric("macs")}
    if len(macs) < 2:
        return None
    high, low = max(macs, key=macs.get), min(macs, key=macs.get)
    return MacCost(high, low, macs[high] / macs[low])


@dataclass(frozen=True)
class Summary:
    """The two tables and what the notes under them need: ranking, cost match, how speed was measured."""

    table: md.Table
    details: md.Table
    label_smoothing: float
    ranked_by_tta: bool
    tta_shown: bool
    tta_views: int | None
    tta_mode: str | None
    cost: MacCost | None
    inference: dict[str, Any]
    machine: str
    threshold: float | None


def summary(results: Sequence[FamilyResult], label_smoothing: float, seeds: dict[str, int]) -> Summary:
    threshold = accuracy_threshold(results)
    tta = any(r.metric("test_tta") for r in results)
    columns, details = summary_columns(seeds, tta), detail_columns(threshold, tta)
    first = results[0]
    return Summary(
        md.Table(["Model", *(c.header for c in columns)], md.compare_rows(results, lambda r: r.name, columns)),
        md.Table(["Model details", *(c.header for c in details)], md.compare_rows(results, lambda r: r.name, details)),
        label_smoothing, first.ranked_by == "tta", bool(first.metric("test_tta")), first.metric("tta", "views"),
        first.metric("tta", "mode"), mac_cost(results),
        inference(first), machine(first), threshold)


# -- figures and per-model sections ------------------------------------------------------------------

def learning_curves(results: Sequence[FamilyResult], figdir: Path) -> bool:
    """Draw the learning curves; False (nothing drawn) without any history file."""
    with_history = [r for r in results if r.history is not None]
    if not with_history:
        return False
    figures.learning_curves(
        {r.name: {c: r.history[c].tolist() for c in r.history.columns} for r in with_history},
        {r.name: int(r.metric("best_epoch")) for r in with_history if r.metric("best_epoch") is not None},
        figdir / "learning_curves.png",
    )
    return True


@dataclass(frozen=True)
class TimeToAccuracy:
    """The threshold every model reaches and the first model to reach it (None where none did)."""

    threshold: float
    first: discussion.Extreme | None


def time_to_accuracy(results: Sequence[FamilyResult], figdir: Path) -> TimeToAccuracy | None:
    """None without histories."""
    threshold = accuracy_threshold(results)
    if threshold is None:
        return None
    with_history = [r for r in results if r.history is not None]
    figures.time_to_accuracy(
        {r.name: (r.history["seconds"].cumsum().tolist(), r.history["val_accuracy"].tolist()) for r in with_history},
        threshold, figdir / "time_to_accuracy.png",
    )
    reach = [discussion.Extreme(r.name, t) for r in with_history
             if (t := seconds_to_reach(r.history, threshold)) is not None]
    return TimeToAccuracy(threshold, min(reach, key=lambda e: e.value) if reach else None)


@dataclass(frozen=True)
class PerClass:
    """Per-class recall of every model, the best per class in bold, and the hardest class on average."""

    table: md.Table
    hardest: str
    hardest_mean: float


def per_class(results: Sequence[FamilyResult], figdir: Path) -> PerClass:
    figures.confusion_figure({r.name: r.confusion for r in results}, results[0].classes, figdir / "confusion.png")
    classes = results[0].classes
    recall = {r.name: [c["recall"] for c in r.per_class] for r in results}
    rows = [[name, *md.mark_best([values[k] for values in recall.values()], md.pct, "higher")]
            for k, name in enumerate(classes)]
    figures.per_class_bars(recall, classes, figdir / "per_class.png")
    means = [float(np.mean([v[k] for v in recall.values()])) for k in range(len(classes))]
    hardest = min(range(len(classes)), key=lambda k: means[k])
    return PerClass(md.Table(["Class", *recall], rows), classes[hardest], means[hardest])


@dataclass(frozen=True)
class Mistakes:
    """One model's wrong test images and how many of the most confident ones its figure shows."""

    name: str
    wrong: int
    total: int
    shown: int
    figure: str


def gallery(results: Sequence[FamilyResult], cache: Cache | None, figdir: Path) -> list[Mistakes] | None:
    """Draw each model's most confident mistakes; None without the image cache."""
    if cache is None:
        return None
    found = []
    for r in results:
        pred, prob = r.pred_columns
        wrong = r.predictions[r.predictions["label"] != r.predictions[pred]]
        name = f"misclassified_{r.family}.png"
        shown = wrong.sort_values([prob, "index"], ascending=[False, True]).head(GALLERY_SIZE)
        found.append(Mistakes(r.name, len(wrong), len(r.predictions), len(shown), name))
        if wrong.empty:
            continue
        images = cache.images[torch.tensor(shown["index"].tolist(), dtype=torch.long)].numpy().transpose(0, 2, 3, 1)
        captions = [f"{r.classes[t]} → {r.classes[p]}\n{100 * q:.0f} %"
                    for t, p, q in zip(shown["label"], shown[pred], shown[prob])]
        rows = [slice(k, k + GALLERY_COLUMNS) for k in range(0, len(shown), GALLERY_COLUMNS)]
        figures.image_grid([images[s] for s in rows], figdir / name, captions=[captions[s] for s in rows],
                           title=f"{r.name}: most confident mistakes (true → predicted, confidence)")
    return found


# -- studies: seeds, budgets, cardinality (reports/runs.json) ----------------------------------------

@dataclass(frozen=True)
class SeedComparison:
    """Two families compared seed by seed, and what the seeds say (None with fewer than two shared seeds)."""

    a: str
    b: str
    pair: SeedPair
    verdict: SeedVerdict | None

    @property
    def leader(self) -> str:
        return self.a if self.pair.mean_difference >= 0 else self.b

    @property
    def other(self) -> str:
        return self.b if self.leader == self.a else self.a

    @property
    def ahead(self) -> int:
        """Seeds in which the leader was ahead."""
        return self.pair.a_ahead if self.leader == self.a else self.pair.b_ahead


@dataclass(frozen=True)
class Seeds:
    """Test accuracy over repeated seeds per family, and each pair compared seed by seed."""

    counts: dict[str, int]
    """Family -> seeds found at this workspace's model and budget."""
    table: md.Table | None
    """None while every model has one seed at most."""
    comparisons: list[SeedComparison]
    """Every pair with a shared seed."""

    @property
    def tested(self) -> list[SeedComparison]:
        """The pairs the seeds give a verdict on."""
        return [c for c in self.comparisons if c.verdict is not None]


def seeds(results: Sequence[FamilyResult], runs: Runs, params: Params) -> Seeds:
    per_family = {r.family: seed_runs(runs, params, r.family) for r in results}
    counts = {f: len(v) for f, v in per_family.items()}
    if all(n < 2 for n in counts.values()):
        return Seeds(counts, None, [])
    rows = []
    for r in results:
        chosen = per_family[r.family]
        if not chosen:
            rows.append([r.name, "0", *[md.MISSING] * 4])
            continue
        st = seed_stats([x["test_accuracy"] for x in chosen])
        rows.append([r.name, str(st.n), f"{md.pct(st.mean)} ± {md.pct(st.sd) if st.sd is not None else md.MISSING}",
                     f"{md.pct(st.ci[0])} – {md.pct(st.ci[1])}" if st.ci else md.MISSING,
                     f"{md.pct(st.low)} – {md.pct(st.high)}", ", ".join(str(x["seed"]) for x in chosen)])
    table = md.Table(["Model over seeds", "Seeds n", "Mean ± sd", "95 % CI of the mean (t)", "Min – max", "Seeds"],
                     rows)
    comparisons = [SeedComparison(a.name, b.name, p, seed_verdict(p))
                   for i, a in enumerate(results) for b in results[i + 1:]
                   if (p := seed_pair(per_family[a.family], per_family[b.family])).seeds > 0]
    return Seeds(counts, table, comparisons)


@dataclass(frozen=True)
class Headline:
    """The ranking at every other budget measured on this machine, for the Discussion; whether it changes."""

    others: list[BudgetRank]
    changes: bool


def budget_headline(results: Sequence[Any], runs: Runs, params: Params) -> Headline | None:
    """None without other budgets."""
    names = {r.family for r in results}
    here = machine(results[0])
    points = [p for p in budget_points(runs, params) if p.family in names and p.machine == here]
    ranked = budget.ranks(points, params.evaluate.rank_by == "tta")
    others = [r for r in ranked if r.epochs != params.train.epochs]
    return Headline(others, bool(budget.crossings(ranked))) if others else None


@dataclass(frozen=True)
class BudgetStudy:
    """Accuracy against training budget on the machine that trained the workspace's models.

    ``table`` is None with fewer than two budgets measured there; the other facts are then empty.
    """

    here: str
    tta: bool
    epochs: list[int]
    """The budgets measured on ``here``."""
    table: md.Table | None = None
    ranks: list[BudgetRank] | None = None
    crossings: list[Crossing] | None = None
    front: list[BudgetPoint] | None = None
    reach: md.Table | None = None


def _stats(st: SeedStats | None) -> str:
    if st is None:
        return md.MISSING
    return md.pct(st.mean) + (f" ± {md.pct(st.sd)}" if st.sd is not None else "")


def budget_study(results: Sequence[Any], runs: Runs, params: Params, figdir: Path) -> BudgetStudy:
    """The table, the figure, the ranking at each budget, the Pareto front and the time to reach targets."""
    names = {r.family: r.name for r in results}
    tta = params.evaluate.rank_by == "tta"
    points = [p for p in budget_points(runs, params) if p.family in names]
    here = machine(results[0])
    local = [p for p in points if p.machine == here]
    epochs = sorted({p.epochs for p in local})
    if len(epochs) < 2:
        return BudgetStudy(here, tta, epochs)
    machines = len({q.machine for q in points}) > 1
    rows = [[names[p.family], str(p.epochs), md.seconds(p.seconds),
             md.MISSING if p.compute is None else f"{p.compute / 1e12:,.1f} T", _stats(p.test), _stats(p.tta),
             str(p.test.n)] + ([p.machine] if machines else [])
            for p in points]
    headers = ["Model", "Epochs", "Train time", "Train compute (MACs)", "Test acc (mean ± sd)", "TTA acc (mean ± sd)",
               "Seeds"] + (["Machine"] if machines else [])
    series: dict[str, list[dict[str, float | None]]] = {}
    for p in points:
        label = names[p.family] + ("" if p.machine == here else f" ({p.machine})")
        series.setdefault(label, []).append({"seconds": p.seconds, "compute": p.compute, "epochs": p.epochs,
                                             "mean": p.accuracy(tta).mean, "sd": p.accuracy(tta).sd})
    figures.budget_plot(series, figdir / "budget.png")
    ranked = budget.ranks(local, tta)
    families = sorted({p.family for p in local}, key=list(names).index)
    by_family = {f: [p for p in local if p.family == f] for f in families}
    lowest_best = round(min(max(p.accuracy(tta).mean for p in by_family[f]) for f in families), 4)
    targets = sorted({*BUDGET_TARGETS, lowest_best})
    reach = [[names[f], *(md.seconds(s) if (s := budget.seconds_to(by_family[f], t, tta)) is not None
                          else "not reached" for t in targets)] for f in families]
    reach_headers = ["Seconds to reach", *(md.pct(t) + (" (lowest family's best)" if t == lowest_best else "")
                                           for t in targets)]
    return BudgetStudy(here, tta, epochs, md.Table(headers, rows), ranked, budget.crossings(ranked),
                       budget.pareto_front(local, tta), md.Table(reach_headers, reach))


class TrendVerdict(enum.Enum):
    """Whether the grouped family's paper claim (accuracy rises with cardinality at fixed complexity) holds here."""

    TOO_FEW_SETTINGS = "too few settings"
    NO_INTERVAL = "no interval"
    HOLDS = "holds"
    OPPOSITE = "opposite"
    UNRESOLVED = "unresolved"


def trend_verdict(trend: Trend | None) -> TrendVerdict:
    if trend is None:
        return TrendVerdict.TOO_FEW_SETTINGS
    if trend.ci is None:
        return TrendVerdict.NO_INTERVAL
    if trend.ci[0] > 0:
        return TrendVerdict.HOLDS
    return TrendVerdict.OPPOSITE if trend.ci[1] < 0 else TrendVerdict.UNRESOLVED


@dataclass(frozen=True)
class CardinalityStudy:
    """Accuracy against cardinality at (ideally) fixed complexity, seeds aggregated, with a trend test.

    ``table`` is None with fewer than two settings (``found`` names them).
    """

    found: list[str]
    table: md.Table | None
    off: list[CardinalityGroup]
    """Settings whose parameter count is beyond ``tolerance`` of the baseline's."""
    baseline: CardinalityGroup | None
    trend: Trend | None
    verdict: TrendVerdict
    tolerance: float = COMPLEXITY_TOLERANCE


def cardinality_study(runs: Runs, params: Params, figdir: Path) -> CardinalityStudy:
    groups = cardinality_groups(runs, params)
    found = [f"{g.cardinality}x{g.base_width}d" for g in groups]
    if len(groups) < 2:
        return CardinalityStudy(found, None, [], None, None, TrendVerdict.TOO_FEW_SETTINGS)
    config = params.models[GROUPED]
    baseline = next((g for g in groups if (g.cardinality, g.base_width) == (config.cardinality, config.base_width)),
                    groups[0])
    rows = []
    for g in groups:
        mark = " (baseline)" if g is baseline else ""
        seconds = [r["train_seconds"] for r in g.runs if r.get("train_seconds")]
        rows.append([f"{g.cardinality}{mark}", str(g.base_width), md.count(g.params), md.ratio(g.params, baseline.params),
                     md.count(g.macs), md.ratio(g.macs, baseline.macs), str(g.accuracy.n),
                     f"{md.pct(g.accuracy.mean)}" + (f" ± {md.pct(g.accuracy.sd)}" if g.accuracy.sd else ""),
                     md.seconds(min(seconds)) if seconds else md.MISSING])  # fastest seed, as the budget study
    figures.cardinality_plot(
        [{"cardinality": g.cardinality, "base_width": g.base_width, "mean": g.accuracy.mean, "sd": g.accuracy.sd,
          "params_ratio": (g.params / baseline.params) if g.params and baseline.params else None} for g in groups],
        figdir / "cardinality.png")
    table = md.Table(["Cardinality C", "Base width d", "Params", "× baseline", "MACs", "× baseline", "Seeds",
                      "Test acc (mean ± sd)", "Train time"], rows)
    off = [g for g in groups if g.params and baseline.params
           and abs(g.params / baseline.params - 1) > COMPLEXITY_TOLERANCE]
    trend = cardinality_trend(groups)
    return CardinalityStudy(found, table, off, baseline, trend, trend_verdict(trend))


@dataclass(frozen=True)
class Studies:
    """The seed, budget and cardinality studies, from the runs of ``reports/runs.json``.

    Facts about those runs as a whole live here, beside ``error`` (why they could not be read), so that
    every study's section can state them: ``recorded`` of the ``total`` runs are known only from the
    committed ``runs.json``, not from this MLflow store (a fresh clone, another machine).
    """

    error: str | None
    recorded: int
    total: int
    seeds: Seeds
    budget: BudgetStudy
    cardinality: CardinalityStudy


# -- cost --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Mismatch:
    """A model whose training time per image is not where its MACs put it, both relative to the base."""

    name: str
    mac_ratio: float
    time_ratio: float


@dataclass(frozen=True)
class Cost:
    """Paper cost (parameters, MACs) against hardware cost (measured training img/s), relative to the cheapest."""

    base: str
    machines: list[str]
    table: md.Table
    mismatches: list[Mismatch]
    tolerance: float = TIME_MISMATCH


def cost(results: Sequence[Any]) -> Cost | None:
    """None with fewer than two models with MACs and a measured training speed."""
    timed = [r for r in results if r.metric("macs") and r.metric("train_images_per_second")]
    if len(timed) < 2:
        return None
    base = min(timed, key=lambda r: r.metric("macs"))
    rows, mismatched = [], []
    for r in timed:
        mac_ratio = r.metric("macs") / base.metric("macs")
        time_ratio = base.metric("train_images_per_second") / r.metric("train_images_per_second")
        rows.append([r.name, md.count(r.metric("params")), md.count(r.metric("macs")), f"{mac_ratio:.2f}x",
                     md.rate(r.metric("train_images_per_second")), f"{time_ratio:.2f}x",
                     f"{3 * r.metric('macs') * r.metric('train_images_per_second') / 1e9:,.0f}"])
        if abs(time_ratio / mac_ratio - 1) > TIME_MISMATCH:
            mismatched.append(Mismatch(r.name, mac_ratio, time_ratio))
    table = md.Table(["Model", "Params", "Forward MACs", "MACs × " + base.name, "Train img/s",
                      "Time per image × " + base.name, "Effective GMAC/s (3 x MACs x img/s)"], rows)
    return Cost(base.name, sorted({machine(r) for r in timed}), table, mismatched)


# -- the page ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Origin:
    """What wrote the page: the git commit and the report stage's torch and platform (a test injects its own)."""

    commit: str
    torch: str
    platform: str

    @classmethod
    def of(cls, base: Path) -> Origin:
        return cls(provenance.git_commit(base), torch.__version__, platform.platform(terse=True))


@dataclass(frozen=True)
class Footer:
    """Where the numbers came from: code, data, machines, versions and the params changed from the shipped file."""

    origin: Origin
    dataset: str | None
    machine: str
    inference: dict[str, Any]
    torch: str | None
    """The evaluate stage's torch and python (None where not recorded)."""
    python: str | None
    changed: list[tuple[str, Any, Any]]


@dataclass(frozen=True)
class Discussion:
    """The Discussion section's facts."""

    ranking: discussion.Ranking
    headline: Headline | None
    significance: discussion.Significance
    efficiency: discussion.Efficiency
    architecture: discussion.Architecture
    training: discussion.Training


@dataclass(frozen=True)
class Page:
    """Everything comparison.md states, section by section; the template words it."""

    names: dict[str, str]
    """Family -> model name (``ResNeXt-20 4×24d``), evaluated families only, in report order."""
    grouped: str
    """The grouped family's display name: the cardinality study's subject."""
    grouped_key: str
    """Its params.yaml section."""
    compared: list[str]
    """The other families' display names, the dense residual one first."""
    classes: list[str]
    test_images: int
    val_images: int | None
    image_size: Any
    summary: Summary
    discussion: Discussion
    curves: bool
    time: TimeToAccuracy | None
    per_class: PerClass
    gallery: list[Mistakes] | None
    studies: Studies
    cost: Cost | None
    footer: Footer


def page(results: Sequence[FamilyResult], params: Params, cache: Cache | None, runs: Runs, figdir: Path,
         base: Path, origin: Origin) -> Page:
    """The facts of comparison.md; draws its figures into ``figdir`` on the way."""
    pairs = discussion.all_pairs(results)
    first = results[0]
    studies = Studies(runs.error, len(recorded_only(runs)), len(runs.runs), seeds(results, runs, params), budget_study(results, runs, params, figdir),
                      cardinality_study(runs, params, figdir))
    return Page(
        names={r.family: r.name for r in results},
        grouped=CONFIGS[GROUPED].DISPLAY_NAME,
        grouped_key=GROUPED,
        compared=[CONFIGS[f].DISPLAY_NAME for f in sorted(set(FAMILIES) - {GROUPED},
                                                          key=lambda f: (f != DENSE, FAMILIES.index(f)))],
        classes=first.classes,
        test_images=len(first.predictions),
        val_images=first.metric("val", "images"),
        image_size=first.model.get("image_size"),
        summary=summary(results, params.train.label_smoothing,
                        {f: max(1, n) for f, n in studies.seeds.counts.items()}),
        discussion=Discussion(
            discussion.ranking(results, pairs, params.train.epochs), budget_headline(results, runs, params),
            discussion.significance(pairs), discussion.efficiency(results), discussion.architecture(results, pairs),
            discussion.training(results, params.train.epochs, params.train.patience)),
        curves=learning_curves(results, figdir),
        time=time_to_accuracy(results, figdir),
        per_class=per_class(results, figdir),
        gallery=gallery(results, cache, figdir),
        studies=studies,
        cost=cost(results),
        footer=Footer(origin, provenance.dataset_hash(base / "dvc.lock", params.data.archive), machine(first),
                      inference(first), first.model.get("torch"), first.model.get("python"),
                      provenance.changed_params(params)),
    )


TEMPLATE = "comparison.md.j2"
VERDICT_ENUMS = (discussion.Lead, discussion.Contrast, discussion.Compute, discussion.Stop, SeedVerdict, TrendVerdict)
"""The enums the template compares verdicts with (``r.lead is sameas Lead.SIGNIFICANT``)."""


def _times(value: float | None) -> str:
    return md.MISSING if value is None else f"{value:.2f}x"


def environment() -> jinja2.Environment:
    """The template's environment: strict (an unknown fact is an error, not an empty string), with number filters."""
    env = jinja2.Environment(loader=jinja2.PackageLoader("convbench.evaluation", "templates"), autoescape=False,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                             undefined=jinja2.StrictUndefined)
    env.filters.update(
        pct=md.pct, points=md.points, seconds=md.seconds, count=md.count, rate=md.rate, times=_times, repr=repr,
        pp=lambda v: f"{100 * v:.2f} points",
        p=lambda v: md.MISSING if v is None else md.p_value(v),
        share=lambda v: f"{v:.0%}",
        thousands=lambda v: md.MISSING if v is None else f"{v:,}",
        na=lambda v: md.MISSING if v is None else v,
    )
    env.globals.update({e.__name__: e for e in VERDICT_ENUMS})
    return env


def render(facts: Page) -> str:
    """comparison.md's text; blank lines around optional blocks collapse to one."""
    text = environment().get_template(TEMPLATE).render(page=facts)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def write_report(params: Params, runs: Runs, layout: Layout = Layout(),
                 origin: Origin | None = None) -> tuple[Path, list[FamilyResult], Page]:
    """Write reports/comparison.md and reports/figures/*.png; returns the Markdown path, the results and the facts.

    ``origin`` (default: this checkout's commit, torch and platform) is a parameter so that a test's page is
    the same on every machine.
    """
    results = load_results(layout, family_configs(params))
    figdir = layout.reports / "figures"
    figdir.mkdir(parents=True, exist_ok=True)
    for stale in figdir.glob("*.png"):  # the folder is this stage's output: drop figures of absent models
        stale.unlink()
    cache = load_cache(layout.cache) if layout.cache.is_file() else None
    facts = page(results, params, cache, runs, figdir, layout.base, origin or Origin.of(layout.base))
    path = layout.reports / "comparison.md"
    atomic_write_bytes(path, render(facts).encode())
    return path, results, facts


def headline_metrics(results: Sequence[FamilyResult]) -> dict[str, float]:
    """``<family>_test_accuracy`` and friends, so MLflow can compare report runs at a glance."""
    keys = (("test", "accuracy"), ("test", "macro_f1"), ("test_tta", "accuracy"), ("val", "accuracy"))
    return {f"{r.family}_{'_'.join(k)}": float(r.metric(*k)) for r in results for k in keys
            if r.metric(*k) is not None}


def log_report(report: Path, figdir: Path, metrics: dict[str, float]) -> str | None:
    """Log the report and its figures to a new ``report`` run; returns the run id, or None with a note."""
    from convbench.tracking.runlog import RunLogger

    run_log = RunLogger.start_or_note("report", "report", {"kind": "report"}, backup=f"The report is {report}.")
    if run_log is None:
        return None
    with run_log:
        run_log.log_metrics(metrics)
        run_log.log_artifact(report)
        run_log.log_artifacts(figdir, "figures")
    return run_log.run_id
