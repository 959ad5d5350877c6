"""A tiny convbench DVC project for pipeline tests: a real git repo with this checkout's src/ and dvc.yaml.

    env = build_project(tmp_path)            # committed, after one full `dvc repro`
    out = run(["dvc", "repro"], tmp_path, env)
    assert stages_run(out) == set()

Each test module works on its own project, so one module's experiments never change another's. Modules that
need the fully reproduced default project take a copy of one built once per session (``copy_project`` of the
``reproduced_project`` fixture in conftest.py) instead of paying for the same ``dvc repro`` again.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from imagezips import make_image_zip

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = ("vgg", "resnet", "resnext")
ALL_STAGES = {"unzip", "cache", "split", "runs", "report", *(f"{s}@{f}" for s in ("train", "evaluate") for f in FAMILIES)}

TINY_PARAMS = {
    "data": {"archive": "data/tiny.zip", "image_size": 32, "val_fraction": 0.2, "test_fraction": 0.2, "seed": 1},
    "train": {"epochs": 2, "batch_size": 16, "eval_batch_size": 64, "lr": 0.05, "warmup_fraction": 0.25,
              "precision": "fp32", "threads": 1},
    "vgg": {"depth": 11, "config": "A", "width": 0.125},
    "resnet": {"depth": 18, "width": 0.125},
    "resnext": {"depth": 29, "cardinality": 4, "base_width": "auto", "complexity_of": "4x4d", "width": 0.5},
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


def project_env(base: Path) -> dict[str, str]:
    """The environment to run the project at ``base`` with: this venv first on PATH, its own MLflow store."""
    env = dict(os.environ)
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}",
        MLFLOW_TRACKING_URI=f"sqlite:///{base / 'mlflow.db'}",
        DVC_NO_ANALYTICS="1",
        MLFLOW_DISABLE_TELEMETRY="true",
        TQDM_DISABLE="1",
        GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t",
    )
    return env


def copy_project(template: Path, base: Path) -> dict[str, str]:
    """A private copy at ``base`` of the built project ``template`` (git, DVC cache, outputs, MLflow store).

    DVC's ``.dvc/tmp`` (locks, experiment state) is left behind; the copy's MLflow runs still name the
    template's artifact folder, which no test reads.
    """
    shutil.copytree(template, base, symlinks=True, dirs_exist_ok=True,
                    ignore=lambda folder, names: ["tmp"] if Path(folder).name == ".dvc" else [])
    return project_env(base)


def build_project(base: Path, *, repro: bool = True) -> dict[str, str]:
    """Make ``base`` a committed tiny convbench project (after one full ``dvc repro`` unless ``repro`` is false);
    return the env to run it with."""
    shutil.copytree(ROOT / "src", base / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copytree(ROOT / "conf", base / "conf")
    shutil.copy(ROOT / "dvc.yaml", base / "dvc.yaml")
    shutil.copy(ROOT / ".gitignore", base / ".gitignore")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())  # DVC needs every key a stage lists
    for section, values in TINY_PARAMS.items():
        params[section].update(values)
    (base / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    make_image_zip(base / "data" / "tiny.zip", {"cnn_dataset": {"cats": 12, "dogs": 12, "cars": 12}}, size=32)

    env = project_env(base)
    run(["git", "init", "-q"], base, env)
    run(["dvc", "init", "-q"], base, env)
    run(["dvc", "config", "core.analytics", "false"], base, env)
    run([sys.executable, "-m", "convbench.tracking"], base, {**env, "PYTHONPATH": str(base / "src")})
    if repro:
        out = run(["dvc", "repro"], base, env)
        assert stages_run(out) == ALL_STAGES, out
    run(["git", "add", "-A"], base, env)
    run(["git", "commit", "-q", "-m", "tiny project"], base, env)
    return env
