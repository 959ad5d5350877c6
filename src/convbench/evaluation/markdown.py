"""Number formatting and the cells of the pipe tables that the report template draws."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

MISSING = "—"


def pct(value: float | None, digits: int = 2) -> str:
    """A 0..1 fraction as a percentage, ``0.9396`` -> ``93.96 %``."""
    return MISSING if value is None else f"{100 * value:.{digits}f} %"


def points(value: float) -> str:
    """A difference of two fractions in percentage points, signed."""
    return f"{100 * value:+.2f} points"


def ratio(value: float | None, baseline: float | None) -> str:
    """How many times ``baseline``, ``0.99x``; missing where either is unknown or zero."""
    return MISSING if not value or not baseline else f"{value / baseline:.2f}x"


def loss(value: float | None) -> str:
    return MISSING if value is None else f"{value:.4f}"


def count(value: float | None) -> str:
    """Parameter or MAC counts with an SI suffix (``1.23 M``, ``456.8 k``, ``2.10 G``)."""
    if value is None:
        return MISSING
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.2f} {suffix}"
    return f"{value:.0f}"


def seconds(value: float | None) -> str:
    if value is None:
        return MISSING
    if value < 120:
        return f"{value:.1f} s"
    return f"{value / 60:.1f} min"


def rate(value: float | None) -> str:
    return MISSING if value is None else f"{value:,.0f}"


def millis(value: float | None) -> str:
    return MISSING if value is None else f"{value:.2f}"


def p_value(value: float) -> str:
    """p-values keep three significant digits; tiny ones use scientific notation."""
    return f"{value:.2e}" if value < 1e-4 else f"{value:.4g}"


def yes(value: object) -> str:
    return "yes" if value else "no"


@dataclass(frozen=True)
class Table:
    """A pipe table's header and formatted cells (the template draws it: first column left, the rest right)."""

    headers: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class Column:
    """One numeric column of a comparison table and which direction is better."""

    header: str
    value: Callable[[object], float | None]
    fmt: Callable[[float | None], str]
    better: Literal["higher", "lower"] | None = None


def mark_best(values: Sequence[float | None], fmt: Callable[[float | None], str],
              better: Literal["higher", "lower"] | None) -> list[str]:
    """Format ``values``, bolding the best one (every one that displays the same as the best).

    Ties are decided on the displayed text, so the marks never contradict what the reader sees.
    """
    cells = [fmt(v) for v in values]
    present = [v for v in values if v is not None]
    if better is None or len(present) < 2:
        return cells
    best = fmt(max(present) if better == "higher" else min(present))
    return [f"**{c}**" if c == best else c for c in cells]


def compare_rows(items: Sequence[object], label: Callable[[object], str], columns: Sequence[Column]) -> list[list[str]]:
    """One table row per item, the best value of each ranked column in bold."""
    by_column = [mark_best([col.value(item) for item in items], col.fmt, col.better) for col in columns]
    return [[label(item), *(column[i] for column in by_column)] for i, item in enumerate(items)]
