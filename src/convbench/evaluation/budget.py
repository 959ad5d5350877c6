"""How the answer moves with the training budget: facts drawn from :func:`~convbench.evaluation.studies.budget_points`.

A ranking after a few epochs need not hold after more (Zela et al. 2018; Ru et al. 2020), and cost is shown
as measured time and as compute because the two disagree (Dehghani et al., "The Efficiency Misnomer", 2022).
Everything here is computed on one machine's points at a time: seconds compare only within a machine.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from convbench.evaluation.studies import BudgetPoint, SeedPair, SeedVerdict, seed_pair, seed_verdict


@dataclass(frozen=True)
class BudgetRank:
    """The families at one budget, best first, with the leader's margin and, where seeds allow, a paired test."""

    epochs: int
    order: list[BudgetPoint]
    margin: float | None
    pair: SeedPair | None
    verdict: SeedVerdict | None


@dataclass(frozen=True)
class Crossing:
    """Between two budgets, ``passer`` went from behind ``passed`` to ahead of it."""

    low: int
    high: int
    passer: str
    passed: str


def _score(point: BudgetPoint, tta: bool) -> float:
    return point.accuracy(tta).mean


def ranks(points: Sequence[BudgetPoint], tta: bool) -> list[BudgetRank]:
    """Per budget (epochs) with at least two families: the order, the leader's margin over the second, its test."""
    out = []
    for epochs in sorted({p.epochs for p in points}):
        order = sorted((p for p in points if p.epochs == epochs), key=lambda p: -_score(p, tta))
        if len(order) < 2:
            continue
        pair = seed_pair(order[0].runs, order[1].runs, "test_tta_accuracy" if tta and order[0].tta else "test_accuracy")
        verdict = seed_verdict(pair)
        out.append(BudgetRank(epochs, order, _score(order[0], tta) - _score(order[1], tta),
                              pair if pair.seeds >= 2 else None, verdict))
    return out


def crossings(ranked: Sequence[BudgetRank]) -> list[Crossing]:
    """Every pair of families whose order flips between consecutive budgets."""
    found = []
    for before, after in zip(ranked, ranked[1:]):
        old = [p.family for p in before.order]
        new = [p.family for p in after.order]
        for i, a in enumerate(new):
            for b in new[i + 1:]:
                if a in old and b in old and old.index(a) > old.index(b):
                    found.append(Crossing(before.epochs, after.epochs, a, b))
    return found


def pareto_front(points: Sequence[BudgetPoint], tta: bool) -> list[BudgetPoint]:
    """The points no other point beats in both time and accuracy, fastest first (Portes et al. 2022)."""
    front, best = [], -math.inf
    for point in sorted(points, key=lambda p: (p.seconds, -_score(p, tta))):
        if _score(point, tta) > best:
            front.append(point)
            best = _score(point, tta)
    return front


def seconds_to(points: Sequence[BudgetPoint], target: float, tta: bool) -> float | None:
    """Training seconds at which one family's accuracy-against-time line first reaches ``target``.

    Linear between measured budgets in log time (the plot's axis); None if no budget reaches it. A target below
    the first budget's accuracy gives that budget's time (an upper bound: shorter budgets were not measured).
    """
    line = sorted(points, key=lambda p: p.seconds)
    for i, point in enumerate(line):
        if _score(point, tta) < target:
            continue
        if i == 0:
            return point.seconds
        prev = line[i - 1]
        share = (target - _score(prev, tta)) / (_score(point, tta) - _score(prev, tta))
        return math.exp(math.log(prev.seconds) + share * (math.log(point.seconds) - math.log(prev.seconds)))
    return None
