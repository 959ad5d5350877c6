"""reports/comparison.md: the three families side by side, with figures and a data-driven discussion.

All numbers come from files: what the train and evaluate stages write (so a DVC
run-cache restore, which skips the scripts, still gives a correct report), and
``reports/runs.json``, the ``runs`` stage's summary of the MLflow runs of other
seeds and other cardinalities (see :mod:`convbench.evaluation.studies`).
"""

from __future__ import annotations

import math
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from convbench import figures
from convbench.config import to_dict
from convbench.data.format import Cache, load_cache
from convbench.files import atomic_write_bytes
from convbench.evaluation import budget, discussion, provenance
from convbench.evaluation import markdown as md
from convbench.evaluation.results import FamilyResult, load_results
from convbench.evaluation.studies import (
    COMPLEXITY_TOLERANCE, BudgetPoint, Runs, SeedPair, SeedStats, Trend, budget_points, cardinality_groups,
    cardinality_trend, machine_label, seed_pair, seed_runs, seed_stats, seed_verdict,
)
from convbench.families import FAMILIES
from convbench.params import Params
from convbench.paths import Layout

GALLERY_SIZE = 16
"""Misclassified images shown per model: the most confident mistakes."""
GALLERY_COLUMNS = 8
"""Images per row of the gallery."""
SWEEP_COMMAND = "convbench recipe cardinality --queue && dvc queue start -j 1"
BUDGET_COMMAND = "convbench recipe budget --queue && dvc queue start -j 1"
BUDGET_TARGETS = (0.80, 0.85)
"""Accuracies whose time to reach the budget section reads off each family's line (plus the lowest family's best)."""
TIME_MISMATCH = 0.15
"""Relative time per image beyond this from the relative MACs: matched MACs are not matched time."""
SEED_COMMAND = "dvc exp run --queue -S train.seed=1,2 && dvc queue start -j 1"
VERDICTS = {"architecture": "architecture difference", "consistent": "same order, not significant",
            "noise": "within seed noise"}
"""How :func:`~convbench.evaluation.studies.seed_verdict`'s answers read in the report."""


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


def summary_section(results: Sequence[FamilyResult], label_smoothing: float, seeds: dict[str, int]) -> list[str]:
    threshold = accuracy_threshold(results)
    tta = any(r.metric("test_tta") for r in results)
    summary, detail = summary_columns(seeds, tta), detail_columns(threshold, tta)
    smoothing = (f"; the learning curves below show the training objective (label smoothing {label_smoothing:g}), "
                 "so their losses are higher" if label_smoothing > 0 else "")
    first = results[0]
    inference = first.metric("inference") or {}
    return [
        "## Summary", "",
        md.table(["Model", *(c.header for c in summary)], md.compare_rows(results, lambda r: r.name, summary)), "",
        md.table(["Model details", *(c.header for c in detail)], md.compare_rows(results, lambda r: r.name, detail)),
        "",
        "Best value of each column in **bold** (lower is better for losses, size, compute, time and latency). "
        f"Losses are plain cross-entropy of the restored best weights, computed in fp32{smoothing}. "
        f"{ranking_note(results)} {mac_note(results)} "
        "The 95 % CI is a percentile bootstrap of that accuracy over the test images. "
        f"Throughput: batch {inference.get('batch_size', md.MISSING)}, latency: median of "
        f"{inference.get('latency_runs', md.MISSING)} single-image runs, both on {inference.get('device', md.MISSING)} "
        f"in {inference.get('precision', md.MISSING)}"
        f"{' with channels_last' if inference.get('channels_last') else ''}, normalisation included. "
        f"Training times are from {_machine(first)}; they compare only with times from the same machine."
        + ("" if threshold is None else
           f" Time to {md.pct(threshold, 1)} val: training wall-clock seconds, validation passes included, until the "
           "first epoch whose validation accuracy reached the lowest final validation accuracy of the models "
           "minus 2 points (see Time to accuracy)."), "",
    ]


MAC_BAND = 0.25
"""Like-for-like cost: the costliest model's forward MACs at most this fraction above the cheapest's."""


def mac_note(results: Sequence[FamilyResult]) -> str:
    """Whether the models cost the same per image: the MAC ratio of the costliest to the cheapest."""
    macs = {r.name: r.metric("macs") for r in results if r.metric("macs")}
    if len(macs) < 2:
        return ""
    high, low = max(macs, key=macs.get), min(macs, key=macs.get)
    ratio = macs[high] / macs[low]
    verdict = (f"within {MAC_BAND:.0%} of each other, so the comparison is at matched cost" if ratio <= 1 + MAC_BAND
               else f"not within {MAC_BAND:.0%} of each other, so accuracy differences also reflect cost")
    return f"Forward MACs per image: {high} needs {ratio:.2f}x those of {low}; the models are {verdict}."


def ranking_note(results: Sequence[FamilyResult]) -> str:
    """Which test predictions the report ranks by: test-time augmentation or the single view."""
    first = results[0]
    if first.ranked_by == "plain":
        tta = " (TTA columns: test-time augmentation, shown but not ranked by)" if first.metric("test_tta") else ""
        return (f"The report ranks by single-view test accuracy{tta}; the CI, macro-F1, McNemar tests, "
                "confusion matrices, per-class scores and mistakes below are those of the single-view predictions.")
    views = first.metric("tta", "views") or md.MISSING
    return (f"The report ranks by **TTA acc**: test-time augmentation, the softmax of logits averaged over {views} "
            f"views of each image ({first.metric('tta', 'mode')}: mirrored and, with translate, shifted by one "
            "pixel); the CI, macro-F1, McNemar tests, confusion matrices, per-class scores and mistakes below "
            "are those of the TTA predictions. Test acc is a single view, the score the seed and cardinality "
            "studies compare.")


def _figure(title: str, name: str) -> str:
    return f"![{title}](figures/{name})"


def curves_section(results: Sequence[FamilyResult], figdir: Path) -> list[str]:
    with_history = [r for r in results if r.history is not None]
    lines = ["## Learning curves", ""]
    if not with_history:
        return lines + ["No training history files (reports/train/<family>_history.csv) were found.", ""]
    figures.learning_curves(
        {r.name: {c: r.history[c].tolist() for c in r.history.columns} for r in with_history},
        {r.name: int(r.metric("best_epoch")) for r in with_history if r.metric("best_epoch") is not None},
        figdir / "learning_curves.png",
    )
    return lines + [_figure("Loss and accuracy per epoch, train and validation, all models", "learning_curves.png"),
                    "", "Dashed: training (augmented batches), solid: validation; the dot marks the epoch whose "
                    "weights were restored and evaluated.", ""]


def time_section(results: Sequence[FamilyResult], figdir: Path) -> list[str]:
    threshold = accuracy_threshold(results)
    with_history = [r for r in results if r.history is not None]
    if threshold is None:
        return []
    figures.time_to_accuracy(
        {r.name: (r.history["seconds"].cumsum().tolist(), r.history["val_accuracy"].tolist()) for r in with_history},
        threshold, figdir / "time_to_accuracy.png",
    )
    reach = {r.name: seconds_to_reach(r.history, threshold) for r in with_history}
    ranked = sorted((t, n) for n, t in reach.items() if t is not None)
    lead = (f" **{ranked[0][1]}** got there first ({md.seconds(ranked[0][0])})." if ranked else "")
    return ["## Time to accuracy", "",
            _figure("Validation accuracy against training wall-clock seconds", "time_to_accuracy.png"), "",
            f"One point per epoch, at the wall-clock seconds elapsed when its validation pass ended. The dashed line "
            f"is {md.pct(threshold, 1)}, the lowest final validation accuracy minus 2 points.{lead} Time measured on "
            "this run's machine; compare it only with runs on the same hardware.", ""]


def confusion_section(results: Sequence[FamilyResult], figdir: Path) -> list[str]:
    figures.confusion_figure({r.name: r.confusion for r in results}, results[0].classes, figdir / "confusion.png")
    return ["## Confusion matrices (test set)", "",
            _figure("Confusion matrices of all models on the test set", "confusion.png"), "",
            "Rows are true classes, columns predictions; cells show counts, colour the share of the true class.", ""]


def per_class_section(results: Sequence[FamilyResult], figdir: Path) -> list[str]:
    classes = results[0].classes
    recall = {r.name: [c["recall"] for c in r.per_class] for r in results}
    rows = [[name, *md.mark_best([values[k] for values in recall.values()], md.pct, "higher")]
            for k, name in enumerate(classes)]
    figures.per_class_bars(recall, classes, figdir / "per_class.png")
    hardest = min(range(len(classes)), key=lambda k: float(np.mean([v[k] for v in recall.values()])))
    return ["## Per-class accuracy (test set)", "",
            md.table(["Class", *recall], rows), "",
            _figure("Per-class test accuracy of every model", "per_class.png"), "",
            f"Per-class accuracy is the recall of that class; the best model per class is in bold. "
            f"The hardest class on average is **{classes[hardest]}** "
            f"({md.pct(float(np.mean([v[hardest] for v in recall.values()])))} over the models).", ""]


def gallery_section(results: Sequence[FamilyResult], cache: Cache | None, figdir: Path) -> list[str]:
    lines = ["## Misclassified test images", ""]
    if cache is None:
        return lines + ["data/cache.pt is not available, so the images cannot be shown (run `dvc pull` or "
                        "`dvc repro cache`).", ""]
    for r in results:
        pred, prob = r.pred_columns
        wrong = r.predictions[r.predictions["label"] != r.predictions[pred]]
        if wrong.empty:
            lines += [f"**{r.name}** classified all {len(r.predictions):,} test images correctly.", ""]
            continue
        shown = wrong.sort_values([prob, "index"], ascending=[False, True]).head(GALLERY_SIZE)
        images = cache.images[torch.tensor(shown["index"].tolist(), dtype=torch.long)].numpy().transpose(0, 2, 3, 1)
        captions = [f"{r.classes[t]} → {r.classes[p]}\n{100 * q:.0f} %"
                    for t, p, q in zip(shown["label"], shown[pred], shown[prob])]
        rows = [slice(k, k + GALLERY_COLUMNS) for k in range(0, len(shown), GALLERY_COLUMNS)]
        name = f"misclassified_{r.family}.png"
        figures.image_grid([images[s] for s in rows], figdir / name, captions=[captions[s] for s in rows],
                           title=f"{r.name}: most confident mistakes (true → predicted, confidence)")
        lines += [f"**{r.name}** got {len(wrong):,} of {len(r.predictions):,} test images wrong "
                  f"({md.pct(len(wrong) / max(1, len(r.predictions)))}); the {len(shown)} most confident mistakes:", "",
                  _figure(f"{r.name} misclassified test images", name), ""]
    return lines


def seeds_section(results: Sequence[FamilyResult], runs: Runs, params: Params) -> list[str]:
    """Test accuracy over repeated seeds per family, and each pair compared seed by seed."""
    lines = ["## Repeated seeds", ""]
    how = (f"Add seeds with `{SEED_COMMAND}` (or `dvc exp run -S train.seed=N`), then `dvc repro`: the report "
           "groups every finished MLflow run with this workspace's data, recipe and model params by seed.")
    if runs.error:
        return lines + [f"MLflow runs could not be read: {runs.error}. {how}", ""]
    per_family = {r.family: seed_runs(runs, params, r.family) for r in results}
    if all(len(v) < 2 for v in per_family.values()):
        return lines + ["Every model has been trained with one seed only, so the ranking above rests on one "
                        "training each: McNemar's test says whether these trained models differ on the test "
                        "set, not whether the architectures do (another seed can reorder close models). "
                        + how, ""]
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
    lines += [md.table(["Model over seeds", "Seeds n", "Mean ± sd", "95 % CI of the mean (t)", "Min – max", "Seeds"], rows), ""]
    pair_rows = []
    for a, b, pair in seed_pairs(results, runs, params):
        if pair.seeds == 0:
            continue
        leader, ahead = (a, pair.a_ahead) if pair.mean_difference >= 0 else (b, pair.b_ahead)
        pair_rows.append([f"{a} vs {b}", str(pair.seeds),
                          f"{leader} ahead in {ahead} of {pair.seeds}",
                          f"{100 * pair.mean_difference:+.2f} points",
                          md.MISSING if pair.p_value is None else md.p_value(pair.p_value),
                          VERDICTS.get(seed_verdict(pair), md.MISSING)])
    lines += [md.table(["Pair", "Shared seeds", "Same order", "Mean difference (A − B)", "Paired t-test p",
                        "Verdict"], pair_rows), "",
              "The t interval and the paired t-test treat seeds as independent draws of the training noise; with "
              "few seeds they are wide and the test has little power. A pair ordered the same way in every seed "
              "with p < 0.05 is an architecture difference at this recipe; one whose order changed between seeds "
              "is within seed noise; one in the same order every time with p >= 0.05 needs more seeds. "
              "McNemar's test above compares this workspace's seed only.", ""]
    return lines


def seed_pairs(results: Sequence[FamilyResult], runs: Runs, params: Params) -> list[tuple[str, str, SeedPair]]:
    """Every pair of evaluated families compared seed by seed, as (name A, name B, pair)."""
    per_family = {r.family: seed_runs(runs, params, r.family) for r in results}
    return [(a.name, b.name, seed_pair(per_family[a.family], per_family[b.family]))
            for i, a in enumerate(results) for b in results[i + 1:]]


def seed_discussion(results: Sequence[FamilyResult], runs: Runs, params: Params) -> list[str]:
    """The ranking's verdict over seeds, for the Discussion: which orderings survive training noise."""
    tested = [(a, b, pair) for a, b, pair in seed_pairs(results, runs, params) if seed_verdict(pair)]
    if runs.error or not tested:
        return ["Each model was trained with one seed here (or the MLflow runs could not be read), so the "
                "McNemar tests above compare trained models, not architectures; see Repeated seeds.", ""]
    lines = ["Over repeated seeds (section Repeated seeds), which is what separates the architectures from "
             "training noise:", ""]
    for a, b, pair in tested:
        leader, ahead = (a, pair.a_ahead) if pair.mean_difference >= 0 else (b, pair.b_ahead)
        other = b if leader == a else a
        verdict = seed_verdict(pair)
        lines.append(f"- {leader} over {other}: ahead in {ahead} of {pair.seeds} seeds, by "
                     f"{100 * abs(pair.mean_difference):.2f} points on average (paired t-test p = "
                     f"{md.p_value(pair.p_value)}): "
                     + {"architecture": f"**an architecture difference at this recipe and {params.train.epochs} "
                                        "epochs**.",
                        "consistent": f"the same order every time, but {pair.seeds} seeds are too few for the test "
                                      "to rule out seed noise: **not established yet**.",
                        "noise": "the order changed between seeds: **within seed noise**."}[verdict])
    return lines + [""]


def cardinality_section(runs: Runs, params: Params, figdir: Path) -> list[str]:
    """ResNeXt accuracy against cardinality at (ideally) fixed complexity, seeds aggregated, with a trend test."""
    lines = ["## ResNeXt: accuracy against cardinality at fixed complexity", ""]
    resnext = params.models["resnext"]
    how = (f"To measure it, keep `resnext.base_width: auto` (it keeps the parameter count of "
           f"`complexity_of`, as Table 3 of the ResNeXt paper does) and queue one run per cardinality "
           f"(`{SWEEP_COMMAND}`), then `dvc repro`. Runs are read from MLflow: finished, with a test accuracy, "
           "and the same data, recipe and other ResNeXt params as this workspace.")
    if runs.error:
        return lines + [f"MLflow runs could not be read: {runs.error}. {how}", ""]
    groups = cardinality_groups(runs, params)
    if len(groups) < 2:
        found = ", ".join(f"{g.cardinality}x{g.base_width}d" for g in groups) or "none"
        return lines + [f"Fewer than two comparable cardinalities are in MLflow (found: {found}). {how}", ""]
    baseline = next((g for g in groups if (g.cardinality, g.base_width) == (resnext.cardinality, resnext.base_width)),
                    groups[0])
    rows = []
    for g in groups:
        mark = " (baseline)" if g is baseline else ""
        seconds = [r["train_seconds"] for r in g.runs if r.get("train_seconds")]
        rows.append([f"{g.cardinality}{mark}", str(g.base_width), md.count(g.params), md.ratio(g.params, baseline.params),
                     md.count(g.macs), md.ratio(g.macs, baseline.macs), str(g.accuracy.n),
                     f"{md.pct(g.accuracy.mean)}" + (f" ± {md.pct(g.accuracy.sd)}" if g.accuracy.sd else ""),
                     md.seconds(sum(seconds) / len(seconds)) if seconds else md.MISSING])
    figures.cardinality_plot(
        [{"cardinality": g.cardinality, "base_width": g.base_width, "mean": g.accuracy.mean, "sd": g.accuracy.sd,
          "params_ratio": (g.params / baseline.params) if g.params and baseline.params else None} for g in groups],
        figdir / "cardinality.png")
    lines += [md.table(["Cardinality C", "Base width d", "Params", "× baseline", "MACs", "× baseline", "Seeds",
                        "Test acc (mean ± sd)", "Train time"], rows), "",
              _figure("ResNeXt test accuracy against cardinality", "cardinality.png"), ""]
    off = [g for g in groups if g.params and baseline.params
           and abs(g.params / baseline.params - 1) > COMPLEXITY_TOLERANCE]
    if off:
        lines += ["**Complexity did not stay fixed** for " + ", ".join(
            f"C={g.cardinality} ({g.params / baseline.params:.2f}x the baseline's parameters)" for g in off)
            + f": beyond ±{COMPLEXITY_TOLERANCE:.0%}, its accuracy also reflects its size, not only its "
              "cardinality.", ""]
    return lines + [_trend_verdict(cardinality_trend(groups)), ""]


def _trend_verdict(trend: Trend | None) -> str:
    """Whether the paper's claim (accuracy rises with cardinality at equal complexity) holds here."""
    claim = "The ResNeXt paper's Table 3 finds accuracy rising with cardinality at fixed complexity."
    if trend is None:
        return f"{claim} Too few settings here to fit a trend."
    slope = f"{100 * trend.slope:+.2f} points per doubling of C over {trend.points} run(s)"
    if trend.ci is None:
        return (f"{claim} Here: {slope}; with so few runs, or no spread between them, there is no interval, "
                "so the trend is not resolved.")
    interval = f"95 % CI {100 * trend.ci[0]:+.2f} to {100 * trend.ci[1]:+.2f}"
    if trend.ci[0] > 0:
        return f"{claim} It holds here: {slope} ({interval})."
    if trend.ci[1] < 0:
        return f"{claim} Here the opposite: {slope} ({interval})."
    return f"{claim} Not resolved here: {slope}, but the {interval} includes no change."


def _stats(st: SeedStats | None) -> str:
    if st is None:
        return md.MISSING
    return md.pct(st.mean) + (f" ± {md.pct(st.sd)}" if st.sd is not None else "")


def _machine(result: FamilyResult) -> str:
    return machine_label(result.train.get("machine", {}))


def budget_section(results: Sequence[FamilyResult], runs: Runs, params: Params, figdir: Path) -> list[str]:
    """Accuracy against training budget: the table, the figure, the ranking at each budget and the Pareto front."""
    lines = ["## Accuracy against training budget", ""]
    how = (f"Add budgets with `{BUDGET_COMMAND}` (2, 8 and 16 epochs) or `dvc exp run -S train.epochs=N`, then "
           "`dvc repro`: runs that differ from this workspace only in `train.epochs` (and seed) are collected here.")
    if runs.error:
        return lines + [f"MLflow runs could not be read: {runs.error}. {how}", ""]
    names = {r.family: r.name for r in results}
    tta = params.evaluate.rank_by == "tta"
    score = "TTA" if tta else "single-view"
    points = [p for p in budget_points(runs, params) if p.family in names]
    here = _machine(results[0])
    local = [p for p in points if p.machine == here]
    if len({p.epochs for p in local}) < 2:
        found = ", ".join(sorted({str(p.epochs) for p in local})) or "none"
        return lines + [f"Fewer than two budgets of these models are in MLflow for {here} (epochs found: {found}). "
                        + how, ""]
    rows = [[names[p.family], str(p.epochs), md.seconds(p.seconds),
             md.MISSING if p.compute is None else f"{p.compute / 1e12:,.1f} T", _stats(p.test), _stats(p.tta),
             str(p.test.n)] + ([p.machine] if len({q.machine for q in points}) > 1 else [])
            for p in points]
    headers = ["Model", "Epochs", "Train time", "Train compute (MACs)", "Test acc (mean ± sd)", "TTA acc (mean ± sd)",
               "Seeds"] + (["Machine"] if len({q.machine for q in points}) > 1 else [])
    series: dict[str, list[dict[str, float | None]]] = {}
    for p in points:
        label = names[p.family] + ("" if p.machine == here else f" ({p.machine})")
        series.setdefault(label, []).append({"seconds": p.seconds, "compute": p.compute, "epochs": p.epochs,
                                             "mean": p.accuracy(tta).mean, "sd": p.accuracy(tta).sd})
    figures.budget_plot(series, figdir / "budget.png")
    lines += [f"Times were measured on {here}; training compute is 3 x forward MACs x training images seen. "
              "Runs from other machines are listed with their machine and drawn as separate lines, never on "
              "one time axis with these.", "",
              md.table(headers, rows), "", _figure(f"{score} test accuracy against training time and compute",
                                                   "budget.png"), ""]
    return lines + budget_verdict(local, names, tta)


def budget_headline(results: Sequence[FamilyResult], runs: Runs, params: Params) -> list[str]:
    """The ranking at every other budget measured, for the Discussion's headline (empty without other budgets)."""
    names = {r.family: r.name for r in results}
    here = _machine(results[0])
    points = [p for p in budget_points(runs, params) if p.family in names and p.machine == here]
    ranked = budget.ranks(points, params.evaluate.rank_by == "tta")
    others = [r for r in ranked if r.epochs != params.train.epochs]
    if not others:
        return []
    flips = budget.crossings(ranked)
    return ["Other budgets (\"Accuracy against training budget\"): " + "; ".join(
        f"at {r.epochs} epochs " + " > ".join(names[p.family] for p in r.order) for r in others) + ". "
        + ("**The ranking depends on the training budget.**" if flips else
           "The ranking is the same at every budget measured."), ""]


def budget_verdict(points: Sequence[BudgetPoint], names: dict[str, str], tta: bool) -> list[str]:
    """In words: the best family at each budget, where the ranking changes, the Pareto front, time to targets."""
    score = "TTA" if tta else "single-view"
    lines = [f"Ranked by {score} test accuracy at each budget:", ""]
    ranked = budget.ranks(points, tta)
    for rank in ranked:
        first, second = rank.order[0], rank.order[1]
        evidence = (f"; over {rank.pair.seeds} seeds, paired t-test p = {md.p_value(rank.pair.p_value)} "
                    f"({VERDICTS.get(rank.verdict or '', 'not tested')})" if rank.pair and rank.pair.p_value is not None
                    else f"; {first.test.n} seed(s): no paired test, so a gap this size may be seed noise")
        lines.append(f"- {rank.epochs} epochs: " + " > ".join(names[p.family] for p in rank.order)
                     + f"; {names[first.family]} leads {names[second.family]} by {md.points(rank.margin)}{evidence}.")
    flips = budget.crossings(ranked)
    lines.append("")
    if flips:
        lines.append("**The ranking depends on the budget**: " + "; ".join(
            f"{names[c.passer]} passes {names[c.passed]} between {c.low} and {c.high} epochs" for c in flips) + ".")
    else:
        lines.append(f"The ranking is the same at every budget measured ({', '.join(str(r.epochs) for r in ranked)} "
                     "epochs).")
    front = budget.pareto_front(points, tta)
    lines += ["", "Pareto front in time (no other run is both faster and more accurate): " + ", ".join(
        f"{names[p.family]} at {p.epochs} epochs ({md.seconds(p.seconds)}, {md.pct(p.accuracy(tta).mean)})"
        for p in front) + ".", ""]
    families = sorted({p.family for p in points}, key=list(names).index)
    by_family = {f: [p for p in points if p.family == f] for f in families}
    lowest_best = min(max(p.accuracy(tta).mean for p in by_family[f]) for f in families)
    targets = sorted({*BUDGET_TARGETS, round(lowest_best, 4)})
    reach = {f: [budget.seconds_to(by_family[f], t, tta) for t in targets] for f in families}
    rows = [[names[f], *(md.seconds(s) if s is not None else "not reached" for s in reach[f])] for f in families]
    lines += [md.table(["Seconds to reach", *(md.pct(t) + (" (lowest family's best)" if t == round(lowest_best, 4)
                                                         else "") for t in targets)], rows), "",
              "Read off each family's line: linear between measured budgets in log time; a target below the "
              "shortest budget's accuracy shows that budget's time.", ""]
    return lines


def cost_section(results: Sequence[FamilyResult]) -> list[str]:
    """Paper cost (parameters, MACs) against hardware cost (measured training img/s) on the machine that trained."""
    lines = ["## Paper cost against measured cost", ""]
    timed = [r for r in results if r.metric("macs") and r.metric("train_images_per_second")]
    if len(timed) < 2:
        return lines + ["Too few models with MACs and a measured training speed to compare.", ""]
    base = min(timed, key=lambda r: r.metric("macs"))
    rows, mismatched = [], []
    for r in timed:
        mac_ratio = r.metric("macs") / base.metric("macs")
        time_ratio = base.metric("train_images_per_second") / r.metric("train_images_per_second")
        rows.append([r.name, md.count(r.metric("params")), md.count(r.metric("macs")), f"{mac_ratio:.2f}x",
                     md.rate(r.metric("train_images_per_second")), f"{time_ratio:.2f}x",
                     f"{3 * r.metric('macs') * r.metric('train_images_per_second') / 1e9:,.0f}"])
        if abs(time_ratio / mac_ratio - 1) > TIME_MISMATCH:
            mismatched.append(f"{r.name} costs {mac_ratio:.2f}x {base.name}'s MACs but {time_ratio:.2f}x its "
                              "training time per image")
    machines = sorted({_machine(r) for r in timed})
    lines += [f"Measured on {'; '.join(machines)} (training, batch of the recipe).", "",
              md.table(["Model", "Params", "Forward MACs", "MACs × " + base.name, "Train img/s",
                        "Time per image × " + base.name, "Effective GMAC/s (3 x MACs x img/s)"], rows), ""]
    if mismatched:
        lines.append("**Matched MACs are not matched time** here: " + "; ".join(mismatched) + ". MACs count "
                     "arithmetic, not memory traffic: grouped and 1x1 convolutions, BatchNorm and activations at "
                     "full width cost time that MACs do not show (Dehghani et al., \"The Efficiency Misnomer\").")
    else:
        lines.append(f"Measured time per image follows the MACs within ±{TIME_MISMATCH:.0%} for every model here.")
    return lines + [""]


def footer(results: Sequence[FamilyResult], params: Params, base: Path) -> list[str]:
    changed = provenance.changed_params(params)
    train = results[0].train
    model = results[0].model
    inference = results[0].metric("inference") or {}
    data_hash = provenance.dataset_hash(base / "dvc.lock", params.data.archive)
    lines = ["## Reproducibility", "",
             f"- git commit: `{provenance.git_commit(base)}`",
             f"- dataset: `{data_hash or 'unknown (no dvc.lock entry)'}`",
             f"- trained on {_machine(results[0])}; "
             f"inference timing: {inference.get('device', md.MISSING)} ({inference.get('precision', md.MISSING)}, "
             f"threads: {inference.get('threads', md.MISSING)})",
             f"- torch {model.get('torch', md.MISSING)} at evaluation, python {model.get('python', md.MISSING)}; "
             f"report written with torch {torch.__version__} on {platform.platform(terse=True)}",
             "- params that differ from the shipped params.yaml:"
             + ("" if changed else " none")]
    lines += [f"  - `{key}`: {value!r} (shipped {default!r})" for key, value, default in changed]
    return lines + ["", "Regenerate with `dvc repro` (or `convbench report` after the evaluate stages).", ""]


def render(results: Sequence[FamilyResult], params: Params, cache: Cache | None, runs: Runs,
           figdir: Path, base: Path) -> str:
    """The whole comparison.md text; draws its figures into ``figdir`` on the way."""
    pairs = discussion.all_pairs(results)
    first = results[0]
    val_images = first.metric("val", "images")
    intro = [
        "# convbench: " + " vs ".join(r.name for r in results), "",
        "Generated by the `report` stage from reports/metrics, reports/train and reports/eval; do not edit by hand. "
        f"{len(first.classes)} classes ({', '.join(first.classes[:12])}{', …' if len(first.classes) > 12 else ''}), "
        f"{len(first.predictions):,} test and {md.MISSING if val_images is None else f'{val_images:,}'} validation "
        f"images at {first.model.get('image_size', md.MISSING)} px.", "",
    ]
    sections = [
        intro,
        summary_section(results, params.train.label_smoothing,
                        {r.family: max(1, len(seed_runs(runs, params, r.family))) for r in results}),
        ["## Discussion", "",
         "Generated from the numbers above: which model is best and whether the difference is real; how "
         "ResNeXt's cardinality and grouped convolutions show in its size, cost and accuracy against ResNet and "
         "VGG; and what the training curves say about over- or under-fitting, early stopping, volatility and time.",
         "", "### Ranking and significance", "", *discussion.ranking(results, pairs, params.train.epochs), "",
         *budget_headline(results, runs, params),
         *discussion.significance_table(pairs), "",
         *seed_discussion(results, runs, params),
         "### Accuracy per parameter and per MAC", "", *discussion.efficiency(results), "",
         "### Cardinality and grouped convolutions: ResNeXt against ResNet and VGG", "",
         *discussion.architecture(results, pairs), "",
         "### Training: fitting, early stopping, volatility and time", "",
         *discussion.training(results, params.train.epochs, params.train.patience), ""],
        curves_section(results, figdir),
        time_section(results, figdir),
        confusion_section(results, figdir),
        per_class_section(results, figdir),
        gallery_section(results, cache, figdir),
        seeds_section(results, runs, params),
        budget_section(results, runs, params, figdir),
        cost_section(results),
        cardinality_section(runs, params, figdir),
        footer(results, params, base),
    ]
    return "\n".join(line for section in sections for line in section).rstrip() + "\n"


def write_report(params: Params, runs: Runs, layout: Layout = Layout()) -> tuple[Path, list[FamilyResult]]:
    """Write reports/comparison.md and reports/figures/*.png; returns the Markdown path and the results."""
    results = load_results(layout, family_configs(params))
    figdir = layout.reports / "figures"
    figdir.mkdir(parents=True, exist_ok=True)
    for stale in figdir.glob("*.png"):  # the folder is this stage's output: drop figures of absent models
        stale.unlink()
    cache = load_cache(layout.cache) if layout.cache.is_file() else None
    text = render(results, params, cache, runs, figdir, layout.base)
    path = layout.reports / "comparison.md"
    atomic_write_bytes(path, text.encode())
    return path, results


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
