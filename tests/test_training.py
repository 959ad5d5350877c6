"""The training loop and stage: learning, early stopping, exact resumption, MLflow, bad params."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from convbench.config import ConfigError
from convbench.data.format import load_cache, load_split
from convbench.models import create_model
from convbench.params import TrainParams, parse_params
from convbench.paths import Layout
from convbench.training import loop
from convbench.training.augment import Normalizer, alternating_flips, cutout, flip_coins, random_crop, random_flip
from convbench.training.device import cpu_supports_bf16, resolve_runtime
from convbench.training.loop import Trainer, snapshot
from synthetic import killer_env, write_params, write_synthetic_project
from trainstage import TINY, stage

SRC = Path(__file__).resolve().parents[1] / "src"
def trainer(base: Path, **train: object) -> Trainer:
    """A Trainer of a tiny ResNet on the synthetic project in ``base``."""
    params = TrainParams(**{**TINY["train"], **train})
    layout = Layout(base)
    cache, split = load_cache(layout.cache), load_split(layout.split)
    torch.manual_seed(params.seed)
    model = create_model("resnet", cache.num_classes, **TINY["resnet"])
    return Trainer(model, cache, split, params, resolve_runtime(params))


@pytest.fixture
def project(tmp_path: Path) -> Path:
    write_synthetic_project(tmp_path, classes=3, per_class=40, size=16)
    return tmp_path


def test_two_epochs_reduce_the_loss(project: Path) -> None:
    t = trainer(project, epochs=2)
    before, _ = t.evaluate(t.val_index)
    result = t.fit()
    assert result.epochs_run == 2
    assert result.history["train_loss"][1] < result.history["train_loss"][0]
    assert result.best_val_loss < before


def test_early_stopping_restores_a_real_copy_of_the_best_weights(project: Path) -> None:
    t = trainer(project, epochs=6, patience=2)
    snapshots: list[dict[str, torch.Tensor]] = []
    losses = iter([1.0, 0.5, 0.9, 0.8, 0.7, 0.6])  # best at epoch 2, then two worse epochs: stop after 4
    real_evaluate = t.evaluate

    def scripted_evaluate(index: torch.Tensor) -> tuple[float, float]:
        real_evaluate(index)
        snapshots.append(snapshot(t.model))
        return next(losses), 0.5

    t.evaluate = scripted_evaluate  # type: ignore[method-assign]
    result = t.fit()
    assert (result.best_epoch, result.epochs_run, result.stopped_early) == (2, 4, True)
    final = t.model.state_dict()
    assert all(torch.equal(final[k], snapshots[1][k]) for k in final)
    assert not all(torch.equal(final[k], snapshots[-1][k]) for k in final if final[k].is_floating_point())


@pytest.mark.slow
@pytest.mark.parametrize("techniques", [{}, {"ema_decay": 0.9, "alternating_flip": True, "whiten": 3}],
                         ids=["plain", "ema-flip-whiten"])  # every technique with state to resume, in one run
def test_a_killed_training_resumes_bit_identical(tmp_path: Path, techniques: dict[str, object]) -> None:
    runs = {}
    for name in ("straight", "killed"):
        base = tmp_path / name
        write_synthetic_project(base, classes=3, per_class=40, size=16)
        write_params(base, {**TINY, "train": {**TINY["train"], **techniques}})
        if name == "killed":
            died = stage(base, "resnet", **killer_env(2))
            assert died.returncode == -9, died.stderr[-2000:]
            checkpoint = torch.load(Layout(base).checkpoint("resnet"), weights_only=True)
            assert checkpoint["epoch"] == 2
            assert not Layout(base).weights("resnet").exists()
        done = stage(base, "resnet")
        assert done.returncode == 0, done.stderr[-3000:]
        if name == "killed":
            assert "resuming from" in done.stderr and "after epoch 2" in done.stderr
        assert not Layout(base).checkpoint("resnet").exists()
        runs[name] = base
    a, b = (torch.load(Layout(runs[n]).weights("resnet"), weights_only=True) for n in ("straight", "killed"))
    assert a["state_dict"].keys() == b["state_dict"].keys()
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    history = [Layout(runs[n]).history("resnet").read_text().splitlines() for n in runs]
    strip_time = [[",".join(line.split(",")[:6]) for line in h] for h in history]  # seconds and img/s differ
    assert strip_time[0] == strip_time[1]
    summaries = [json.loads(Layout(runs[n]).train_summary("resnet").read_text()) for n in runs]
    for key in ("best_epoch", "best_val_loss", "best_val_accuracy", "epochs_run"):
        assert summaries[0][key] == summaries[1][key]
    assert summaries[1]["mlflow_run_id"] == checkpoint["mlflow_run_id"]  # the resumed training continued its run


def test_ema_weights_are_validated_kept_and_differ_from_the_trained_ones(project: Path) -> None:
    t = trainer(project, epochs=3, ema_decay=0.9)
    seen: list[tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]] = []
    result = t.fit(lambda row: seen.append((snapshot(t.model), snapshot(t.validated))))
    assert t.validated is t.ema.module
    for raw, ema in seen:
        assert raw.keys() == ema.keys()
        assert not all(torch.equal(raw[k], ema[k]) for k in raw if raw[k].is_floating_point())
    best = seen[result.best_epoch - 1][1]
    final = t.model.state_dict()
    assert all(torch.equal(final[k], best[k]) for k in final if final[k].is_floating_point())
    assert "ema" in t.state_dict() and trainer(project).ema is None


def test_alternating_flip_mirrors_every_image_on_alternate_epochs(project: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    coins = flip_coins(1000, seed=0)
    assert 400 < int(coins.sum()) < 600  # a random half in the first epoch
    index = torch.arange(1000)
    assert torch.equal(alternating_flips(coins, index, 1), coins)
    assert torch.equal(alternating_flips(coins, index, 2), ~coins)
    assert torch.equal(alternating_flips(coins, index, 3), coins)

    t = trainer(project, epochs=2, alternating_flip=True, batch_size=8)  # 72 training images: no batch dropped
    flipped: dict[int, dict[int, bool]] = {1: {}, 2: {}}
    real = loop.augment_batch
    epoch = iter([1] * t.steps_per_epoch + [2] * t.steps_per_epoch)

    def spy(x: torch.Tensor, *args: object, flip_mask: torch.Tensor | None = None, **kw: object) -> torch.Tensor:
        flipped[next(epoch)].update(zip(spy.index.tolist(), flip_mask.tolist()))
        return real(x, *args, flip_mask=flip_mask, **kw)

    real_batch = t._batch

    def batch(index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        spy.index = index
        return real_batch(index)

    monkeypatch.setattr(loop, "augment_batch", spy)
    t._batch = batch  # type: ignore[method-assign]
    t.train_epoch(1)
    t.train_epoch(2)
    both = flipped[1].keys() & flipped[2].keys()
    assert both == set(t.train_index.tolist())
    assert all(flipped[2][i] != flipped[1][i] for i in both)
    assert 0.3 < sum(flipped[1].values()) / len(flipped[1]) < 0.7


def test_mlflow_run_holds_params_metrics_and_a_loadable_model(project: Path) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    write_params(project, {**TINY, "train": {**TINY["train"], "epochs": 2}})
    done = stage(project, "resnet")
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(Layout(project).train_summary("resnet").read_text())
    uri = f"sqlite:///{project / 'mlflow.db'}"
    client = MlflowClient(uri)
    run = client.get_run(summary["mlflow_run_id"])
    assert run.data.params["train.lr"] == "0.05" and run.data.params["model.width"] == "0.125"
    assert run.data.tags["family"] == "resnet"
    assert int(run.data.metrics["model_params"]) == summary["params"]
    history = client.get_metric_history(run.info.run_id, "val_loss")
    assert sorted(m.step for m in history) == [1, 2]
    version = client.get_model_version_by_alias("convbench-resnet", "current")
    mlflow.set_tracking_uri(uri)
    model = mlflow.pytorch.load_model(f"models:/convbench-resnet@{version.aliases[0]}")
    assert tuple(model(torch.randn(3, 3, 16, 16)).shape) == (3, 3)


@pytest.mark.parametrize(
    "sections, message",
    [
        ({"resnext": {"cardinality": 64, "base_width": 1, "width": 0.25}}, "resnext.cardinality"),
        ({"train": {"epochs": 0}}, "train.epochs: must be at least 1"),
        ({"train": {"lr": "fast"}}, "train.lr: expected a number"),
        ({"resnet": {"depht": 18}}, "resnet: unknown key(s) depht"),
    ],
)
def test_bad_params_fail_before_training(project: Path, sections: dict, message: str) -> None:
    write_params(project, sections)
    done = stage(project, "resnet")
    assert done.returncode == 2
    assert message in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert not Layout(project).checkpoint("resnet").exists()


def test_unknown_family_is_one_clear_line(project: Path) -> None:
    write_params(project, {})
    done = stage(project, "alexnet")
    assert done.returncode == 2 and "unknown model family 'alexnet'" in done.stderr


@pytest.mark.skipif(not cpu_supports_bf16(), reason="this CPU has no bf16 support")
def test_bf16_channels_last_step_runs(project: Path) -> None:
    t = trainer(project, epochs=1, precision="auto", channels_last="auto")
    assert t.runtime.precision == "bf16" and t.runtime.channels_last
    row = t.train_epoch(1)
    assert torch.isfinite(torch.tensor(row["train_loss"]))


def test_augmentations_are_batched_and_seeded() -> None:
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    assert torch.equal(random_crop(x, 2, g()), random_crop(x, 2, g()))
    cropped = random_crop(x, 2, g())
    assert cropped.shape == x.shape and cropped.dtype == x.dtype
    flipped = random_flip(x, g())
    chosen = torch.rand(2, generator=g()) < 0.5
    for i in range(2):
        assert torch.equal(flipped[i], x[i].flip(2) if chosen[i] else x[i])
    holes = cutout(torch.ones(4, 3, 8, 8), 3, g())
    assert ((holes == 0).sum(dim=(1, 2, 3)) == 3 * 3 * 3).all()
    normalizer = Normalizer(torch.tensor([0.5, 0.5, 0.5]), torch.tensor([0.25, 0.25, 0.25]), torch.device("cpu"))
    out = normalizer(torch.full((1, 3, 2, 2), 255, dtype=torch.uint8))
    assert torch.allclose(out, torch.full_like(out, 2.0))


def test_params_validate_every_family_before_training() -> None:
    with pytest.raises(ConfigError, match="resnext.cardinality"):
        parse_params({"resnext": {"cardinality": 64, "base_width": 1, "width": 0.25}})


def test_a_bare_on_or_off_reads_as_the_word() -> None:
    """DVC writes params.yaml as YAML 1.2 (`on` unquoted); PyYAML reads that as a bool, which means the word."""
    assert parse_params(yaml.safe_load("train: {channels_last: on}")).train.channels_last == "on"
    assert parse_params(yaml.safe_load("train: {channels_last: off}")).train.channels_last == "off"
    with pytest.raises(ConfigError, match=r"train\.precision: True is not one of"):
        parse_params(yaml.safe_load("train: {precision: on}"))  # only where on/off are the choices
