"""Score one family's restored best weights on the validation and test splits.

Accuracy, loss and the per-image predictions are computed in fp32 whatever the
training precision, so the reported numbers do not depend on the CPU's bf16
support; only the speed measurements use the training run's device, precision
and memory format (they describe how the model would be served).
"""

from __future__ import annotations

import platform
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support
from torch import nn
from tqdm import tqdm

from convbench import figures
from convbench.config import to_dict
from convbench.data.format import Cache, load_cache, load_split
from convbench.files import atomic_write_bytes, write_json
from convbench.errors import ConvbenchError
from convbench.evaluation.results import read_json
from convbench.evaluation.stats import bootstrap_ci
from convbench.models import model_config
from convbench.params import Params
from convbench.paths import Layout
from convbench.models.weights import load_trained
from convbench.evaluation.tta import tta_views
from convbench.training.augment import Normalizer
from convbench.training.device import Runtime, machine_tags, resolve_runtime, timed


@dataclass(frozen=True)
class EvalSettings:
    """Statistical and timing knobs (fixed in the stage; tests shrink them)."""

    resamples: int = 2000
    confidence: float = 0.95
    seed: int = 0
    warmup: int = 2
    throughput_batches: int = 5
    latency_runs: int = 50


@dataclass(frozen=True)
class SplitScores:
    """One split's fp32 outputs: labels, predictions, probability of the prediction, mean loss."""

    indices: np.ndarray
    labels: np.ndarray
    preds: np.ndarray
    probs: np.ndarray
    loss: float

    @property
    def accuracy(self) -> float:
        return float(np.mean(self.labels == self.preds))


def score_split(model: nn.Module, cache: Cache, indices: torch.Tensor, batch_size: int,
                device: torch.device, desc: str, tta: str = "none") -> dict[str, SplitScores]:
    """Run ``model`` over the cache images at ``indices`` in fp32 batches: ``{"plain": ...}``, plus ``"tta"``.

    The ``"tta"`` scores average the logits of :func:`tta_views` (``tta`` is its
    mode; the first view is the plain image, so the plain scores cost nothing
    extra). Loss is plain (unsmoothed) cross-entropy, which makes the losses
    comparable across families and with the course's table, whatever
    ``train.label_smoothing`` was.
    """
    normalize = Normalizer(cache.mean, cache.std, device)
    kinds = ("plain",) if tta == "none" else ("plain", "tta")
    preds: dict[str, list[torch.Tensor]] = {k: [] for k in kinds}
    probs: dict[str, list[torch.Tensor]] = {k: [] for k in kinds}
    losses = dict.fromkeys(kinds, 0.0)
    labels = cache.labels[indices]
    views = len(tta_views(cache.images[:1], tta))
    with torch.inference_mode(), tqdm(total=len(indices) * views, desc=desc, unit="img", disable=None) as bar:
        for start in range(0, len(indices), batch_size):
            chunk = indices[start:start + batch_size]
            outputs = [model(view).float() for view in tta_views(normalize(cache.images[chunk].to(device)), tta)]
            logits = {"plain": outputs[0], "tta": torch.stack(outputs).mean(0)}
            target = labels[start:start + batch_size].to(device)
            for kind in kinds:
                losses[kind] += float(F.cross_entropy(logits[kind], target, reduction="sum"))
                p, k = logits[kind].softmax(dim=1).max(dim=1)
                preds[kind].append(k.cpu())
                probs[kind].append(p.cpu())
            bar.update(len(chunk) * views)
    return {kind: SplitScores(
        indices=indices.numpy(),
        labels=labels.numpy(),
        preds=torch.cat(preds[kind]).numpy(),
        probs=torch.cat(probs[kind]).numpy(),
        loss=losses[kind] / len(indices),
    ) for kind in kinds}


def measure_speed(model: nn.Module, runtime: Runtime, normalize: Normalizer, batch: torch.Tensor,
                  settings: EvalSettings) -> dict[str, Any]:
    """Throughput on a large uint8 batch and median batch-1 latency, normalisation included.

    Uses the training run's precision and memory format: this is the speed the model
    is served at, not the fp32 path used for the reported accuracy.
    """
    model = model.to(memory_format=runtime.memory_format)
    batch = batch.to(runtime.device)

    def forward(x: torch.Tensor) -> Callable[[], None]:
        def step() -> None:
            with torch.inference_mode(), runtime.autocast():
                model(normalize(x).contiguous(memory_format=runtime.memory_format))
        return step

    for _ in range(settings.warmup):
        forward(batch)()
    elapsed = sum(timed(forward(batch), runtime.device) for _ in range(settings.throughput_batches))
    single = batch[:1]
    for _ in range(settings.warmup):
        forward(single)()
    latencies = [timed(forward(single), runtime.device) for _ in range(settings.latency_runs)]
    return {
        "images_per_second": settings.throughput_batches * len(batch) / elapsed,
        "latency_ms": 1000.0 * statistics.median(latencies),
        "batch_size": len(batch),
        "latency_runs": settings.latency_runs,
        "device": runtime.device.type,
        "precision": runtime.precision,
        "channels_last": runtime.channels_last,
        "threads": runtime.threads,
    }


def convolution_census(model: nn.Module) -> dict[str, Any]:
    """How many parameters sit in grouped convolutions, and what they would cost dense.

    A grouped convolution's weight is ``out x in/groups x k x k``; the dense layer of the
    same width needs ``groups`` times that. This is ResNeXt's saving, measured.
    """
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    grouped = [m for m in convs if m.groups > 1]
    grouped_params = sum(m.weight.numel() + (m.bias.numel() if m.bias is not None else 0) for m in grouped)
    dense = sum(m.weight.numel() * m.groups + (m.bias.numel() if m.bias is not None else 0) for m in grouped)
    return {
        "conv_layers": len(convs),
        "conv_params": sum(p.numel() for m in convs for p in m.parameters()),
        "grouped_layers": len(grouped),
        "grouped_params": grouped_params,
        "grouped_dense_equivalent": dense,
        "groups": sorted({m.groups for m in grouped}),
        "channels_per_group": sorted({m.in_channels // m.groups for m in grouped}),
    }


def split_metrics(scores: SplitScores, classes: list[str]) -> tuple[dict[str, Any], list[dict[str, Any]], np.ndarray]:
    """Accuracy, loss and macro-F1 of a split, its per-class precision/recall/F1 and confusion matrix."""
    labels = np.arange(len(classes))
    precision, recall, f1, support = precision_recall_fscore_support(
        scores.labels, scores.preds, labels=labels, zero_division=0)
    summary = {"accuracy": scores.accuracy, "loss": scores.loss, "macro_f1": float(np.mean(f1)),
               "images": int(len(scores.labels))}
    per_class = [{"class": name, "precision": float(p), "recall": float(r), "f1": float(f), "support": int(n)}
                 for name, p, r, f, n in zip(classes, precision, recall, f1, support)]
    return summary, per_class, confusion_matrix(scores.labels, scores.preds, labels=labels)


def accuracy_interval(scores: SplitScores, settings: EvalSettings) -> dict[str, Any]:
    """The percentile-bootstrap confidence interval of a split's accuracy, as metrics keys."""
    low, high = bootstrap_ci(scores.labels == scores.preds, settings.resamples, settings.confidence, settings.seed)
    return {"accuracy_ci": [low, high], "accuracy_ci_low": low, "accuracy_ci_high": high}


def write_eval_dir(out: Path, family: str, classes: list[str], test: dict[str, SplitScores], ranked_by: str,
                   per_class: list[dict[str, Any]], matrix: np.ndarray, model_info: dict[str, Any]) -> None:
    """reports/eval/<family>/: predictions.csv (test-split order), confusion.json/.png, per_class.json, model.json.

    predictions.csv has the single-view ``pred``/``prob`` and, with test-time
    augmentation, ``tta_pred``/``tta_prob``; the confusion matrix and per-class
    scores are those of the predictions the report ranks by (``ranked_by``).
    """
    out.mkdir(parents=True, exist_ok=True)
    plain = test["plain"]
    columns = {"index": plain.indices, "label": plain.labels, "pred": plain.preds, "prob": plain.probs}
    if "tta" in test:
        columns |= {"tta_pred": test["tta"].preds, "tta_prob": test["tta"].probs}
    frame = pd.DataFrame(columns)
    atomic_write_bytes(out / "predictions.csv", frame.to_csv(index=False, float_format="%.6f").encode())
    write_json(out / "confusion.json", {"classes": list(classes), "matrix": np.asarray(matrix).tolist(),
                                        "rows": "true class", "columns": "predicted class", "predictions": ranked_by})
    figures.confusion_figure({f"{family} (test)": matrix}, classes, out / "confusion.png")
    write_json(out / "per_class.json", {"classes": per_class, "predictions": ranked_by})
    write_json(out / "model.json", {"family": family, **model_info})


def _load_inputs(family: str, layout: Layout) -> tuple[dict[str, Any], Cache, dict[str, torch.Tensor]]:
    weights = layout.weights(family)
    if not weights.is_file():
        raise ConvbenchError(
            f"{weights} is missing; run `dvc repro train@{family}` (or `convbench train {family}`) first")
    train = read_json(layout.train_summary(family), f"train@{family}")
    if not layout.cache.is_file():
        raise ConvbenchError(f"{layout.cache} is missing; run `dvc repro cache` first")
    if not layout.split.is_file():
        raise ConvbenchError(f"{layout.split} is missing; run `dvc repro split` first")
    cache = load_cache(layout.cache)
    split = load_split(layout.split)
    for name, key in (("val", "data.val_fraction"), ("test", "data.test_fraction")):
        if len(split[name]) == 0:
            raise ConvbenchError(f"the {name} split is empty; set {key} above 0 and run `dvc repro`")
    return train, cache, split


def evaluate_family(family: str, params: Params, layout: Layout = Layout(),
                    settings: EvalSettings = EvalSettings()) -> dict[str, Any]:
    """Evaluate ``models/<family>.pt``; write reports/metrics/<family>.json and reports/eval/<family>/.

    Returns the metrics dict (also what is logged to MLflow).
    """
    train, cache, split = _load_inputs(family, layout)
    runtime = resolve_runtime(params.train)
    model, meta = load_trained(layout.weights(family), device=runtime.device)
    if list(meta["classes"]) != list(cache.classes) or int(meta["image_size"]) != cache.image_size:
        raise ConvbenchError(f"models/{family}.pt was trained on other data (classes or image size differ "
                             f"from {layout.cache}); run `dvc repro train@{family}`")
    batch_size = params.train.eval_batch_size
    tta, ranked_by = params.evaluate.tta, params.evaluate.rank_by
    val = score_split(model, cache, split["val"], batch_size, runtime.device, f"{family} val")["plain"]
    test = score_split(model, cache, split["test"], batch_size, runtime.device, f"{family} test", tta)
    val_summary, _, _ = split_metrics(val, cache.classes)
    scored = {kind: split_metrics(scores, cache.classes) for kind, scores in test.items()}
    summaries = {kind: scored[kind][0] | accuracy_interval(scores, settings) for kind, scores in test.items()}
    _, per_class, matrix = scored[ranked_by]
    speed = measure_speed(model, runtime, Normalizer(cache.mean, cache.std, runtime.device),
                          cache.images[split["test"][:batch_size]], settings)
    write_eval_dir(layout.eval_dir(family), family, cache.classes, test, ranked_by, per_class, matrix, {
        "config": to_dict(model_config(family, **meta["config"])),
        "classes": list(cache.classes),
        "image_size": cache.image_size,
        "convolutions": convolution_census(model),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "accuracy_precision": "fp32",
    })
    metrics = {
        "test": summaries["plain"],
        **({"test_tta": summaries["tta"]} if "tta" in summaries else {}),
        "ranked_by": ranked_by,
        "tta": {"mode": tta, "views": len(tta_views(cache.images[:1], tta))},
        "val": val_summary,
        "params": train.get("params"),
        "macs": train.get("macs"),
        "best_epoch": train.get("best_epoch", meta.get("best_epoch")),
        "epochs_run": train.get("epochs_run"),
        "train_seconds": train.get("train_seconds"),
        "train_images_per_second": train.get("train_images_per_second"),
        "inference": speed,
        "train_machine": train.get("machine", {}),
        "machine": machine_tags(runtime),
    }
    write_json(layout.metrics(family), metrics)
    write_json(layout.summary(family), summary_metrics(metrics))
    return metrics


def summary_metrics(metrics: dict[str, Any]) -> dict[str, float | None]:
    """The few numbers a reader compares across experiments: what ``dvc exp show`` lists.

    The detailed ``reports/metrics/<family>.json`` stays for the report.
    """
    tta = metrics.get("test_tta", {}).get("accuracy")
    return {"test_accuracy": metrics["test"]["accuracy"], "tta_accuracy": tta,
            "train_seconds": metrics["train_seconds"], "params": metrics["params"], "macs": metrics["macs"]}


def flat_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The numeric evaluation results as MLflow metric names (``test_accuracy``, ``inference_latency_ms``...).

    ``test_*`` is always the single-view score, the one every run in the seed and
    cardinality studies has; test-time augmentation logs as ``test_tta_*``.

    Validation scores get an ``eval_`` prefix so they never mix with the per-epoch
    ``val_*`` curves training logs to the same run.
    """
    flat = {"model_params": metrics["params"], "model_macs": metrics["macs"]}
    flat |= {f"test_{k}": v for k, v in metrics["test"].items()}
    flat |= {f"test_tta_{k}": v for k, v in metrics.get("test_tta", {}).items()}
    flat |= {f"eval_val_{k}": v for k, v in metrics["val"].items()}
    flat |= {f"inference_{k}": v for k, v in metrics["inference"].items()}
    return {k: float(v) for k, v in flat.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def print_summary(family: str, metrics: dict[str, Any], out: Path) -> None:
    """One human-readable line per split on stdout."""
    t, v, i = metrics["test"], metrics["val"], metrics["inference"]
    tta = metrics.get("test_tta")
    views = f", {metrics['tta']['views']}-view TTA {100 * tta['accuracy']:.2f} % (loss {tta['loss']:.4f})" if tta else ""
    print(f"{family}: test accuracy {100 * t['accuracy']:.2f} % (95 % CI {100 * t['accuracy_ci'][0]:.2f}–"
          f"{100 * t['accuracy_ci'][1]:.2f}), loss {t['loss']:.4f}, macro-F1 {t['macro_f1']:.4f}{views}; "
          f"val accuracy {100 * v['accuracy']:.2f} %, loss {v['loss']:.4f}; "
          f"{i['images_per_second']:,.0f} img/s, {i['latency_ms']:.2f} ms at batch 1 ({i['device']}, {i['precision']}) "
          f"-> {out}")


def log_evaluation(family: str, metrics: dict[str, Any], run_id: str | None, out: Path,
                   run_params: dict[str, str]) -> str | None:
    """Add the evaluation to the family's training run (or a new run if the store lacks it); return the run id.

    The training run can be missing, e.g. when DVC restored the training outputs
    from its run-cache or the store was deleted; a new run then gets the family's
    params (so the cardinality study can still find it) and a tag saying why.
    A server unreachable from the start gives a note and None (the evaluation
    files are the record); one lost mid-stage spools the calls like training.
    """
    from convbench.tracking.runlog import RunLogger

    run_log = RunLogger.start_or_note("evaluate", family, {"family": family}, run_id,
                                      backup=f"The evaluation is also in {out}.")
    if run_log is None:
        return None
    with run_log:
        if not run_log.continued:
            run_log.set_tags({"evaluation_only": f"training run {run_id or '(none)'} is not in this store"})
            run_log.log_params(run_params)
        run_log.set_tags({f"evaluate.{k}": v for k, v in metrics["machine"].items()})
        run_log.log_metrics(flat_metrics(metrics))
        run_log.log_artifacts(out, "eval")
    return run_log.run_id
