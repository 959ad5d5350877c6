"""Evaluation pieces without training: metrics, grouped-conv census, speed, provenance, stage errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from convbench.config import ConfigError
from convbench.data.format import Cache
from convbench.evaluation.evaluate import (EvalSettings, SplitScores, convolution_census, flat_metrics,
                                           measure_speed, score_split, split_metrics)
from convbench.evaluation.provenance import dataset_hash
from convbench.params import parse_params
from convbench.evaluation.tta import translate, tta_views
from convbench.training.augment import Normalizer
from convbench.training.device import Runtime


def test_split_metrics_per_class_and_confusion() -> None:
    labels = np.array([0, 0, 0, 1, 1, 2])
    preds = np.array([0, 0, 1, 1, 1, 0])
    scores = SplitScores(np.arange(6), labels, preds, np.full(6, 0.9), loss=0.5)
    summary, per_class, matrix = split_metrics(scores, ["a", "b", "c"])
    assert summary["accuracy"] == pytest.approx(4 / 6)
    assert matrix.tolist() == [[2, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert [c["recall"] for c in per_class] == pytest.approx([2 / 3, 1.0, 0.0])
    assert [c["precision"] for c in per_class] == pytest.approx([2 / 3, 2 / 3, 0.0])
    f1 = [2 / 3, 0.8, 0.0]
    assert summary["macro_f1"] == pytest.approx(np.mean(f1))
    assert [c["support"] for c in per_class] == [3, 2, 1]


def tiny_cache(n: int = 24, size: int = 8, classes: int = 3) -> Cache:
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(n) % classes
    return Cache(images=torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g), labels=labels,
                 onehot=nn.functional.one_hot(labels, classes).to(torch.uint8), classes=["a", "b", "c"][:classes],
                 mean=torch.full((3,), 0.5), std=torch.full((3,), 0.25), counts=torch.full((classes,), n // classes),
                 origin=torch.zeros(n, dtype=torch.uint8), files=[f"{i}.png" for i in range(n)], skipped=[],
                 ignored=[])


def test_translate_shifts_with_mirrored_borders_and_tta_views_count() -> None:
    x = torch.arange(2 * 3 * 5 * 5).reshape(2, 3, 5, 5)
    shifted = translate(x, 1, -2)
    assert torch.equal(shifted[..., :4, 2:], x[..., 1:, :3])  # output (i, j) = input (i + 1, j - 2) inside
    assert torch.equal(shifted[..., 4, :], shifted[..., 2, :])  # row 5 mirrors to row 3: no edge repeat
    assert torch.equal(shifted[..., :4, 0], x[..., 1:, 2])  # column -2 mirrors to column 2
    assert torch.equal(translate(x, 0, 0), x)
    for mode, count in (("none", 1), ("flip", 2), ("flip_translate", 6)):
        views = tta_views(x, mode)
        assert len(views) == count and torch.equal(views[0], x)
    assert torch.equal(tta_views(x, "flip")[1], x.flip(3))
    assert torch.equal(tta_views(x, "flip_translate")[3], translate(x, -1, -1).flip(3))


def test_tta_of_a_flip_invariant_model_equals_the_plain_scores() -> None:
    """Global average pooling then a linear layer cannot tell a mirrored image from the original."""
    cache = tiny_cache()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3)).eval()
    index = torch.arange(24)
    flip = score_split(model, cache, index, 10, torch.device("cpu"), "t", "flip")
    assert np.array_equal(flip["tta"].preds, flip["plain"].preds)
    assert flip["tta"].loss == pytest.approx(flip["plain"].loss, abs=1e-6)
    assert np.allclose(flip["tta"].probs, flip["plain"].probs, atol=1e-6)
    shifted = score_split(model, cache, index, 10, torch.device("cpu"), "t", "flip_translate")["tta"]
    assert shifted.loss != pytest.approx(flip["plain"].loss, abs=1e-6)  # shifted views see other border pixels
    assert set(score_split(model, cache, index, 10, torch.device("cpu"), "t")) == {"plain"}


def test_ranking_by_tta_needs_tta() -> None:
    assert parse_params({"evaluate": {"tta": "flip", "rank_by": "tta"}}).evaluate.tta == "flip"
    with pytest.raises(ConfigError, match="evaluate.rank_by: tta needs evaluate.tta"):
        parse_params({"evaluate": {"tta": "none"}})
    with pytest.raises(ConfigError, match="evaluate: unknown key"):
        parse_params({"evaluate": {"views": 6}})


def test_convolution_census_counts_grouped_weights_and_dense_equivalent() -> None:
    model = nn.Sequential(nn.Conv2d(3, 16, 3, bias=False), nn.Conv2d(16, 16, 3, groups=4, bias=False),
                          nn.Conv2d(16, 8, 1))
    census = convolution_census(model)
    assert census["conv_layers"] == 3 and census["grouped_layers"] == 1
    assert census["grouped_params"] == 16 * 4 * 9  # out * in/groups * k * k
    assert census["grouped_dense_equivalent"] == 16 * 16 * 9
    assert census["groups"] == [4] and census["channels_per_group"] == [4]
    assert census["conv_params"] == 3 * 16 * 9 + 16 * 4 * 9 + 16 * 8 + 8


def test_measure_speed_reports_positive_rates() -> None:
    runtime = Runtime(device=torch.device("cpu"), precision="fp32", channels_last=False,
                      threads=torch.get_num_threads())
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)).eval()
    batch = torch.randint(0, 256, (8, 3, 8, 8), dtype=torch.uint8)
    speed = measure_speed(model, runtime, Normalizer(torch.zeros(3), torch.ones(3), runtime.device), batch,
                          EvalSettings(warmup=1, throughput_batches=2, latency_runs=3))
    assert speed["images_per_second"] > 0 and speed["latency_ms"] > 0
    assert speed["batch_size"] == 8 and speed["latency_runs"] == 3 and speed["precision"] == "fp32"


def test_flat_metrics_names_do_not_collide_with_training_curves() -> None:
    metrics = {"params": 10, "macs": 20, "test": {"accuracy": 0.5, "accuracy_ci": [0.4, 0.6], "accuracy_ci_low": 0.4},
               "val": {"accuracy": 0.6, "loss": 1.0}, "inference": {"latency_ms": 2.0, "device": "cpu"}}
    flat = flat_metrics(metrics)
    assert flat == {"model_params": 10.0, "model_macs": 20.0, "test_accuracy": 0.5, "test_accuracy_ci_low": 0.4,
                    "eval_val_accuracy": 0.6, "eval_val_loss": 1.0, "inference_latency_ms": 2.0}


@pytest.mark.parametrize("text,expected", [
    ("stages:\n  unzip:\n    deps:\n    - path: data/x.zip\n      md5: abc\n", "abc (md5 of data/x.zip)"),
    ("stages:\n  cache:\n    outs:\n    - path: data/cache.pt\n      md5: def\n", "def (md5 of data/cache.pt)"),
    ("stages: [1, 2]\n", None),
    ("{{{ not yaml", None),
    ("stages:\n  unzip:\n    deps: 5\n", None),
])
def test_dataset_hash_parses_dvc_lock_defensively(tmp_path: Path, text: str, expected: str | None) -> None:
    (tmp_path / "dvc.lock").write_text(text)
    assert dataset_hash(tmp_path / "dvc.lock", "data/x.zip") == expected
    assert dataset_hash(tmp_path / "absent.lock", "data/x.zip") is None


def test_evaluate_stage_names_the_missing_stage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from convbench.stages.evaluate import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(json.dumps({"train": {"epochs": 2}}))
    assert main(["resnext"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("convbench evaluate: error:") and "dvc repro train@resnext" in err
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "resnext.pt").write_bytes(b"x")
    assert main(["resnext"]) == 2
    assert "reports/train/resnext.json is missing; run `dvc repro train@resnext`" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["alexnet"])
