"""Train one model family end to end: params and data in, DVC outputs and an MLflow run out.

:func:`train_family` is what ``python -m convbench.stages.train <family>``
runs. Order matters for safety: everything is validated before training; the
checkpoint is written after every epoch; the DVC outputs are written before
the (slower, fallible) MLflow model logging; the checkpoint is deleted last, so
a failure anywhere re-runs from the last finished epoch, not from scratch.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch

from convbench import figures
from convbench.config import ConfigError, to_dict
from convbench.data.format import Cache, load_cache, load_split
from convbench.files import write_json
from convbench.errors import ConvbenchError
from convbench.families import FAMILIES
from convbench.models import summarize
from convbench.params import Params
from convbench.paths import Layout
from convbench.tracking.runlog import RunLogger
from convbench.tracking.store import dataset_input
from convbench.training import distributed
from convbench.training.augment import Normalizer
from convbench.training.build import build_untrained
from convbench.training.checkpoint import fingerprint, load_checkpoint, save_checkpoint
from convbench.training.device import Runtime, machine_tags, resolve_runtime
from convbench.training.history import write_history_csv
from convbench.training.loop import FitResult, Trainer
from convbench.models.weights import save_trained

def check_family(family: str) -> None:
    """Fail with the list of valid families (the stage's only argument)."""
    if family not in FAMILIES:
        raise ConfigError(f"unknown model family {family!r}; choose one of {', '.join(FAMILIES)}")


def _load_data(params: Params, layout: Layout) -> tuple[Cache, dict[str, torch.Tensor]]:
    for path in (layout.cache, layout.split):
        if not path.is_file():
            raise ConvbenchError(f"{path} is missing; run `dvc repro split` first")
    cache = load_cache(layout.cache)
    if cache.image_size != params.data.image_size:
        raise ConvbenchError(
            f"{layout.cache} holds {cache.image_size}px images but data.image_size is "
            f"{params.data.image_size}; run `dvc repro cache`"
        )
    return cache, load_split(layout.split)


def _input_example(cache: Cache, split: dict[str, torch.Tensor]) -> Any:
    """Two normalised validation images as float32 numpy (two, so the logged model keeps a dynamic batch)."""
    index = split["val"][:2] if len(split["val"]) >= 2 else split["train"][:2]
    return Normalizer(cache.mean, cache.std, torch.device("cpu"))(cache.images[index]).numpy()


def _epoch_line(family: str, epochs: int, row: dict[str, float]) -> str:
    return (
        f"{family} epoch {row['epoch']}/{epochs}: train loss {row['train_loss']:.4f} acc {row['train_accuracy']:.4f}"
        f" | val loss {row['val_loss']:.4f} acc {row['val_accuracy']:.4f} | lr {row['lr']:.4g}"
        f" | {row['images_per_second']:.0f} img/s | {row['seconds']:.1f} s"
    )


def _summary(result: FitResult, params: int, macs: int, runtime: Runtime, run_id: str) -> dict[str, Any]:
    return {
        "best_epoch": result.best_epoch,
        "best_val_loss": result.best_val_loss,
        "best_val_accuracy": result.best_val_accuracy,
        "epochs_run": result.epochs_run,
        "stopped_early": result.stopped_early,
        "train_seconds": result.train_seconds,
        "train_images_per_second": result.train_images_per_second,
        "params": params,
        "macs": macs,
        "device": runtime.device.type,
        "precision": runtime.precision,
        "mlflow_run_id": run_id,
    }


def _log_setup(run_log: RunLogger, run_params: dict[str, str], params: int, macs: int) -> None:
    """A new run's params (``family``, ``data.*``, ``train.*``, ``model.*``, ``runtime.*``) and model size."""
    run_log.log_params(run_params)
    run_log.log_metrics({"model_params": params, "model_macs": macs})


def _log_outcome(run_log: RunLogger, family: str, layout: Layout, summary: dict[str, Any], result: FitResult,
                 input_example: Any) -> None:
    """Summary metrics, the history CSV and curves, then the model from the weights file just written."""
    run_log.log_metrics({k: float(summary[k]) for k in ("best_epoch", "best_val_loss", "best_val_accuracy",
                                                        "epochs_run", "train_seconds", "train_images_per_second")})
    run_log.log_artifact(layout.history(family))
    with tempfile.TemporaryDirectory() as tmp:
        curves = Path(tmp) / f"{family}_curves.png"
        figures.learning_curves({family: result.history}, {family: result.best_epoch}, curves)
        run_log.log_artifact(curves)
    run_log.log_model(layout.weights(family), family, input_example)


def train_family(
    family: str,
    params: Params,
    layout: Layout = Layout(),
) -> dict[str, Any] | None:
    """Train ``family`` with ``params`` on ``layout``'s cache and split; return the summary JSON dict.

    Writes ``models/<family>.pt``, ``reports/train/<family>.json`` and
    ``reports/train/<family>_history.csv``, logs one MLflow run (params,
    per-epoch metrics, curves, the best model registered with alias
    ``current``), and resumes from ``data/checkpoints/<family>.pt`` when it
    matches the current params and data. Under torchrun, every rank trains and
    rank 0 alone logs and writes (the other ranks return None).
    """
    check_family(family)
    dist = distributed.from_env()
    runtime = resolve_runtime(params.train, dist)
    distributed.init(runtime.device, dist)
    try:
        return _train(family, params, layout, runtime, dist)
    finally:
        distributed.shutdown()


def _train(
    family: str, params: Params, layout: Layout, runtime: Runtime, dist: distributed.Dist
) -> dict[str, Any] | None:
    config = to_dict(params.models[family])
    cache, split = _load_data(params, layout)
    torch.manual_seed(params.train.seed)
    model = build_untrained(params.models[family], params.train.whiten, cache, split)
    if dist.enabled:  # each rank its own dropout masks; the weights are rank 0's (DDP broadcasts them)
        torch.manual_seed(params.train.seed + 1 + dist.rank)
    size = summarize(model, cache.image_size)
    runtime = runtime.checked_for(model)
    trainer = Trainer(model, cache, split, params.train, runtime, progress=family, dist=dist)

    settings = {
        "family": family,
        "train": to_dict(params.train),
        "data": to_dict(params.data),
        "model": config,
        "runtime": {
            "device": runtime.device.type,
            "precision": runtime.precision,
            "channels_last": runtime.channels_last,
            "world_size": dist.world_size,
        },
    }
    machine = machine_tags(runtime)
    key = fingerprint(settings, layout.cache, layout.split)
    checkpoint_path = layout.checkpoint(family)
    state = dist.broadcast(load_checkpoint(checkpoint_path, key) if dist.is_main else None)
    if state is not None:
        trainer.load_state_dict(state)
    if not dist.is_main:
        trainer.fit(lambda row: trainer.state_dict())  # state_dict gathers every rank's generators for rank 0
        return None

    backup = (f"Every metric is also in the DVC outputs {layout.train_summary(family)} and {layout.history(family)} "
              "(one row per epoch).")
    run_log = RunLogger.start(family, {"family": family}, state["mlflow_run_id"] if state else None, backup=backup,
                              system_metrics=True)
    run_id = run_log.run_id
    with run_log:
        run_log.set_tags(machine)  # a resumed run names the machine that finished it
        if not run_log.continued:
            run_log.log_dataset(dataset_input(params.data.archive, cache, split), "training")
            runtime_params = {f"runtime.{k}": str(v) for k, v in settings["runtime"].items()}
            _log_setup(run_log, params.run_params(family) | runtime_params, size.params, size.macs)

        def on_epoch(row: dict[str, float]) -> None:
            run_log.log_metrics({k: float(v) for k, v in row.items() if k != "epoch"}, step=int(row["epoch"]))
            save_checkpoint(checkpoint_path, trainer.state_dict(), key, run_id)
            print(_epoch_line(family, params.train.epochs, row), flush=True)

        result = trainer.fit(on_epoch)
        summary = _summary(result, size.params, size.macs, runtime, run_id) | {"machine": machine}
        save_trained(
            layout.weights(family),
            trainer.model,
            family=family,
            config=config,
            cache=cache,
            best_epoch=result.best_epoch,
            mlflow_run_id=run_id,
            whiten=params.train.whiten,
        )
        write_json(layout.train_summary(family), summary)
        write_history_csv(layout.history(family), result.history)
        _log_outcome(run_log, family, layout, summary, result, _input_example(cache, split))
    checkpoint_path.unlink(missing_ok=True)
    return summary
