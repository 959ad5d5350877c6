"""The README and docs/ stay a product's documentation: short front page, every parameter documented, no stale words.

Fast and torch-free: reads README.md, docs/*.md and params.yaml only.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PARAMETERS = DOCS / "parameters.md"

MAX_README_LINES = 200
MAX_LINE = 120

FORBIDDEN = re.compile(
    r"\bsessions?\b|\bissue\s*#?\s*\d+|\bdesign card\b|\bseen here\b|\bthis machine\b|\bthis project's machine\b"
    r"|\bprevious machine\b|\bthe latest session\b",
    re.IGNORECASE,
)
"""Words about how the project was made, or machines named by when rather than by their specs."""

SECTION = re.compile(r"^##\s+`(\w+)`\s*$")
"""A section heading of docs/parameters.md: ``## `train` ``."""
ROW = re.compile(r"^\|\s*`(\w+)`\s*\|\s*([^|]*?)\s*\|")
"""A key row of a parameter table: ``| `key` | `default` | meaning |``."""


def pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out |= flatten(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def yaml_text(value: object) -> str:
    """A scalar as params.yaml writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def documented_parameters() -> dict[str, str]:
    """``section.key`` -> the default cell (backticks stripped) of every table row of docs/parameters.md."""
    found: dict[str, str] = {}
    section = None
    for line in PARAMETERS.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            match = SECTION.match(line)
            section = match.group(1) if match else None
            continue
        match = ROW.match(line)
        if section and match:
            key = f"{section}.{match.group(1)}"
            assert key not in found, f"docs/parameters.md documents {key} twice"
            found[key] = match.group(2).strip("`")
    return found


def test_readme_is_a_short_front_page() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines (at most {MAX_README_LINES})"
    long = [f"README.md:{n}: {len(line)} characters" for n, line in enumerate(lines, 1) if len(line) > MAX_LINE]
    assert not long, "lines over 120 characters:\n" + "\n".join(long)


def test_docs_pages_are_wrapped() -> None:
    long = [f"{page.relative_to(ROOT)}:{n}: {len(line)} characters"
            for page in sorted(DOCS.glob("*.md"))
            for n, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1) if len(line) > MAX_LINE]
    assert not long, "lines over 120 characters:\n" + "\n".join(long)


def test_every_parameter_is_documented_with_its_default() -> None:
    shipped = flatten(yaml.safe_load((ROOT / "params.yaml").read_text()))
    documented = documented_parameters()
    assert sorted(set(shipped) - set(documented)) == [], "params.yaml keys missing from docs/parameters.md"
    assert sorted(set(documented) - set(shipped)) == [], "docs/parameters.md names keys params.yaml lacks"
    wrong = {k: (documented[k], yaml_text(v)) for k, v in shipped.items() if documented[k] != yaml_text(v)}
    assert wrong == {}, "documented default differs from params.yaml (documented, shipped)"


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_words_about_how_the_project_was_made(page: Path) -> None:
    hits = [f"{page.relative_to(ROOT)}:{n}: {m.group(0)!r}"
            for n, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1)
            for m in FORBIDDEN.finditer(line)]
    assert not hits, "forbidden phrases:\n" + "\n".join(hits)


def test_readme_links_every_docs_page_and_only_existing_ones() -> None:
    linked = set(re.findall(r"\]\((docs/[^)#\s]+\.md)(?:#[^)]*)?\)", README.read_text(encoding="utf-8")))
    missing = sorted(p for p in linked if not (ROOT / p).is_file())
    assert missing == [], "README.md links docs pages that do not exist"
    unlinked = sorted(p.relative_to(ROOT).as_posix() for p in DOCS.glob("*.md"))
    unlinked = [p for p in unlinked if p not in linked]
    assert unlinked == [], "docs pages README.md does not link"


def slugs(page: Path) -> set[str]:
    """GitHub's anchors for the headings of ``page``: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.DOTALL)
    headings = re.findall(r"^#+\s+(.+?)\s*$", text, flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


def test_links_between_pages_resolve() -> None:
    broken = []
    for page in pages():
        for target, anchor in re.findall(r"\]\(([^)#\s:]*)(?:#([^)\s]*))?\)", page.read_text(encoding="utf-8")):
            path = (page.parent / target) if target else page
            if not path.exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
            elif anchor and path.suffix == ".md" and anchor not in slugs(path):
                broken.append(f"{page.relative_to(ROOT)} -> {target}#{anchor}")
    assert broken == [], "broken relative links:\n" + "\n".join(broken)
