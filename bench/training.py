"""Training throughput: convbench's Trainer against the course notebook's loop, interleaved, and matmul peaks.

Ours is the train stage's code: :func:`~convbench.training.build.build_untrained`,
the runtime :func:`~convbench.training.device.resolve_runtime` picks, and
:meth:`~convbench.training.loop.Trainer.train_epoch` on a split of one batch, so an
epoch is one step, with the Trainer built for exactly the steps measured. Each
round runs one step of each side (order alternating) after warm-up steps; figures
are medians over rounds, so a burst of load from other processes hits both sides.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from bench.notebook import NotebookLoop
from bench.synthetic import synthetic_cache
from convbench.data.format import Cache
from convbench.families import FamilyConfig
from convbench.models import summarize
from convbench.params import TrainParams
from convbench.training.build import build_untrained
from convbench.training.device import Runtime, timed
from convbench.training.loop import Trainer

NUM_CLASSES = 10
DTYPES: dict[str, torch.dtype] = {"bf16": torch.bfloat16, "fp32": torch.float32}


@dataclass(frozen=True)
class Rounds:
    """``warmup`` untimed steps per side, then ``least`` to ``most`` timed rounds (more under ``budget_seconds``)."""

    warmup: int
    least: int
    most: int
    budget_seconds: float

    @property
    def steps(self) -> int:
        """The most steps one side can take: the epochs its Trainer is built for."""
        return self.warmup + self.most


def one_batch_data(image_size: int, batch_size: int, seed: int) -> tuple[Cache, dict[str, torch.Tensor]]:
    """Synthetic images at ``image_size`` whose training split is one batch (classes in turn); the rest validate."""
    per_class = batch_size // NUM_CLASSES + 1
    cache = synthetic_cache(NUM_CLASSES, per_class, image_size, seed)
    order = torch.arange(NUM_CLASSES * per_class).view(NUM_CLASSES, per_class).T.flatten()
    return cache, {"train": order[:batch_size], "val": order[batch_size:]}


def contestants(
    config: FamilyConfig, cache: Cache, split: dict[str, torch.Tensor], params: TrainParams, runtime: Runtime,
    rounds: Rounds,
) -> tuple[Trainer, NotebookLoop]:
    """Ours and the notebook's loop on ``split["train"]``, from the same initial weights and optimizer settings."""
    params = dataclasses.replace(params, batch_size=len(split["train"]), epochs=rounds.steps)
    torch.manual_seed(params.seed)
    model = build_untrained(config, params.whiten, cache, split)
    notebook = NotebookLoop(copy.deepcopy(model), cache.images[split["train"]], cache.labels[split["train"]],
                            cache.num_classes, params, runtime.device)
    return Trainer(model, cache, split, params, runtime.checked_for(model), progress="bench"), notebook


def interleave(
    runners: dict[str, Callable[[], object]], rounds: Rounds, device: torch.device
) -> dict[str, list[float]]:
    """Seconds per timed round for every runner, run in turn (order alternating) round after round."""
    for run in runners.values():
        for _ in range(rounds.warmup):
            run()
    names = list(runners)
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
    return {"images_per_second": images_per_round / median, "step_ms": 1000 * median, "rounds": len(seconds),
            "spread": (max(seconds) - min(seconds)) / median}


def measure_training(
    config: FamilyConfig, image_size: int, batch_size: int, params: TrainParams, runtime: Runtime, rounds: Rounds
) -> dict[str, Any]:
    """Our step against the notebook's: images/s of each, their ratio, and the FLOPs per image."""
    cache, split = one_batch_data(image_size, batch_size, params.seed)
    ours, notebook = contestants(config, cache, split, params, runtime, rounds)
    epochs = itertools.count(1)
    last: dict[str, dict[str, float]] = {}

    def our_step() -> None:
        last["ours"] = ours.train_epoch(next(epochs))

    def notebook_step() -> None:
        last["notebook"] = notebook.train_epoch()

    seconds = interleave({"ours": our_step, "notebook": notebook_step}, rounds, runtime.device)
    summary = summarize(ours.model, image_size)
    result = {side: rate(seconds[side], batch_size) | {"last_loss": last[side]["train_loss"]} for side in seconds}
    result["ours"] |= {"precision": ours.runtime.precision, "channels_last": ours.runtime.channels_last}
    result["notebook"] |= {"precision": "fp32", "channels_last": False}
    return result | {
        "image_size": image_size, "batch_size": batch_size, "params": summary.params,
        "forward_flops_per_image": 2 * summary.macs,
        "speedup": result["ours"]["images_per_second"] / result["notebook"]["images_per_second"],
    }


def matmul_peak(device: torch.device, precision: str, size: int, repeats: int) -> dict[str, Any]:
    """Best FLOP/s of ``torch.mm`` on two ``size x size`` matrices in ``precision`` (after one untimed run)."""
    generator = torch.Generator().manual_seed(0)
    a, b = (torch.randn(size, size, generator=generator).to(device=device, dtype=DTYPES[precision]) for _ in range(2))
    torch.mm(a, b)
    seconds = min(timed(lambda: torch.mm(a, b), device) for _ in range(repeats))
    return {"flops": 2 * size**3 / seconds, "size": size}
