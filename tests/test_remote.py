"""The docs' DVC remote recipe on a tiny project: push, then pull into a fresh clone.

The dataset zip is the ``fetch`` stage's output, so it travels through the remote with the other
outputs, and a fresh clone reproduces nothing.
"""

from __future__ import annotations

import hashlib
import json
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

    run(["dvc", "remote", "add", "-d", "storage", str(remote)], origin, env)
    run(["git", "add", ".dvc/config"], origin, env)
    run(["git", "commit", "-q", "-m", "default remote"], origin, env)
    run(["dvc", "push"], origin, env)
    lock = yaml.safe_load((origin / "dvc.lock").read_text())
    zip_md5 = lock["stages"]["fetch"]["outs"][0]["md5"]
    assert zip_md5 in objects(remote) and len(objects(remote)) > len(RESTORED)

    run(["git", "clone", "-q", str(origin), str(clone)], tmp_path, env)
    assert not [rel for rel in RESTORED if (clone / rel).exists()], "git must not carry DVC-tracked data"
    assert json.loads(run(["dvc", "status", "--json"], clone, env)), "before the pull, status should see missing data"
    run(["dvc", "pull"], clone, env)
    expected = digests(origin)
    assert any(path.startswith("reports/eval/") for path in expected)  # folders compared file by file
    assert digests(clone) == expected

    # What `./run.sh repro` does next: DVC has nothing to do.
    assert json.loads(run(["dvc", "status", "--json"], clone, env)) == {"runs": ["always changed"]}
    out = run(["dvc", "repro"], clone, env)
    assert stages_run(out) == {"runs"}, out  # it reads the same MLflow store: same runs.json, no report re-run
    assert digests(clone) == expected
    assert run(["git", "status", "--porcelain", "--untracked-files=all"], clone, env) == ""
