"""``convbench recipe course`` end to end: two ordinary DVC experiments on a tiny course-layout zip."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from dvcproject import ALL_STAGES, build_project, run, stages_run
from notebook import NOTEBOOK_RESNET18_PARAMS, NOTEBOOK_RESNEXT_PARAMS

pytestmark = pytest.mark.slow  # end to end: DVC, torchrun, servers or the benchmark

TINY = ["-S", "data.archive=data/tiny.zip", "-S", "data.image_size=32", "-S", "train.epochs=1",
        "-S", "train.precision=fp32", "-S", "train.threads=1", "-S", "train.eval_batch_size=64"]


def test_course_recipe_runs_both_experiments_on_a_course_zip(tmp_path: Path) -> None:
    env = build_project(tmp_path, repro=False)  # data/tiny.zip holds cnn_dataset/<class>/*.png, 3 classes
    env = {**env, "PYTHONPATH": str(tmp_path / "src")}
    out = run([sys.executable, "-m", "convbench.cli", "recipe", "course", *TINY], tmp_path, env)

    first, second = out.split("dvc exp run ")[1:]
    assert stages_run(first) == ALL_STAGES, first[-3000:]
    assert stages_run(second) == {"train@resnext", "evaluate@resnext", "runs", "report"}, second[-3000:]
    assert len(run(["dvc", "exp", "list", "--name-only"], tmp_path, env).split()) == 2

    params = yaml.safe_load((tmp_path / "params.yaml").read_text())  # the workspace holds the last run
    assert params["data"]["stratify"] is False and params["train"]["batch_size"] == 64
    assert (params["resnext"]["layout"], params["resnext"]["cardinality"], params["resnext"]["dropout"]) == (
        "course", 64, 0.1)
    trained = {f: json.loads((tmp_path / "reports" / "train" / f"{f}.json").read_text()) for f in ("resnet", "resnext")}
    assert trained["resnext"]["params"] == NOTEBOOK_RESNEXT_PARAMS[64]
    assert trained["resnet"]["params"] == NOTEBOOK_RESNET18_PARAMS
    split = json.loads((tmp_path / "data" / "split.json").read_text())
    assert [len(split[s]) for s in ("train", "val", "test")] == [25, 5, 6]  # 36 images, 70/15/15 as sklearn cuts
    assert (tmp_path / "reports" / "comparison.md").is_file()
