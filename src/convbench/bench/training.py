"""Training and inference throughput: our step against the notebook's, interleaved, plus the profiles.

Our side is :meth:`convbench.training.loop.Trainer.train_epoch` itself, run on a
split of exactly one batch, so one epoch is one step of the real loop (uint8
gather, device move, batched normalise + augment, autocast, channels_last, SGD);
the loop's per-epoch extras (a permutation of one batch, two ``.item()`` calls)
cost microseconds against steps of tens of milliseconds. The reference is
:class:`~convbench.bench.notebook.NotebookLoop` over the same images. Both models
are fresh instances built from the same seed.

Timing is interleaved: one round runs one step of every contestant (the order
alternates between rounds), after untimed warm-up steps, and each figure is the
median over rounds, so a burst of load from other processes hits every
contestant rather than one of them.
"""

from __future__ import annotations

import colorsys
import dataclasses
import itertools
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from convbench.bench.notebook import NotebookLoop
from convbench.data.format import Cache
from convbench.evaluation.evaluate import EvalSettings, measure_speed
from convbench.models import create_model, summarize
from convbench.params import TrainParams
from convbench.training.augment import Normalizer
from convbench.training.device import Runtime, timed
from convbench.training.loop import Trainer
from convbench.training.optim import build_optimizer

NUM_CLASSES = 10
ENDLESS_EPOCHS = 1_000_000
"""Epoch count given to the Trainer so its learning-rate schedule never runs out during a benchmark."""


@dataclass(frozen=True)
class Rounds:
    """How many interleaved rounds: up to ``warmup`` untimed steps per contestant (see :func:`warm_up`),
    then at least ``least`` and at most ``most`` timed rounds, stopping after ``least`` once
    ``budget_seconds`` of timed rounds have passed."""

    warmup: int
    least: int
    most: int
    budget_seconds: float


@dataclass(frozen=True)
class Workload:
    """One model at one image size and batch size."""

    family: str
    section: dict[str, Any]
    image_size: int
    batch_size: int


def synthetic_images(n: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` uint8 (3, size, size) images, one colour per class plus noise, and their labels.

    Learnable data keeps both training loops' losses finite, so neither side
    times NaN arithmetic.
    """
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % NUM_CLASSES
    colours = torch.tensor([colorsys.hsv_to_rgb(k / NUM_CLASSES, 0.8, 0.9) for k in range(NUM_CLASSES)]) * 255
    noise = torch.randn(n, 3, size, size, generator=generator) * 40
    images = (colours[labels].view(n, 3, 1, 1) + noise).clamp(0, 255).round().to(torch.uint8)
    return images, labels


def in_memory_cache(images: torch.Tensor, labels: torch.Tensor) -> Cache:
    """A :class:`Cache` of ``images`` with their exact mean and std, as the cache stage would store it."""
    scaled = images.float() / 255
    counts = torch.bincount(labels, minlength=NUM_CLASSES)
    return Cache(
        images=images,
        labels=labels,
        onehot=torch.nn.functional.one_hot(labels, NUM_CLASSES).to(torch.uint8),
        classes=[f"class{k}" for k in range(NUM_CLASSES)],
        mean=scaled.mean(dim=(0, 2, 3)),
        std=scaled.std(dim=(0, 2, 3), correction=0),
        counts=counts,
        origin=torch.zeros(len(labels), dtype=torch.uint8),
        files=[],
        skipped=[],
        ignored=[],
    )


def workload_cache(workload: Workload, seed: int) -> Cache:
    """One batch of synthetic images at the workload's size: a training split of exactly one step."""
    return in_memory_cache(*synthetic_images(workload.batch_size, workload.image_size, seed))


def build_model(workload: Workload, seed: int) -> nn.Module:
    """A fresh model of ``workload.family``; the same ``seed`` gives the same initial weights."""
    torch.manual_seed(seed)
    return create_model(workload.family, NUM_CLASSES, **workload.section)


def our_trainer(model: nn.Module, cache: Cache, params: TrainParams, runtime: Runtime) -> Trainer:
    """Our :class:`Trainer` over all of ``cache`` as its training split: ``len // batch`` steps per epoch.

    The Trainer insists on a validation split; it gets image 0, which the
    benchmark never evaluates.
    """
    split = {"train": torch.arange(len(cache.labels)), "val": torch.zeros(1, dtype=torch.long)}
    return Trainer(model, cache, split, dataclasses.replace(params, epochs=ENDLESS_EPOCHS), runtime, progress="bench")


def notebook_loop(model: nn.Module, cache: Cache, params: TrainParams, device: torch.device) -> NotebookLoop:
    """The notebook's loop over the same images, with our optimizer settings and loss smoothing."""
    model = model.to(device)
    return NotebookLoop(
        model,
        cache.images,
        cache.labels,
        cache.num_classes,
        params.batch_size,
        build_optimizer(model, params),
        nn.CrossEntropyLoss(label_smoothing=params.label_smoothing),
        device,
    )


def contestants(workload: Workload, params: TrainParams, runtime: Runtime) -> tuple[Trainer, NotebookLoop]:
    """Ours and the reference for ``workload``: same initial weights, same images, one step per epoch."""
    params = dataclasses.replace(params, batch_size=workload.batch_size)
    cache = workload_cache(workload, params.seed)
    ours = our_trainer(build_model(workload, params.seed), cache, params, runtime)
    reference = notebook_loop(build_model(workload, params.seed), cache, params, runtime.device)
    return ours, reference


def epoch_runner(trainer: Trainer) -> Callable[[], dict[str, float]]:
    """Call ``trainer.train_epoch`` with increasing epoch numbers (a new permutation and augmentation each time)."""
    epochs = itertools.count(1)
    return lambda: trainer.train_epoch(next(epochs))


WARM = 0.8
"""Warm-up ends when a step is no longer clearly (by more than 1 - WARM) faster than the one before."""


def warm_up(run: Callable[[], object], most: int, device: torch.device) -> int:
    """Run ``run`` until it stops getting faster (at least twice, at most ``most`` times); returns the count.

    First calls are slow (allocations, oneDNN building its kernels); in our runs
    bf16 steps sometimes took several calls to settle, fp32 steps one.
    """
    previous = math.inf
    for count in range(1, most + 1):
        seconds = timed(run, device)
        if seconds > WARM * previous:
            return count
        previous = seconds
    return most


def interleave(
    runners: dict[str, Callable[[], object]], rounds: Rounds, device: torch.device
) -> dict[str, list[float]]:
    """Seconds per timed round for every runner, run in turn (order alternating) round after round."""
    names = list(runners)
    for name in names:
        warm_up(runners[name], rounds.warmup, device)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    start = time.perf_counter()
    for done in range(rounds.most):
        if done >= rounds.least and time.perf_counter() - start >= rounds.budget_seconds:
            break
        for name in names if done % 2 == 0 else reversed(names):
            seconds[name].append(timed(runners[name], device))
    return seconds


def rate(seconds: list[float], images_per_round: int) -> dict[str, Any]:
    """Median images/s over rounds, the median step time and the rounds' spread ((max - min) / median)."""
    median = statistics.median(seconds)
    return {
        "images_per_second": images_per_round / median,
        "step_ms": 1000 * median,
        "rounds": len(seconds),
        "spread": (max(seconds) - min(seconds)) / median,
        "round_seconds": [round(s, 4) for s in seconds],
    }


def forward_flops(workload: Workload, seed: int) -> tuple[int, int]:
    """(FLOPs of one image's forward pass (2 x MACs), parameter count)."""
    summary = summarize(build_model(workload, seed), workload.image_size)
    return 2 * summary.macs, summary.params


def measure_training(
    workload: Workload, params: TrainParams, runtime: Runtime, rounds: Rounds
) -> dict[str, Any]:
    """Our step against the notebook's on ``workload``: images/s, speed-up, FLOPs per image."""
    ours, reference = contestants(workload, params, runtime)
    last: dict[str, dict[str, float]] = {}
    run_ours = epoch_runner(ours)

    def our_round() -> None:
        last["ours"] = run_ours()

    def reference_round() -> None:
        last["reference"] = reference.train_epoch()

    seconds = interleave({"ours": our_round, "reference": reference_round}, rounds, runtime.device)
    flops, n_params = forward_flops(workload, params.seed)
    train_flops = 3 * flops
    ours_rate = rate(seconds["ours"], workload.batch_size)
    ref_rate = rate(seconds["reference"], workload.batch_size)
    ours_rate |= {
        "precision": runtime.precision,
        "channels_last": runtime.channels_last,
        "last_loss": last["ours"]["train_loss"],
    }
    ref_rate |= {
        "precision": "fp32",
        "channels_last": False,
        "last_loss": last["reference"]["train_loss"],
    }
    return {
        "image_size": workload.image_size,
        "batch_size": workload.batch_size,
        "params": n_params,
        "forward_flops_per_image": flops,
        "train_flops_per_image": train_flops,
        "ours": ours_rate,
        "reference": ref_rate,
        "speedup": ours_rate["images_per_second"] / ref_rate["images_per_second"],
    }


def variant_label(precision: str, channels_last: bool, batch_size: int, compiled: bool = False) -> str:
    """A row name such as ``bf16 channels_last b128`` (``+ compile`` when compiled)."""
    layout = "channels_last" if channels_last else "NCHW"
    return f"{precision} {layout} b{batch_size}" + (" + compile" if compiled else "")


def variant_trainer(
    workload: Workload, params: TrainParams, runtime: Runtime, precision: str, channels_last: bool, *, compiled: bool
) -> Trainer:
    """Our Trainer for ``workload`` with precision and memory format forced (and the model compiled if asked)."""
    params = dataclasses.replace(params, batch_size=workload.batch_size)
    cache = workload_cache(workload, params.seed)
    model = build_model(workload, params.seed)
    if compiled:
        model = torch.compile(model)
    forced = dataclasses.replace(runtime, precision=precision, channels_last=channels_last)
    return our_trainer(model, cache, params, forced)


def measure_variants(
    family: str,
    section: dict[str, Any],
    image_size: int,
    batch_sizes: tuple[int, ...],
    precisions: tuple[str, ...],
    default_batch: int,
    params: TrainParams,
    runtime: Runtime,
    rounds: Rounds,
) -> list[dict[str, Any]]:
    """Our step under every precision x memory format x batch size; one row each.

    Each variant is interleaved with one control, the default configuration
    (our runtime's precision and memory format at ``default_batch``), and ranked
    by its speed relative to that control: a ratio measured side by side is
    robust to the machine getting busier between variants. Only two models are
    in play at a time, as in the training comparison (a first version that
    interleaved all twelve measured every variant slower than the same
    configuration measured there).
    """
    flops = 3 * forward_flops(Workload(family, section, image_size, default_batch), params.seed)[0]
    control = epoch_runner(variant_trainer(Workload(family, section, image_size, default_batch), params, runtime,
                                           runtime.precision, runtime.channels_last, compiled=False))
    rows = []
    for precision, channels_last, batch_size in [(p, cl, b) for p in precisions for cl in (True, False)
                                                 for b in batch_sizes]:
        variant = epoch_runner(variant_trainer(Workload(family, section, image_size, batch_size), params, runtime,
                                               precision, channels_last, compiled=False))
        seconds = interleave({"variant": variant, "default": control}, rounds, runtime.device)
        row = rate(seconds["variant"], batch_size)
        default = rate(seconds["default"], default_batch)
        rows.append({
            "variant": variant_label(precision, channels_last, batch_size),
            "precision": precision,
            "channels_last": channels_last,
            "batch_size": batch_size,
            "compiled": False,
            **row,
            "default_images_per_second": default["images_per_second"],
            "relative_to_default": row["images_per_second"] / default["images_per_second"],
            "train_flops_per_image": flops,
        })
    return rows


def compiled_against_eager(
    workload: Workload, params: TrainParams, runtime: Runtime, precision: str, channels_last: bool, rounds: Rounds
) -> dict[str, Any]:
    """``torch.compile`` of our model against the same step in eager mode, interleaved.

    The first compiled step's wall time, less a steady compiled step, is the
    compile time; the untimed warm-up then starts from a compiled model.
    """
    compiled = variant_trainer(workload, params, runtime, precision, channels_last, compiled=True)
    eager = variant_trainer(workload, params, runtime, precision, channels_last, compiled=False)
    run_compiled, run_eager = epoch_runner(compiled), epoch_runner(eager)
    first = timed(run_compiled, runtime.device)
    seconds = interleave({"compiled": run_compiled, "eager": run_eager}, rounds, runtime.device)
    compiled_rate = rate(seconds["compiled"], workload.batch_size)
    eager_rate = rate(seconds["eager"], workload.batch_size)
    return {
        "variant": variant_label(precision, channels_last, workload.batch_size, compiled=True),
        "precision": precision,
        "channels_last": channels_last,
        "batch_size": workload.batch_size,
        "first_step_seconds": first,
        "compile_seconds": max(first - compiled_rate["step_ms"] / 1000, 0.0),
        "compiled": compiled_rate,
        "eager": eager_rate,
        "speedup": compiled_rate["images_per_second"] / eager_rate["images_per_second"],
    }


def measure_inference(
    workload: Workload,
    params: TrainParams,
    runtime: Runtime,
    batch_size: int,
    settings: EvalSettings,
) -> dict[str, Any]:
    """Evaluation throughput as the evaluate stage measures it (eval mode, inference_mode, our runtime)."""
    cache = in_memory_cache(*synthetic_images(batch_size, workload.image_size, params.seed))
    model = build_model(workload, params.seed).to(runtime.device).eval()
    normalizer = Normalizer(cache.mean, cache.std, runtime.device)
    speed = measure_speed(model, runtime, normalizer, cache.images, settings)
    flops = forward_flops(workload, params.seed)[0]
    return speed | {"image_size": workload.image_size, "forward_flops_per_image": flops}


# -- where the time goes ---------------------------------------------------------------------------

ELEMENTWISE = frozenset({
    "add", "mul", "sub", "div", "relu", "threshold", "threshold_backward", "copy", "to", "_to_copy", "clone",
    "fill", "zero", "where", "masked_fill", "gather", "flip", "empty_like", "clamp", "neg", "native_dropout",
    "index", "cat", "contiguous",
})


def op_category(name: str) -> str:
    """Which kind of work a profiler event is: convolution, batch_norm, element-wise, matmul, ...

    Element-wise ops and BatchNorm touch every activation once or twice for a few
    FLOPs each, so they are bound by memory bandwidth; convolutions and matmuls
    are where the arithmetic is.
    """
    base = name.split("::")[-1].rstrip("_")
    if name.startswith("Optimizer") or base.startswith("_foreach"):
        return "optimizer"
    if "conv" in base:
        return "convolution"
    if "batch_norm" in base:
        return "batch_norm"
    if base in {"addmm", "mm", "bmm", "linear", "matmul"}:
        return "matmul"
    if "pool" in base:
        return "pooling"
    if "softmax" in base or "nll" in base or "cross_entropy" in base:
        return "loss"
    if base in ELEMENTWISE:
        return "element-wise"
    return "other"


def profile_summary(categories: dict[str, float], time_kind: str) -> str:
    """One sentence on where the step's time goes, from the category shares (percent)."""
    conv = categories.get("convolution", 0.0) + categories.get("matmul", 0.0)
    memory_bound = categories.get("batch_norm", 0.0) + categories.get("element-wise", 0.0)
    text = (
        f"Convolutions and matmuls take {conv:.0f} % of self {time_kind} time, "
        f"BatchNorm {categories.get('batch_norm', 0.0):.0f} % and element-wise ops "
        f"(ReLU and its backward, residual adds, copies) {categories.get('element-wise', 0.0):.0f} %"
    )
    if memory_bound >= conv:
        return text + ": more time goes to memory-bound ops (each touches every activation for a few FLOPs) " \
                      "than to the convolution arithmetic."
    return text + ": convolutions are the largest share, so the step is limited by how close the convolution " \
                  "kernels come to the matmul peak."


def profile_steps(trainer: Trainer, steps: int, warmup: int, device: torch.device, top: int) -> dict[str, Any]:
    """torch.profiler over ``steps`` of our step; the top ops by self time and a per-category breakdown.

    Self time is CPU time on a CPU and kernel time on a GPU (where CPU time is only launch overhead).
    """
    from torch.profiler import ProfilerActivity, profile

    run = epoch_runner(trainer)
    warm_up(run, warmup, device)
    on_gpu = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_gpu else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            run()

    def self_us(event: Any) -> float:
        return event.self_device_time_total if on_gpu else event.self_cpu_time_total

    events = [e for e in prof.key_averages() if self_us(e) > 0]
    total = sum(self_us(e) for e in events)
    categories: dict[str, float] = {}
    for e in events:
        key = op_category(e.key)
        categories[key] = categories.get(key, 0.0) + 100 * self_us(e) / total
    ranked = sorted(events, key=self_us, reverse=True)[:top]
    categories = dict(sorted(categories.items(), key=lambda kv: -kv[1]))
    return {
        "steps": steps,
        "time_kind": "GPU" if on_gpu else "CPU",
        "self_ms_per_step": total / 1000 / steps,
        "top_ops": [
            {
                "op": e.key,
                "category": op_category(e.key),
                "self_ms_per_step": self_us(e) / 1000 / steps,
                "percent": 100 * self_us(e) / total,
                "calls_per_step": e.count / steps,
            }
            for e in ranked
        ],
        "categories": categories,
        "summary": profile_summary(categories, "GPU" if on_gpu else "CPU"),
    }
