"""DVC's queue on a project set up as `./run.sh repro` sets it up, and the budget study it feeds: a queued budget
of a tiny project next to the workspace's, then the report's "Accuracy against training budget" section (its table, figure and verdict),
and the same rows in a fresh clone whose MLflow store is empty (the committed ``runs.json`` is the record)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from dvcproject import FAMILIES, TINY_PARAMS, copy_project, project_env, run, stages_run

pytestmark = pytest.mark.slow  # end to end: DVC, torchrun, servers or the benchmark
BUDGETS = (1, TINY_PARAMS["train"]["epochs"])  # the queued experiment's and the workspace's epochs


def wait_for_queue(base: Path, env: dict[str, str], timeout: float = 900) -> str:
    """Poll ``dvc queue status`` until nothing is queued or running; return the last status."""
    deadline = time.monotonic() + timeout
    while True:
        status = run(["dvc", "queue", "status"], base, env)
        if not any(word in status for word in ("Queued", "Running")) or time.monotonic() > deadline:
            return status
        time.sleep(3)


def test_queued_budgets_reach_the_budget_section(tmp_path: Path, reproduced_project: Path) -> None:
    base = tmp_path / "project"
    env = copy_project(reproduced_project, base)
    # What `./run.sh repro` does first: the archive becomes DVC-tracked, so the queue's temporary copy (which holds
    # only what git or DVC track) checks it out from the cache.
    tracked = run([sys.executable, "-m", "convbench.stages.fetch", "--track"], base,
                  {**env, "PYTHONPATH": str(base / "src")})
    assert "dvc add data/tiny.zip" in tracked, tracked
    run(["git", "commit", "-q", "-m", "track the archive"], base, env)
    assert run(["git", "ls-files", "data"], base, env).split() == ["data/tiny.zip.dvc"]
    run(["dvc", "exp", "run", "--queue", "-S", "train.epochs=1"], base, env)
    run(["dvc", "queue", "start", "-j", "1"], base, env)
    status = wait_for_queue(base, env)
    assert status.count("Success") == 1 and "Failed" not in status, status

    out = run(["dvc", "repro"], base, env)
    assert stages_run(out) == {"runs", "report"}, out  # the queued runs logged to this project's MLflow store
    runs = json.loads((base / "reports" / "runs.json").read_text())["runs"]
    assert {(r["family"], r["epochs"]) for r in runs} == {(f, e) for f in FAMILIES for e in BUDGETS}

    report = (base / "reports" / "comparison.md").read_text()
    section = report.split("## Accuracy against training budget")[1].split("\n## ")[0]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in section.splitlines()
            if line.startswith("| ") and line.split("|")[2].strip().isdigit()]
    assert sorted((r[0].split("-")[0], int(r[1])) for r in rows) == sorted(
        (name, e) for name in ("ResNet", "ResNeXt", "VGG") for e in BUDGETS)
    assert all(r[3].endswith(" T") and r[4].endswith("%") for r in rows)  # compute and accuracy, never nan
    assert (base / "reports" / "figures" / "budget.png").stat().st_size > 10_000
    assert "Ranked by TTA test accuracy at each budget:" in section
    assert ("The ranking is the same at every budget measured (1, 2 epochs)" in section
            or "**The ranking depends on the budget**" in section)
    assert "Pareto front in time" in section and "Seconds to reach" in section
    assert "nan" not in section.lower()
    assert f"At {TINY_PARAMS['train']['epochs']} epochs (this workspace's training budget" in report

    # A fresh clone elsewhere: git brings the committed runs.json, DVC's cache the outputs (as `dvc pull` would),
    # and the MLflow store starts empty. The studies must survive its first `dvc repro`.
    run(["git", "add", "-A"], base, env)
    run(["git", "commit", "-q", "-m", "the budget study"], base, env)
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(base), str(clone)], tmp_path, env)
    clone_env = project_env(clone)
    run(["dvc", "cache", "dir", "--local", str(base / ".dvc" / "cache")], clone, clone_env)
    run(["dvc", "checkout"], clone, clone_env)
    assert not (clone / "mlflow.db").exists()
    out = run(["dvc", "repro"], clone, clone_env)
    assert stages_run(out) == {"runs", "report"}, out
    kept = json.loads((clone / "reports" / "runs.json").read_text())["runs"]
    assert {(r["family"], r["epochs"]) for r in kept} == {(f, e) for f in FAMILIES for e in BUDGETS}
    assert all(r["in_store"] is False for r in kept)
    cloned = (clone / "reports" / "comparison.md").read_text()
    cloned_rows = [line for line in cloned.split("## Accuracy against training budget")[1].split("\n## ")[0]
                   .splitlines() if line.startswith("| ") and line.split("|")[2].strip().isdigit()]
    assert len(cloned_rows) == len(rows)
    assert "runs.json" in cloned.split("## Accuracy against training budget")[1].split("\n## ")[0]
