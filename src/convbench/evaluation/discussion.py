"""The facts of the report's discussion, chosen by comparisons of the measured numbers.

Every verdict here comes from a comparison of numbers (which model leads, is the
lead significant, is a gap above a stated threshold), so a different run gives a
different page; nothing assumes the grouped family wins. The words are in the
report's template.
"""

from __future__ import annotations

import enum
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from convbench.evaluation import markdown as md
from convbench.evaluation.results import FamilyResult
from convbench.evaluation.stats import PairedTest, paired_test, step_volatility
from convbench.families import CONFIGS, DENSE, GROUPED

ALPHA = 0.05
OVERFIT_GAP = 0.05
"""Train minus validation accuracy above this (5 points) at the last epoch counts as overfitting."""
OVERFIT_LOSS_RISE = 0.10
"""Validation loss ending this fraction above its best also counts as overfitting."""
UNDERFIT_GAP = 0.02
"""A gap below 2 points while validation still improves at the last epoch counts as under-trained."""
SIMILAR_COMPUTE = (0.8, 1.25)
"""MAC ratios of the grouped to the dense family within which a gap is not a matter of cost."""


@dataclass(frozen=True)
class Pair:
    """McNemar's test of ``a`` against ``b`` on the images both predicted."""

    a: FamilyResult
    b: FamilyResult
    test: PairedTest | None
    """None when the two prediction files do not cover the same test images."""

    @property
    def significant(self) -> bool:
        return self.test is not None and self.test.p_value < ALPHA


def pair(a: FamilyResult, b: FamilyResult) -> Pair:
    """Pair two families' per-image hits by cache index (the test split must be the same)."""
    hits_a, hits_b = a.correct, b.correct
    if set(hits_a.index) != set(hits_b.index):
        return Pair(a, b, None)
    return Pair(a, b, paired_test(hits_a.sort_index().to_numpy(), hits_b.sort_index().to_numpy()))


def all_pairs(results: Sequence[FamilyResult]) -> list[Pair]:
    return [pair(a, b) for a, b in itertools.combinations(results, 2)]


def find(pairs: Sequence[Pair], a: FamilyResult, b: FamilyResult) -> Pair:
    """The pair of ``a`` and ``b`` oriented as (a, b)."""
    for p in pairs:
        if (p.a.family, p.b.family) == (a.family, b.family):
            return p
        if (p.a.family, p.b.family) == (b.family, a.family):
            t = p.test
            flipped = None if t is None else PairedTest(t.b_only, t.a_only, t.both, t.neither, t.p_value)
            return Pair(a, b, flipped)
    raise KeyError((a.family, b.family))


def accuracy(r: FamilyResult) -> float:
    """The test accuracy the report ranks by (TTA or single view)."""
    return float(r.metric(r.test_key, "accuracy"))


def ratio(value: float | None, baseline: float | None) -> float | None:
    """``value / baseline``; None where either is unknown or zero."""
    return value / baseline if value and baseline else None


# -- ranking -----------------------------------------------------------------------------------------

class Lead(enum.Enum):
    """How far the best model is ahead of the second."""

    ALONE = "alone"
    """Only one model has been evaluated."""
    TIE = "tie"
    SIGNIFICANT = "significant"
    NOT_SIGNIFICANT = "not significant"


@dataclass(frozen=True)
class Ranked:
    """One model's place in a ranking: its name, accuracy and 95 % interval (None where not measured)."""

    name: str
    accuracy: float
    ci: tuple[float, float] | None = None


@dataclass(frozen=True)
class Behind:
    """The grouped family where it did not win: its place and its gap to the leader."""

    name: str
    place: int
    gap: float
    duel: Pair


@dataclass(frozen=True)
class Ranking:
    """Who leads on test accuracy at this budget, by how much, and whether the lead is more than noise."""

    epochs: int
    tta: bool
    images: int
    order: list[Ranked]
    lead: Lead
    margin: float
    """The leader's accuracy minus the second's (0 when alone)."""
    duel: Pair | None
    """The leader against the second."""
    val_order: list[Ranked] | None
    """The models by validation accuracy where that order differs, else None."""
    grouped: Behind | None
    """The grouped family when it was evaluated and is not first."""


def ranking(results: Sequence[FamilyResult], pairs: Sequence[Pair], epochs: int) -> Ranking:
    """The ranking at this budget (``epochs``): a ranking after a few epochs need not hold after more."""
    ranked = sorted(results, key=accuracy, reverse=True)
    order = [Ranked(r.name, accuracy(r), tuple(ci) if (ci := r.metric(r.test_key, "accuracy_ci")) else None)
             for r in ranked]
    top = ranked[0]
    common = dict(epochs=epochs, tta=top.ranked_by == "tta", images=len(top.predictions), order=order)
    if len(ranked) < 2:
        return Ranking(**common, lead=Lead.ALONE, margin=0.0, duel=None, val_order=None, grouped=None)
    second = ranked[1]
    margin = accuracy(top) - accuracy(second)
    duel = find(pairs, top, second)
    lead = Lead.TIE if margin == 0 else Lead.SIGNIFICANT if duel.significant else Lead.NOT_SIGNIFICANT
    by_val = sorted(results, key=lambda r: r.metric("val", "accuracy") or 0.0, reverse=True)
    same = [r.family for r in by_val] == [r.family for r in ranked]
    grouped = next((r for r in ranked if r.family == GROUPED), None)
    behind = (None if grouped is None or grouped is top else
              Behind(grouped.name, ranked.index(grouped) + 1, accuracy(top) - accuracy(grouped), find(pairs, grouped, top)))
    return Ranking(**common, lead=lead, margin=margin, duel=duel,
                   val_order=None if same else [Ranked(r.name, r.metric("val", "accuracy")) for r in by_val],
                   grouped=behind)


@dataclass(frozen=True)
class Significance:
    """Every pairwise McNemar test, with the Bonferroni-corrected verdict for the number of pairs."""

    alpha: float
    corrected: float
    table: md.Table


def significance(pairs: Sequence[Pair]) -> Significance:
    corrected = ALPHA / max(1, len(pairs))
    rows = []
    for p in pairs:
        t = p.test
        if t is None:
            rows.append([f"{p.a.name} vs {p.b.name}", *[md.MISSING] * 4, "different test images", md.MISSING])
            continue
        rows.append([f"{p.a.name} vs {p.b.name}", str(t.a_only), str(t.b_only), str(t.both), md.p_value(t.p_value),
                     md.yes(t.p_value < ALPHA), md.yes(t.p_value < corrected)])
    headers = ["Pair (A vs B)", "only A right (b)", "only B right (c)", "both right", "p (exact)",
               f"significant at {ALPHA:g}", f"after Bonferroni ({corrected:.3g})"]
    return Significance(ALPHA, corrected, md.Table(headers, rows))


# -- efficiency --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Efficiency:
    """Accuracy bought per million parameters and per GMAC; the most economical model by each (None if unknown)."""

    table: md.Table
    per_param: str | None
    per_mac: str | None


def efficiency(results: Sequence[FamilyResult]) -> Efficiency:
    rows, per_param, per_mac = [], {}, {}
    for r in results:
        params, macs = r.metrics.get("params"), r.metrics.get("macs")
        acc = 100 * accuracy(r)
        per_param[r.name] = acc / (params / 1e6) if params else None
        per_mac[r.name] = acc / (macs / 1e9) if macs else None
        rows.append([r.name, md.pct(accuracy(r)), md.count(params), md.count(macs),
                     md.MISSING if per_param[r.name] is None else f"{per_param[r.name]:,.1f}",
                     md.MISSING if per_mac[r.name] is None else f"{per_mac[r.name]:,.1f}"])
    score = "TTA acc" if results[0].ranked_by == "tta" else "Test acc"
    table = md.Table(["Model", score, "Params", "MACs", "acc % per M params", "acc % per GMAC"], rows)
    valid_p = {k: v for k, v in per_param.items() if v is not None}
    valid_m = {k: v for k, v in per_mac.items() if v is not None}
    if len(valid_p) < 2 or len(valid_m) < 2:
        return Efficiency(table, None, None)
    return Efficiency(table, max(valid_p, key=valid_p.get), max(valid_m, key=valid_m.get))


# -- architecture ------------------------------------------------------------------------------------

class Contrast(enum.Enum):
    """The grouped family's accuracy against the dense one's, and whether McNemar's test resolves it."""

    AHEAD_SIGNIFICANT = "ahead, significant"
    AHEAD = "ahead, not significant"
    BEHIND_SIGNIFICANT = "behind, significant"
    NOT_AHEAD = "not ahead, not significant"


class Compute(enum.Enum):
    """Whether the grouped and the dense family cost about the same MACs."""

    SIMILAR = "similar"
    DIFFERENT = "different"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Grouping:
    """How much of the grouped model its grouped convolutions hold, and what dense ones would hold."""

    layers: int
    grouped: float
    total: float
    dense: float

    @property
    def share(self) -> float:
        return self.grouped / self.total

    @property
    def dense_total(self) -> float:
        return self.total - self.grouped + self.dense


@dataclass(frozen=True)
class Versus:
    """The grouped model against another: size and cost ratios, accuracy difference and McNemar's test."""

    other: FamilyResult
    description: str
    params_ratio: float | None
    macs_ratio: float | None
    difference: float
    duel: Pair


@dataclass(frozen=True)
class Architecture:
    """How the grouped family's cardinality and grouped convolutions show in its size, cost and accuracy."""

    family: str
    """The grouped family's display name (``ResNeXt``)."""
    dense_family: str
    """The dense residual family's display name (``ResNet``)."""
    grouped: FamilyResult | None
    """None when the grouped family has not been evaluated."""
    grouping: Grouping | None = None
    dense: Versus | None = None
    contrast: Contrast | None = None
    compute: Compute | None = None
    others: list[Versus] = field(default_factory=list)


def versus(a: FamilyResult, b: FamilyResult, pairs: Sequence[Pair]) -> Versus:
    return Versus(b, CONFIGS[b.family].DESCRIPTION, ratio(a.metrics.get("params"), b.metrics.get("params")),
                  ratio(a.metrics.get("macs"), b.metrics.get("macs")), accuracy(a) - accuracy(b), find(pairs, a, b))


def architecture(results: Sequence[FamilyResult], pairs: Sequence[Pair]) -> Architecture:
    by_family = {r.family: r for r in results}
    names = dict(family=CONFIGS[GROUPED].DISPLAY_NAME, dense_family=CONFIGS[DENSE].DISPLAY_NAME)
    grouped = by_family.get(GROUPED)
    if grouped is None:
        return Architecture(**names, grouped=None)
    convs = grouped.model.get("convolutions") or {}
    total = grouped.metrics.get("params")
    grouping = (Grouping(convs.get("grouped_layers"), convs["grouped_params"], total,
                         convs["grouped_dense_equivalent"])
                if convs.get("grouped_params") and convs.get("grouped_dense_equivalent") and total else None)
    others = [versus(grouped, r, pairs) for r in results if r.family not in (GROUPED, DENSE)]
    dense = by_family.get(DENSE)
    if dense is None:
        return Architecture(**names, grouped=grouped, grouping=grouping, others=others)
    against = versus(grouped, dense, pairs)
    ahead, significant = against.difference > 0, against.duel.significant
    contrast = ((Contrast.AHEAD_SIGNIFICANT if significant else Contrast.AHEAD) if ahead else
                Contrast.BEHIND_SIGNIFICANT if against.difference < 0 and significant else Contrast.NOT_AHEAD)
    macs = against.macs_ratio
    compute = (Compute.UNKNOWN if macs is None else
               Compute.SIMILAR if SIMILAR_COMPUTE[0] <= macs <= SIMILAR_COMPUTE[1] else Compute.DIFFERENT)
    return Architecture(**names, grouped=grouped, grouping=grouping, dense=against, contrast=contrast,
                        compute=compute, others=others)


# -- training ----------------------------------------------------------------------------------------

class FitVerdict(enum.Enum):
    """What the training curves say, by the thresholds above."""

    OVERFITTING = "overfitting"
    UNDER_TRAINED = "under-trained"
    BALANCED = "balanced"


class Stop(enum.Enum):
    """How training ended relative to the best epoch."""

    EARLY = "early stopping"
    LAST_EPOCH = "best at the last epoch"
    WITHIN_PATIENCE = "best before the last epoch, patience not reached"


@dataclass(frozen=True)
class Fit:
    """Training-curve facts for one family, from its history CSV."""

    best_epoch: int
    epochs_run: int
    gap_best: float
    gap_final: float
    val_loss_rise: float
    volatility: float
    worst_drop: float
    worst_drop_epoch: int
    verdict: FitVerdict


def fit(r: FamilyResult) -> Fit | None:
    """Over- or under-fitting, early stopping and volatility from the epoch history."""
    h = r.history
    if h is None or h.empty:
        return None
    h = h.sort_values("epoch")
    best = int(r.metrics.get("best_epoch") or r.train.get("best_epoch") or h.loc[h["val_loss"].idxmin(), "epoch"])
    at_best = h[h["epoch"] == best]
    at_best = h.iloc[-1] if at_best.empty else at_best.iloc[0]
    final = h.iloc[-1]
    val_acc = h["val_accuracy"].to_numpy(dtype=float)
    steps = np.diff(val_acc)
    worst = int(np.argmin(steps)) if steps.size else 0
    best_loss = float(h["val_loss"].min())
    rise = (float(final["val_loss"]) - best_loss) / best_loss if best_loss > 0 else 0.0
    gap_final = float(final["train_accuracy"] - final["val_accuracy"])
    still_improving = best == int(final["epoch"])
    if gap_final > OVERFIT_GAP or (rise > OVERFIT_LOSS_RISE and not still_improving):
        verdict = FitVerdict.OVERFITTING
    elif gap_final < UNDERFIT_GAP and still_improving:
        verdict = FitVerdict.UNDER_TRAINED
    else:
        verdict = FitVerdict.BALANCED
    return Fit(
        best_epoch=best,
        epochs_run=int(final["epoch"]),
        gap_best=float(at_best["train_accuracy"] - at_best["val_accuracy"]),
        gap_final=gap_final,
        val_loss_rise=rise,
        volatility=step_volatility(val_acc),
        worst_drop=float(steps[worst]) if steps.size else 0.0,
        worst_drop_epoch=int(h["epoch"].iloc[worst + 1]) if steps.size else best,
        verdict=verdict,
    )


@dataclass(frozen=True)
class Curve:
    """One family's training curve: its fit and how training stopped (both None without a history)."""

    name: str
    family: str
    fit: Fit | None
    stop: Stop | None


@dataclass(frozen=True)
class Extreme:
    """The model with the highest (or lowest) value of a quantity."""

    name: str
    value: float


@dataclass(frozen=True)
class Training:
    """Early stopping, fitting, validation volatility and training time, per family."""

    table: md.Table
    epochs: int
    """The configured maximum."""
    patience: int
    curves: list[Curve]
    jumpy: Extreme | None
    """Most volatile validation accuracy (None unless two models differ in it)."""
    calm: Extreme | None
    slow: Extreme | None
    """Longest training time in seconds (None with fewer than two timed models)."""
    fast: Extreme | None
    overfit_gap: float = OVERFIT_GAP
    overfit_loss_rise: float = OVERFIT_LOSS_RISE
    underfit_gap: float = UNDERFIT_GAP


def stop(r: FamilyResult, f: Fit) -> Stop:
    if r.train.get("stopped_early"):
        return Stop.EARLY
    return Stop.LAST_EPOCH if f.best_epoch == f.epochs_run else Stop.WITHIN_PATIENCE


def training(results: Sequence[FamilyResult], epochs_configured: int, patience: int) -> Training:
    fits = {r.family: fit(r) for r in results}
    rows = []
    for r in results:
        f = fits[r.family]
        if f is None:
            rows.append([r.name] + [md.MISSING] * 6 + [md.seconds(r.metrics.get("train_seconds"))])
            continue
        rows.append([
            r.name, f"{f.best_epoch} / {f.epochs_run} / {epochs_configured}", md.yes(r.train.get("stopped_early")),
            md.points(f.gap_best), md.points(f.gap_final), f"{100 * f.val_loss_rise:+.1f} %",
            md.MISSING if math.isnan(f.volatility) else f"{100 * f.volatility:.2f} points",
            md.seconds(r.metrics.get("train_seconds")),
        ])
    headers = ["Model", "best / run / max epochs", "stopped early", "train−val acc at best", "train−val acc at end",
               "val loss end vs best", "val acc volatility", "train time"]
    curves = [Curve(r.name, r.family, f, None if f is None else stop(r, f))
              for r, f in ((r, fits[r.family]) for r in results)]
    volatile = [Extreme(r.name, f.volatility) for r in results
                if (f := fits[r.family]) is not None and not math.isnan(f.volatility)]
    spread = len(volatile) >= 2 and len({round(v.value, 6) for v in volatile}) > 1
    timed = [Extreme(r.name, r.metrics["train_seconds"]) for r in results if r.metrics.get("train_seconds")]
    two = len(timed) >= 2
    return Training(
        md.Table(headers, rows), epochs_configured, patience, curves,
        max(volatile, key=lambda e: e.value) if spread else None, min(volatile, key=lambda e: e.value) if spread else None,
        max(timed, key=lambda e: e.value) if two else None, min(timed, key=lambda e: e.value) if two else None)
