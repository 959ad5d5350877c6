"""Reading the report's pipe tables back, for the report tests."""

from __future__ import annotations


def table(text: str, first_header: str) -> tuple[list[str], dict[str, list[str]]]:
    """The column headers (after the first) and the rows, keyed by first cell, of the first pipe table whose first
    header cell is ``first_header``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    columns = [c.strip() for c in lines[start].strip("|").split("|")][1:]
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return columns, rows


def summary_cells(text: str, bold: bool = False) -> dict[str, dict[str, str]]:
    """The Summary's two tables (``Model`` and ``Model details``) merged: model name -> column -> cell.

    Bold marks (the best value of a column) are stripped unless ``bold``.
    """
    merged: dict[str, dict[str, str]] = {}
    for first in ("Model", "Model details"):
        columns, rows = table(text, first)
        for name, cells in rows.items():
            merged.setdefault(name, {}).update(
                zip(columns, (c if bold else c.strip("*") for c in cells)))
    return merged
