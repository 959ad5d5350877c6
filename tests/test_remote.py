"""The docs' DVC remote recipe on a tiny project: the zip DVC-tracked, push, then pull into a fresh clone.

The dataset zip is a dependency the pipeline does not produce, so a fresh clone can only
reproduce nothing if the zip travels through the remote with the outputs.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest
import yaml

from dvcproject import FAMILIES, TINY_PARAMS, copy_project, run, stages_run

pytestmark = pytest.mark.slow  # end to end: DVC, torchrun, servers or the benchmark

ZIP = TINY_PARAMS["data"]["archive"]
RESTORED = (
    ZIP, "data/unzip.json", "data/cache.pt", "data/split.json",
    *(f"models/{f}.pt" for f in FAMILIES), *(f"reports/eval/{f}" for f in FAMILIES),
)


def digests(base: Path) -> dict[str, str]:
    """SHA-256 of every file of ``RESTORED`` (folders walked), keyed by path relative to ``base``."""
    files = [f for rel in RESTORED for f in ((base / rel).rglob("*") if (base / rel).is_dir() else [base / rel])]
    return {f.relative_to(base).as_posix(): hashlib.sha256(f.read_bytes()).hexdigest() for f in files if f.is_file()}


def objects(store: Path) -> set[str]:
    """MD5s of the objects in a DVC cache or local remote (stored as ``files/md5/xx/yyyy...``)."""
    return {p.parent.name + p.name for p in (store / "files" / "md5").glob("*/*")}


def test_push_then_pull_into_a_fresh_clone_restores_everything(tmp_path: Path, reproduced_project: Path) -> None:
    origin, remote, clone = tmp_path / "origin", tmp_path / "remote", tmp_path / "clone"
    env = copy_project(reproduced_project, origin)

    tracked = run([sys.executable, "-m", "convbench.stages.fetch", "--track"], origin,
                  {**env, "PYTHONPATH": str(origin / "src")})  # what `./run.sh repro` does first
    assert f"dvc add {ZIP}" in tracked, tracked
    # .gitignore keeps data/ out of git but lets the .dvc file in, and DVC writes no data/.gitignore.
    assert run(["git", "status", "--porcelain", "--untracked-files=all"], origin, env) == f"A  {ZIP}.dvc\n"
    run(["dvc", "remote", "add", "-d", "storage", str(remote)], origin, env)
    run(["git", "add", ".dvc/config"], origin, env)
    run(["git", "commit", "-q", "-m", "track the zip; default remote"], origin, env)
    run(["dvc", "push"], origin, env)
    # The zip too: DVC found data/tiny.zip.dvc (a `/data/*` ignore pattern hides it from push, see .gitignore).
    zip_md5 = yaml.safe_load((origin / f"{ZIP}.dvc").read_text())["outs"][0]["md5"]
    assert zip_md5 in objects(remote) and len(objects(remote)) > len(RESTORED)

    run(["git", "clone", "-q", str(origin), str(clone)], tmp_path, env)
    assert not [rel for rel in RESTORED if (clone / rel).exists()], "git must not carry DVC-tracked data"
    assert json.loads(run(["dvc", "status", "--json"], clone, env)), "before the pull, status should see missing data"
    run(["dvc", "pull"], clone, env)
    expected = digests(origin)
    assert any(path.startswith("reports/eval/") for path in expected)  # folders compared file by file
    assert digests(clone) == expected

    # What `./run.sh repro` does next: fetch finds the zip and leaves it alone, DVC has nothing to do.
    fetched = run([sys.executable, "-m", "convbench.stages.fetch", "--track"], clone,
                  {**env, "PYTHONPATH": str(clone / "src")})
    assert f"{ZIP} ready" in fetched and "dvc add" not in fetched, fetched
    assert json.loads(run(["dvc", "status", "--json"], clone, env)) == {"runs": ["always changed"]}
    out = run(["dvc", "repro"], clone, env)
    assert stages_run(out) == {"runs"}, out  # it reads the same MLflow store: same runs.json, no report re-run
    assert digests(clone) == expected
    assert run(["git", "status", "--porcelain", "--untracked-files=all"], clone, env) == ""
