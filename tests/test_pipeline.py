"""The DVC pipeline end to end on a tiny synthetic project.

One module-scoped project (a real git repo with DVC, this checkout's dvc.yaml
and src/) is reproduced once; the tests then check what DVC re-runs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from imagezips import make_image_zip

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = ("vgg", "resnet", "resnext")

TINY_PARAMS = {
    "data": {"archive": "data/tiny.zip", "image_size": 32, "val_fraction": 0.2, "test_fraction": 0.2, "seed": 1},
    "train": {"epochs": 2, "batch_size": 16, "eval_batch_size": 64, "lr": 0.05, "warmup_epochs": 0.5,
              "precision": "fp32", "threads": 1},
    "vgg": {"depth": 11, "config": "A", "width": 0.125},
    "resnet": {"depth": 18, "width": 0.125},
    "resnext": {"depth": 29, "cardinality": 4, "base_width": 4, "width": 0.5},
}


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    """Run ``cmd``, fail the test with its output if it fails, return stdout+stderr."""
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{out[-4000:]}"
    return out


def stages_run(output: str) -> set[str]:
    """The stages DVC says it ran (``Running stage 'x':``)."""
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A committed tiny convbench project after one full ``dvc repro``."""
    base = tmp_path_factory.mktemp("project")
    shutil.copytree(ROOT / "src", base / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy(ROOT / "dvc.yaml", base / "dvc.yaml")
    shutil.copy(ROOT / ".gitignore", base / ".gitignore")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())  # DVC needs every key a stage lists
    for section, values in TINY_PARAMS.items():
        params[section].update(values)
    (base / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    make_image_zip(base / "data" / "tiny.zip", {"cnn_dataset": {"cats": 12, "dogs": 12, "cars": 12}}, size=32)

    env = dict(os.environ)
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}",
        MLFLOW_TRACKING_URI=f"sqlite:///{base / 'mlflow.db'}",
        DVC_NO_ANALYTICS="1",
        MLFLOW_DISABLE_TELEMETRY="true",
        TQDM_DISABLE="1",
        GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t",
    )
    run(["git", "init", "-q"], base, env)
    run(["dvc", "init", "-q"], base, env)
    run(["dvc", "config", "core.analytics", "false"], base, env)
    run([sys.executable, "-m", "convbench.tracking"], base, {**env, "PYTHONPATH": str(base / "src")})
    out = run(["dvc", "repro"], base, env)
    assert stages_run(out) == {
        "unzip", "cache", "split", "report",
        *(f"{stage}@{f}" for stage in ("train", "evaluate") for f in FAMILIES),
    }
    run(["git", "add", "-A"], base, env)
    run(["git", "commit", "-q", "-m", "tiny project"], base, env)
    return base, env


def test_repro_builds_every_output(project: tuple[Path, dict[str, str]]) -> None:
    base, _ = project
    assert (base / "data" / "cache.pt").is_file()
    split = json.loads((base / "data" / "split.json").read_text())
    assert sum(len(v) for v in split.values()) == 36
    for family in FAMILIES:
        assert (base / "models" / f"{family}.pt").is_file()
        metrics = json.loads((base / "reports" / "metrics" / f"{family}.json").read_text())
        assert 0.0 <= metrics["test"]["accuracy"] <= 1.0
    assert (base / "reports" / "comparison.md").is_file()
    assert (base / "reports" / "dataset.md").is_file()


def test_second_repro_runs_nothing(project: tuple[Path, dict[str, str]]) -> None:
    base, env = project
    out = run(["dvc", "repro"], base, env)
    assert stages_run(out) == set(), out


def test_metrics_are_listed_by_dvc(project: tuple[Path, dict[str, str]]) -> None:
    base, env = project
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], base, env))
    files = next(iter(shown.values()))["data"]
    for family in FAMILIES:
        assert "accuracy" in files[f"reports/metrics/{family}.json"]["data"]["test"]


def test_changing_resnext_cardinality_reruns_only_its_chain(project: tuple[Path, dict[str, str]]) -> None:
    base, env = project
    out = run(["dvc", "exp", "run", "-S", "resnext.cardinality=2"], base, env)
    assert stages_run(out) == {"train@resnext", "evaluate@resnext", "report"}, out
    lock = yaml.safe_load((base / "dvc.lock").read_text())
    assert lock["stages"]["train@resnext"]["params"]["params.yaml"]["resnext"]["cardinality"] == 2
    resnet = lock["stages"]["train@resnet"]["params"]["params.yaml"]["resnet"]
    assert resnet["width"] == TINY_PARAMS["resnet"]["width"]
