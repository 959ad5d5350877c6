"""The runs beyond the workspace's own: seeds, training budgets and cardinalities, from ``reports/runs.json``.

Only the tracking store remembers runs of other seeds, budgets and cardinalities
(DVC's workspace holds one), so the ``runs`` stage reads them from MLflow into a
sorted, deterministic ``reports/runs.json`` (:func:`collect`): every finished run
with a test accuracy on the same data and recipe as this workspace, whatever
its seed, its number of epochs and its model. The report then groups them here:
seeds of the same model (:func:`seed_runs`, :func:`seed_stats`, :func:`seed_pair`),
settings of the grouped family that differ only in cardinality and base width
(:func:`cardinality_groups`, :func:`cardinality_trend`), both at the workspace's
budget, and the workspace's models at every budget (:func:`budget_points`).
Every failure to read the store becomes a message.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats as scipy_stats

from convbench.config import to_dict
from convbench.families import FAMILIES, GROUPED
from convbench.params import Params

SEED = "train.seed"
EPOCHS = "train.epochs"
IGNORED = frozenset({"train.threads", "train.eval_batch_size", "train.device", SEED, EPOCHS})
"""Settings that change speed, the seed or the budget, not the recipe; runs differing only in these are comparable."""
SWEPT = ("cardinality", "base_width")
METRICS = ("test_accuracy", "test_accuracy_ci_low", "test_accuracy_ci_high", "test_tta_accuracy", "model_params",
           "model_macs", "train_seconds", "train_images_per_second", "epochs_run")
MACHINE_TAGS = ("machine.cpu", "machine.cores", "machine.cpu_bf16", "machine.cpu_amx", "machine.precision",
                "machine.gpu")
"""The tags that name what trained a run: its time is comparable only with runs of the same machine."""
COMPLEXITY_TOLERANCE = 0.10
"""A cardinality setting whose parameter count is further than this from the baseline's is not at fixed complexity."""


@dataclass(frozen=True)
class Runs:
    """The comparable finished runs (plain dicts, see :func:`collect`), or why there are none.

    ``recipe`` is the workspace recipe they were selected for: a later :func:`collect` keeps recorded runs
    only while the recipe is the same, since only then are they still comparable.
    """

    runs: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    recipe: dict[str, str] | None = None


def recipe_params(params: Params) -> dict[str, str]:
    """The ``data.*`` and ``train.*`` params a comparable run must share, as training logs them."""
    return {k: v for k, v in params.run_params(FAMILIES[0]).items()
            if k.startswith(("data.", "train.")) and k not in IGNORED}


def _comparable(run_params: Mapping[str, str], reference: Mapping[str, str]) -> bool:
    """Every reference setting the run logged has the reference's value (runs from before a key existed match)."""
    return all(run_params[k] == v for k, v in reference.items() if k in run_params)


def _entry(run: Any, reference: Mapping[str, str]) -> dict[str, Any] | None:
    """A finished MLflow run as a runs.json entry, or None when it is not a comparable tested model."""
    p, m = run.data.params, run.data.metrics
    if p.get("family") not in FAMILIES or "test_accuracy" not in m or SEED not in p or not _comparable(p, reference):
        return None
    return {
        "run_id": run.info.run_id, "family": p["family"], "seed": int(p[SEED]),
        "epochs": int(p.get(EPOCHS, 0)), "start_time": run.info.start_time,
        "machine": machine_label(run.data.tags), "in_store": True,
        "model": {k.removeprefix("model."): v for k, v in sorted(p.items()) if k.startswith("model.")},
        **{name: m.get(name) for name in METRICS},
    }


def collect(uri: str, params: Params, recorded: Runs | None = None) -> Runs:
    """Every finished run in ``uri`` with a test accuracy and this workspace's data and recipe, sorted, plus the
    runs of ``recorded`` (the previous ``runs.json``) that this store has never held, flagged ``in_store: false``.

    The committed ``runs.json`` is the studies' record: a fresh clone or another machine starts with an empty
    store, and its first ``dvc repro`` must add to that record, not erase it. A run the store holds but that
    failed or was deleted is dropped; recorded runs are dropped too once the workspace's recipe changed.
    """
    from convbench.tracking.queries import store_runs

    store = store_runs(uri)
    reference = recipe_params(params)
    runs = [entry for run in store.finished if (entry := _entry(run, reference)) is not None]
    if recorded is not None and recorded.recipe == reference:
        runs += ([dict(r) for r in recorded.runs] if store.error  # unreadable: the record stands as it was
                 else [{**r, "in_store": False} for r in recorded.runs if r["run_id"] not in store.known])
    runs.sort(key=lambda r: (FAMILIES.index(r["family"]), json.dumps(r["model"]), r["seed"], r["run_id"]))
    return Runs(runs, store.error, reference)


def recorded_only(runs: Runs) -> list[dict[str, Any]]:
    """The runs known only from the committed record, not from this MLflow store."""
    return [r for r in runs.runs if r.get("in_store") is False]


def machine_label(tags: Mapping[str, str]) -> str:
    """One line naming what trained a run, from its ``machine.*`` tags (training/device.py writes them).

    The CPU's bf16 support decides the precision and so about 2x in speed: it is part of the name.
    """
    if "machine.cpu" not in tags:
        return "unknown machine"
    support = ("AMX + AVX-512 bf16" if tags.get("machine.cpu_amx") == "true"
               else "AVX-512 bf16" if tags.get("machine.cpu_bf16") == "true" else "no bf16")
    gpu = f"{tags['machine.gpu']}; " if tags.get("machine.gpu") else ""
    return (f"{gpu}{tags['machine.cpu']}, {tags.get('machine.cores', '?')} cores ({support}), "
            f"{tags.get('machine.precision', '?')}")


def encode_runs(runs: Runs) -> bytes:
    """The bytes of ``reports/runs.json`` (stable: same runs, same bytes, so DVC re-runs the report only then)."""
    return (json.dumps({"error": runs.error, "recipe": runs.recipe, "runs": runs.runs}, indent=1, sort_keys=True)
            + "\n").encode()


def load_runs(path: Path) -> Runs:
    if not path.is_file():
        return Runs([], f"{path} is missing (the `runs` stage writes it)")
    data = json.loads(path.read_text())
    return Runs(data["runs"], data["error"], data.get("recipe"))


def _model_matches(run: Mapping[str, Any], config: Mapping[str, str], skip: Sequence[str] = ()) -> bool:
    return all(run["model"].get(k, v) == v for k, v in config.items() if k not in skip)


def _config_strings(params: Params, family: str) -> dict[str, str]:
    return {k: str(v) for k, v in to_dict(params.models[family]).items()}


def _newest_per_seed(runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    latest: dict[int, Mapping[str, Any]] = {}
    for run in runs:
        if run["seed"] not in latest or run["start_time"] > latest[run["seed"]]["start_time"]:
            latest[run["seed"]] = run
    return [dict(latest[s]) for s in sorted(latest)]


def _at_budget(runs: Runs, params: Params) -> list[dict[str, Any]]:
    """The runs trained for as many epochs as this workspace (the seed and cardinality studies' runs)."""
    return [r for r in runs.runs if r.get("epochs", params.train.epochs) == params.train.epochs]


def seed_runs(runs: Runs, params: Params, family: str) -> list[dict[str, Any]]:
    """``family``'s runs of exactly this workspace's model and budget, one per seed (the newest), by seed."""
    config = _config_strings(params, family)
    return _newest_per_seed([r for r in _at_budget(runs, params) if r["family"] == family
                             and _model_matches(r, config)])


@dataclass(frozen=True)
class SeedStats:
    """Test accuracy over seeds: mean, sample standard deviation, t-based 95 % interval of the mean, range."""

    n: int
    mean: float
    sd: float | None
    ci: tuple[float, float] | None
    low: float
    high: float


def seed_stats(values: Sequence[float]) -> SeedStats:
    a = np.asarray(values, dtype=float)
    if len(a) < 2:
        return SeedStats(len(a), float(a.mean()), None, None, float(a.min()), float(a.max()))
    sd = float(a.std(ddof=1))
    half = float(scipy_stats.t.ppf(0.975, len(a) - 1)) * sd / math.sqrt(len(a))
    return SeedStats(len(a), float(a.mean()), sd, (float(a.mean()) - half, float(a.mean()) + half),
                     float(a.min()), float(a.max()))


@dataclass(frozen=True)
class SeedPair:
    """Two families over the seeds both have: how often A beat B, and a paired t-test of their accuracies."""

    seeds: int
    a_ahead: int
    b_ahead: int
    mean_difference: float
    p_value: float | None


def seed_pair(a: Sequence[Mapping[str, Any]], b: Sequence[Mapping[str, Any]], key: str = "test_accuracy") -> SeedPair:
    """Pair ``a`` and ``b`` (from :func:`seed_runs`) by seed on ``key``; the test needs at least two shared seeds."""
    by_seed = {r["seed"]: r.get(key) for r in b}
    pairs = [(r[key], by_seed[r["seed"]]) for r in a if by_seed.get(r["seed"]) is not None and r.get(key) is not None]
    x, y = (np.asarray(v, dtype=float) for v in zip(*pairs)) if pairs else (np.empty(0), np.empty(0))
    p = None
    if len(pairs) >= 2:
        p = 1.0 if np.allclose(x, y) else float(scipy_stats.ttest_rel(x, y).pvalue)
    return SeedPair(len(pairs), int((x > y).sum()), int((y > x).sum()),
                    float((x - y).mean()) if pairs else 0.0, p)


class SeedVerdict(enum.Enum):
    """What the seeds say about a pair of families."""

    ARCHITECTURE = "architecture"
    """One order in every shared seed and the paired test rejects equality."""
    CONSISTENT = "consistent"
    """One order in every seed, but too few seeds for the test to reject."""
    NOISE = "noise"
    """The order changed between seeds."""


def seed_verdict(pair: SeedPair, alpha: float = 0.05) -> SeedVerdict | None:
    """The pair's :class:`SeedVerdict`; None with fewer than two shared seeds (nothing to tell)."""
    if pair.seeds < 2 or pair.p_value is None:
        return None
    if pair.seeds not in (pair.a_ahead, pair.b_ahead):
        return SeedVerdict.NOISE
    return SeedVerdict.ARCHITECTURE if pair.p_value < alpha else SeedVerdict.CONSISTENT


@dataclass(frozen=True)
class CardinalityGroup:
    """One (cardinality, base width) setting of the workspace's grouped family, over its seeds."""

    cardinality: int
    base_width: int
    params: float | None
    macs: float | None
    accuracy: SeedStats
    runs: list[dict[str, Any]]


def cardinality_groups(runs: Runs, params: Params) -> list[CardinalityGroup]:
    """Runs of the grouped family that differ from the workspace's only in cardinality and base width (and seed)."""
    config = _config_strings(params, GROUPED)
    settings: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for run in _at_budget(runs, params):
        if run["family"] == GROUPED and _model_matches(run, config, skip=(*SWEPT, "complexity_of")):
            key = (int(run["model"]["cardinality"]), int(run["model"]["base_width"]))
            settings.setdefault(key, []).append(run)
    groups = []
    for (cardinality, base_width), members in sorted(settings.items()):
        chosen = _newest_per_seed(members)
        groups.append(CardinalityGroup(cardinality, base_width, chosen[0].get("model_params"),
                                       chosen[0].get("model_macs"),
                                       seed_stats([r["test_accuracy"] for r in chosen]), chosen))
    return groups


@dataclass(frozen=True)
class Trend:
    """Least-squares change of test accuracy per doubling of cardinality, with its 95 % interval."""

    slope: float
    ci: tuple[float, float] | None
    points: int


def cardinality_trend(groups: Sequence[CardinalityGroup]) -> Trend | None:
    """Accuracy against log2(cardinality) over every run (each seed a point); None with fewer than 2 settings."""
    points = [(math.log2(g.cardinality), r["test_accuracy"]) for g in groups for r in g.runs]
    if len({x for x, _ in points}) < 2:
        return None
    fit = scipy_stats.linregress(*zip(*points))
    if len(points) < 3 or not math.isfinite(float(fit.stderr)) or fit.stderr == 0:
        return Trend(float(fit.slope), None, len(points))  # too few points, or no spread to test against
    half = float(scipy_stats.t.ppf(0.975, len(points) - 2)) * float(fit.stderr)
    return Trend(float(fit.slope), (float(fit.slope) - half, float(fit.slope) + half), len(points))


@dataclass(frozen=True)
class BudgetPoint:
    """One family's runs at one training budget on one machine, over their seeds.

    ``seconds`` is the fastest seed's training time: every seed does the same work, and anything else running
    on the machine only ever adds time, so the minimum is the least disturbed reading of what the budget costs.
    """

    family: str
    epochs: int
    machine: str
    seconds: float
    compute: float | None
    test: SeedStats
    tta: SeedStats | None
    runs: list[dict[str, Any]]

    def accuracy(self, tta: bool) -> SeedStats:
        """The score the report ranks by: TTA where asked for and measured, else single view."""
        return self.tta if tta and self.tta is not None else self.test


def training_compute(run: Mapping[str, Any]) -> float | None:
    """Training MACs: 3 x forward MACs (forward, and backward at about twice the forward) x images seen."""
    macs, rate, seconds = run.get("model_macs"), run.get("train_images_per_second"), run.get("train_seconds")
    if not (macs and rate and seconds):
        return None
    return 3.0 * macs * rate * seconds


def budget_points(runs: Runs, params: Params) -> list[BudgetPoint]:
    """The workspace's models (each family's params.yaml section) at every budget and machine found, by family."""
    groups: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
    for family in FAMILIES:
        config = _config_strings(params, family)
        for run in runs.runs:
            if run["family"] == family and run.get("epochs") and run.get("train_seconds") \
                    and _model_matches(run, config):
                groups.setdefault((family, run["epochs"], run.get("machine", "unknown machine")), []).append(run)
    points = []
    for (family, epochs, machine), members in groups.items():
        chosen = _newest_per_seed(members)
        ttas = [r["test_tta_accuracy"] for r in chosen if r.get("test_tta_accuracy") is not None]
        computes = [c for c in map(training_compute, chosen) if c is not None]
        points.append(BudgetPoint(family, epochs, machine, float(min(r["train_seconds"] for r in chosen)),
                                  float(np.mean(computes)) if computes else None,
                                  seed_stats([r["test_accuracy"] for r in chosen]),
                                  seed_stats(ttas) if len(ttas) == len(chosen) else None, chosen))
    return sorted(points, key=lambda p: (FAMILIES.index(p.family), p.machine, p.epochs))
