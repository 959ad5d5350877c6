"""The report's discussion, generated from the measured numbers.

Every sentence here is chosen by a comparison of numbers (which model leads, is
the lead significant, is a gap above a stated threshold), so a different run
gives a different text; nothing assumes ResNeXt wins.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from convbench.evaluation import markdown as md
from convbench.evaluation.results import FamilyResult
from convbench.evaluation.stats import PairedTest, paired_test, step_volatility

ALPHA = 0.05
OVERFIT_GAP = 0.05
"""Train minus validation accuracy above this (5 points) at the last epoch counts as overfitting."""
OVERFIT_LOSS_RISE = 0.10
"""Validation loss ending this fraction above its best also counts as overfitting."""
UNDERFIT_GAP = 0.02
"""A gap below 2 points while validation still improves at the last epoch counts as under-trained."""


@dataclass(frozen=True)
class Pair:
    """McNemar's test of ``a`` against ``b`` on the images both predicted."""

    a: FamilyResult
    b: FamilyResult
    test: PairedTest | None
    """None when the two prediction files do not cover the same test images."""


def pair(a: FamilyResult, b: FamilyResult) -> Pair:
    """Pair two families' per-image hits by cache index (the test split must be the same)."""
    hits_a, hits_b = a.correct, b.correct
    if set(hits_a.index) != set(hits_b.index):
        return Pair(a, b, None)
    return Pair(a, b, paired_test(hits_a.sort_index().to_numpy(), hits_b.sort_index().to_numpy()))


def all_pairs(results: Sequence[FamilyResult]) -> list[Pair]:
    return [pair(a, b) for a, b in itertools.combinations(results, 2)]


def _find(pairs: Sequence[Pair], a: FamilyResult, b: FamilyResult) -> Pair:
    """The pair of ``a`` and ``b`` oriented as (a, b)."""
    for p in pairs:
        if (p.a.family, p.b.family) == (a.family, b.family):
            return p
        if (p.a.family, p.b.family) == (b.family, a.family):
            t = p.test
            flipped = None if t is None else PairedTest(t.b_only, t.a_only, t.both, t.neither, t.p_value)
            return Pair(a, b, flipped)
    raise KeyError((a.family, b.family))


def _acc(r: FamilyResult) -> float:
    return float(r.metric(r.test_key, "accuracy"))


def _ci(r: FamilyResult) -> str:
    ci = r.metric(r.test_key, "accuracy_ci")
    return f"95 % CI {md.pct(ci[0], 1)} – {md.pct(ci[1], 1)}" if ci else "no CI"


def _evidence(p: Pair) -> str:
    """``McNemar exact p = 0.021; 1 image only A got right, 9 only B`` for a sentence."""
    t = p.test
    if t is None:
        return "no paired test: the two prediction files cover different test images"
    return (f"McNemar exact p = {md.p_value(t.p_value)}; {t.a_only} test images only {p.a.name} "
            f"got right, {t.b_only} only {p.b.name}")


def ranking(results: Sequence[FamilyResult], pairs: Sequence[Pair], epochs: int) -> list[str]:
    """Who leads on test accuracy at this budget (``epochs``), by how much, and whether the lead is more than noise.

    The headline names its budget: a ranking after a few epochs need not hold after more.
    """
    ranked = sorted(results, key=_acc, reverse=True)
    n = len(ranked[0].predictions)
    kind = "test-time-augmented accuracy" if ranked[0].ranked_by == "tta" else "single-view accuracy"
    lines = [f"At {epochs} epochs (this workspace's training budget; other budgets are in \"Accuracy against "
             f"training budget\"), ranked by {kind} on the {n:,} test images:", ""]
    lines += [f"{k}. {r.name}: {md.pct(_acc(r))} ({_ci(r)})" for k, r in enumerate(ranked, 1)]
    lines.append("")
    if len(ranked) < 2:
        lines.append(f"Only {ranked[0].name} has been evaluated, so there is nothing to compare it with yet.")
        return lines
    top, second = ranked[0], ranked[1]
    lead = _acc(top) - _acc(second)
    duel = _find(pairs, top, second)
    if lead == 0:
        lines.append(f"{top.name} and {second.name} tie at {md.pct(_acc(top))} ({_evidence(duel)}).")
    elif duel.test is not None and duel.test.p_value < ALPHA:
        lines.append(f"**At {epochs} epochs, {top.name} has the highest test accuracy**, {100 * lead:.2f} points ahead of {second.name}; "
                     f"the lead is statistically significant ({_evidence(duel)}).")
    else:
        lines.append(f"**At {epochs} epochs, {top.name} has the highest test accuracy**, {100 * lead:.2f} points ahead of {second.name}, "
                     f"but the lead is **not statistically significant** ({_evidence(duel)}): on this test set "
                     f"the two cannot be told apart, and another seed or split could swap them.")
    by_val = sorted(results, key=lambda r: r.metric("val", "accuracy") or 0.0, reverse=True)
    if [r.family for r in by_val] == [r.family for r in ranked]:
        lines.append("The validation set ranks the models in the same order.")
    else:
        lines.append("The validation set ranks them differently ("
                     + ", ".join(f"{r.name} {md.pct(r.metric('val', 'accuracy'))}" for r in by_val)
                     + "), so the order is not stable across held-out sets.")
    resnext = next((r for r in ranked if r.family == "resnext"), None)
    if resnext is not None and resnext is not top:
        place = ranked.index(resnext) + 1
        gap = _acc(top) - _acc(resnext)
        behind = f"{100 * gap:.2f} points behind {top.name}" if gap > 0 else f"tied with {top.name}"
        lines.append(f"ResNeXt did **not** win this comparison outright: {resnext.name} ranks {place} of "
                     f"{len(ranked)}, "
                     f"{behind} ({_evidence(_find(pairs, resnext, top))}).")
    return lines


def significance_table(pairs: Sequence[Pair]) -> list[str]:
    """Every pairwise McNemar test, with the Bonferroni-corrected verdict for the number of pairs."""
    corrected = ALPHA / max(1, len(pairs))
    rows = []
    for p in pairs:
        t = p.test
        if t is None:
            rows.append([f"{p.a.name} vs {p.b.name}", md.MISSING, md.MISSING, md.MISSING, md.MISSING,
                         "different test images", md.MISSING])
            continue
        rows.append([
            f"{p.a.name} vs {p.b.name}", str(t.a_only), str(t.b_only), str(t.both), md.p_value(t.p_value),
            "yes" if t.p_value < ALPHA else "no", "yes" if t.p_value < corrected else "no",
        ])
    headers = ["Pair (A vs B)", "only A right (b)", "only B right (c)", "both right", "p (exact)",
               f"significant at {ALPHA:g}", f"after Bonferroni ({corrected:.3g})"]
    return [
        "McNemar's exact test uses only the test images on which two models disagree: under the null "
        "hypothesis of equal accuracy each such image is equally likely to favour either model, so "
        "p = min(1, 2·P[X ≤ min(b, c)]) with X ~ Binomial(b + c, ½).",
        "",
        md.table(headers, rows),
    ]


def efficiency(results: Sequence[FamilyResult]) -> list[str]:
    """Accuracy bought per million parameters and per GMAC."""
    rows, per_param, per_mac = [], {}, {}
    for r in results:
        params, macs = r.metrics.get("params"), r.metrics.get("macs")
        acc = 100 * _acc(r)
        per_param[r.name] = acc / (params / 1e6) if params else None
        per_mac[r.name] = acc / (macs / 1e9) if macs else None
        rows.append([r.name, md.pct(_acc(r)), md.count(params), md.count(macs),
                     md.MISSING if per_param[r.name] is None else f"{per_param[r.name]:,.1f}",
                     md.MISSING if per_mac[r.name] is None else f"{per_mac[r.name]:,.1f}"])
    score = "TTA acc" if results[0].ranked_by == "tta" else "Test acc"
    lines = [md.table(["Model", score, "Params", "MACs", "acc % per M params", "acc % per GMAC"], rows), ""]
    valid_p = {k: v for k, v in per_param.items() if v is not None}
    valid_m = {k: v for k, v in per_mac.items() if v is not None}
    if len(valid_p) >= 2 and len(valid_m) >= 2:
        best_p, best_m = max(valid_p, key=valid_p.get), max(valid_m, key=valid_m.get)
        lines.append(f"Per parameter {best_p} is the most economical, per multiply-accumulate {best_m}"
                     + (" (it is both)." if best_p == best_m else ".")
                     + " These ratios favour small models (accuracy saturates while cost grows), so read them "
                     "next to the accuracy ranking, not instead of it.")
    return lines


def _relative(diff: float) -> str:
    """``2.31 points higher`` / ``0.40 points lower`` / ``the same``."""
    if diff == 0:
        return "the same"
    return f"{100 * abs(diff):.2f} points {'higher' if diff > 0 else 'lower'}"


def architecture(results: Sequence[FamilyResult], pairs: Sequence[Pair]) -> list[str]:
    """How ResNeXt's cardinality and grouped convolutions show up in its size, cost and accuracy vs ResNet."""
    by_family = {r.family: r for r in results}
    resnext, resnet = by_family.get("resnext"), by_family.get("resnet")
    if resnext is None:
        return ["ResNeXt has not been evaluated, so its cardinality cannot be discussed yet."]
    cfg = resnext.config
    lines = [
        f"{resnext.name} (depth {cfg.get('depth')}, cardinality C = {cfg.get('cardinality')}, base width "
        f"d = {cfg.get('base_width')}, width multiplier {cfg.get('width')}) replaces each bottleneck's 3×3 "
        f"convolution by C = {cfg.get('cardinality')} parallel convolutions over disjoint channel groups "
        "(one grouped convolution). A 3×3 convolution over D channels has 9·D² weights; split into C groups "
        "it has 9·D²/C, so the same width costs C times fewer weights and MACs in that layer."
    ]
    convs = resnext.model.get("convolutions") or {}
    grouped, dense = convs.get("grouped_params"), convs.get("grouped_dense_equivalent")
    if grouped and dense and resnext.metrics.get("params"):
        total = resnext.metrics["params"]
        lines.append(
            f"Measured on the trained model: its {convs.get('grouped_layers')} grouped convolutions hold "
            f"{md.count(grouped)} of its {md.count(total)} parameters ({100 * grouped / total:.1f} %); as dense "
            f"convolutions of the same width they would need {md.count(dense)}, making the network "
            f"{md.count(total - grouped + dense)} parameters ({(total - grouped + dense) / total:.2f}× its size).")
    if resnet is None:
        lines.append("ResNet has not been evaluated, so there is no like-for-like comparison.")
        return lines
    rc = resnet.config
    diff = _acc(resnext) - _acc(resnet)
    duel = _find(pairs, resnext, resnet)
    significant = duel.test is not None and duel.test.p_value < ALPHA
    params_ratio = md.ratio(resnext.metrics.get("params"), resnet.metrics.get("params"))
    macs_ratio = md.ratio(resnext.metrics.get("macs"), resnet.metrics.get("macs"))
    lines.append(
        f"Against {resnet.name} (depth {rc.get('depth')}, width multiplier {rc.get('width')}), {resnext.name} "
        f"has {params_ratio} the parameters and {macs_ratio} the MACs, and its test accuracy is "
        f"{_relative(diff)} ({_evidence(duel)}).")
    if diff > 0 and significant:
        verdict = "ResNeXt is significantly more accurate than ResNet in this run, as the paper leads one to expect"
    elif diff > 0:
        verdict = ("ResNeXt is ahead, but not significantly, so this run does not show that cardinality helps; "
                   "the expected advantage is within the noise of this test set")
    elif diff < 0 and significant:
        verdict = "ResNeXt is significantly *less* accurate than ResNet in this run, contrary to the paper's result"
    else:
        verdict = "ResNeXt is not ahead of ResNet in this run, and the difference is not significant"
    macs_a, macs_b = resnext.metrics.get("macs"), resnet.metrics.get("macs")
    verdict += "."
    if macs_a and macs_b and 0.8 <= macs_a / macs_b <= 1.25:
        verdict += (" The two have similar compute, so the gap is not a matter of cost; whether it is the "
                    "architecture or the training noise of one seed is for the repeated seeds to say "
                    "(Repeated seeds).")
    elif macs_a and macs_b:
        verdict += (f" The two differ in compute ({macs_ratio}), so this pair cannot separate the effect of "
                    "cardinality from that of size; the cardinality section below varies C alone.")
    lines.append(verdict)
    vgg = by_family.get("vgg")
    if vgg is not None:
        lines.append(
            f"Against {vgg.name}, a plain stack of convolutions without shortcuts, {resnext.name} has "
            f"{md.ratio(resnext.metrics.get('params'), vgg.metrics.get('params'))} the parameters and "
            f"{md.ratio(resnext.metrics.get('macs'), vgg.metrics.get('macs'))} the MACs, and its test accuracy is "
            f"{_relative(_acc(resnext) - _acc(vgg))} ({_evidence(_find(pairs, resnext, vgg))}).")
    return lines


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
    verdict: str


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
        verdict = "overfitting"
    elif gap_final < UNDERFIT_GAP and still_improving:
        verdict = "under-trained"
    else:
        verdict = "balanced"
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


_VERDICT_TEXT = {
    "overfitting": "overfits: train accuracy pulls away from validation, or validation loss climbs after its "
                   "best epoch",
    "under-trained": "is still improving at the last epoch and its train accuracy does not exceed validation: "
                     "more epochs (or a larger model) would likely help",
    "balanced": "neither clearly over- nor under-fits by these thresholds",
}


def training(results: Sequence[FamilyResult], epochs_configured: int, patience: int) -> list[str]:
    """Early stopping, fitting, validation volatility and training time, per family."""
    fits = {r.family: fit(r) for r in results}
    rows = []
    for r in results:
        f = fits[r.family]
        if f is None:
            rows.append([r.name] + [md.MISSING] * 6 + [md.seconds(r.metrics.get("train_seconds"))])
            continue
        rows.append([
            r.name, f"{f.best_epoch} / {f.epochs_run} / {epochs_configured}",
            "yes" if r.train.get("stopped_early") else "no",
            md.points(f.gap_best), md.points(f.gap_final), f"{100 * f.val_loss_rise:+.1f} %",
            md.MISSING if math.isnan(f.volatility) else f"{100 * f.volatility:.2f} points",
            md.seconds(r.metrics.get("train_seconds")),
        ])
    headers = ["Model", "best / run / max epochs", "stopped early", "train−val acc at best", "train−val acc at end",
               "val loss end vs best", "val acc volatility", "train time"]
    lines = [md.table(headers, rows), "",
             f"Thresholds: overfitting when train accuracy ends more than {100 * OVERFIT_GAP:.0f} points above "
             f"validation, or validation loss ends more than {100 * OVERFIT_LOSS_RISE:.0f} % above its best after "
             f"the best epoch; under-trained when the gap is below {100 * UNDERFIT_GAP:.0f} points and the last "
             "epoch is the best. Volatility is the standard deviation of the epoch-to-epoch changes in validation "
             "accuracy (it needs at least three epochs). Train accuracy is measured on augmented training "
             "batches, so it understates the fit.", ""]
    for r in results:
        f = fits[r.family]
        if f is None:
            lines.append(f"- {r.name}: no training history (reports/train/{r.family}_history.csv), "
                         "so no curve analysis.")
            continue
        if r.train.get("stopped_early"):
            stop = (f"early stopping ended training after epoch {f.epochs_run} of {epochs_configured}, "
                    f"{f.epochs_run - f.best_epoch} epochs after the best one (patience {patience})")
        elif f.best_epoch == f.epochs_run:
            stop = f"the best weights are from the last epoch ({f.epochs_run}); early stopping never triggered"
        else:
            stop = (f"the best weights are from epoch {f.best_epoch} of {f.epochs_run}; validation loss did not "
                    f"improve for the last {f.epochs_run - f.best_epoch} epoch(s), fewer than the patience of "
                    f"{patience}")
        drop = (f"Its largest single drop in validation accuracy was {100 * -f.worst_drop:.2f} points, at epoch "
                f"{f.worst_drop_epoch}." if f.worst_drop < 0 else "Its validation accuracy never dropped.")
        lines.append(f"- {r.name} {_VERDICT_TEXT[f.verdict]} (gap at the end {md.points(f.gap_final)}); {stop}. {drop}")
    with_fit = [(r, f) for r in results if (f := fits[r.family]) is not None and not math.isnan(f.volatility)]
    if len(with_fit) >= 2 and len({round(f.volatility, 6) for _, f in with_fit}) > 1:
        jumpy = max(with_fit, key=lambda rf: rf[1].volatility)
        calm = min(with_fit, key=lambda rf: rf[1].volatility)
        lines += ["", f"Validation accuracy was most volatile for {jumpy[0].name} ({100 * jumpy[1].volatility:.2f} "
                      f"points per epoch) and steadiest for {calm[0].name} ({100 * calm[1].volatility:.2f}); "
                      "restoring the best epoch's weights, not the last, protects the test score from a bad "
                      "final epoch."]
    timed = [r for r in results if r.metrics.get("train_seconds")]
    if len(timed) >= 2:
        slow = max(timed, key=lambda r: r.metrics["train_seconds"])
        fast = min(timed, key=lambda r: r.metrics["train_seconds"])
        lines.append(f"Training took longest for {slow.name} ({md.seconds(slow.metrics['train_seconds'])}, "
                     f"{slow.metrics['train_seconds'] / fast.metrics['train_seconds']:.1f}× {fast.name}).")
    return lines
