"""Training throughput: convbench's Trainer against the course notebook's loop, interleaved, and matmul peaks.

Ours is the train stage's code: :func:`~convbench.training.build.build_untrained`, the runtime
:func:`~convbench.training.device.resolve_runtime` picks, and :meth:`~convbench.training.loop.Trainer.train_epoch` on
a split of one batch, so an epoch is one step, with the Trainer built for exactly the steps measured. Each round runs
one step of each side (order alternating) after warm-up steps; figures are medians over rounds, so a burst of load
from other processes hits both sides.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import statistics
import time
from typing import Any

import torch

from bench.notebook import NotebookLoop
from bench.synthetic import synthetic_cache
from convbench.data.format import Cache
from convbench.families import FamilyConfig, family_of
from convbench.models import summarize
from convbench.params import TrainParams
from convbench.training.build import build_untrained
from convbench.training.device import Runtime, timed
from convbench.training.loop import Trainer

NUM_CLASSES = 10
DTYPES: dict[str, torch.dtype] = {"bf16": torch.bfloat16, "fp32": torch.float32}


@dataclasses.dataclass(frozen=True)
class Rounds:
    """``warmup`` untimed steps per side, then ``least`` to ``most`` timed rounds (more under ``budget_seconds``)."""

    warmup: int
    least: int
    most: int
    budget_seconds: float


def one_batch_data(image_size: int, batch_size: int, seed: int) -> tuple[Cache, dict[str, torch.Tensor]]:
    """Synthetic images at ``image_size`` whose training split is one batch (classes in turn); the rest validate."""
    per_class = batch_size // NUM_CLASSES + 1
    cache = synthetic_cache(NUM_CLASSES, per_class, image_size, seed)
    order = torch.arange(NUM_CLASSES * per_class).view(NUM_CLASSES, per_class).T.flatten()
    return cache, {"train": order[:batch_size], "val": order[batch_size:]}


def contestants(config: FamilyConfig, cache: Cache, split: dict[str, torch.Tensor], params: TrainParams,
                runtime: Runtime, rounds: Rounds) -> tuple[Trainer, NotebookLoop]:
    """Ours and the notebook's loop on ``split["train"]``, from the same initial weights and optimizer settings."""
    params = dataclasses.replace(params, batch_size=len(split["train"]), epochs=rounds.warmup + rounds.most)
    torch.manual_seed(params.seed)
    model = build_untrained(config, params.whiten, cache, split)
    notebook = NotebookLoop(copy.deepcopy(model), cache.images[split["train"]], cache.labels[split["train"]],
                            cache.num_classes, params, runtime.device)
    return Trainer(model, cache, split, params, runtime.checked_for(model), progress="bench"), notebook


def measure_training(config: FamilyConfig, image_size: int, batch_size: int, params: TrainParams, runtime: Runtime,
                     rounds: Rounds) -> dict[str, Any]:
    """Our step against the notebook's: images/s of each, their ratio, and the FLOPs per image."""
    cache, split = one_batch_data(image_size, batch_size, params.seed)
    ours, notebook = contestants(config, cache, split, params, runtime, rounds)
    epochs = itertools.count(1)
    last: dict[str, dict[str, float]] = {}
    steps = {"ours": lambda: last.update(ours=ours.train_epoch(next(epochs))),
             "notebook": lambda: last.update(notebook=notebook.train_epoch())}
    for step in steps.values():
        for _ in range(rounds.warmup):
            step()
    seconds: dict[str, list[float]] = {side: [] for side in steps}
    start = time.perf_counter()
    for done in range(rounds.most):  # a round: one timed step of each side, order alternating
        if done >= rounds.least and time.perf_counter() - start >= rounds.budget_seconds:
            break
        for side in list(steps) if done % 2 == 0 else reversed(steps):
            seconds[side].append(timed(steps[side], runtime.device))
    result: dict[str, Any] = {}
    for side, times in seconds.items():  # medians over rounds; spread = (slowest - fastest) / median
        median = statistics.median(times)
        result[side] = {"images_per_second": batch_size / median, "step_ms": 1000 * median, "rounds": len(times),
                        "spread": (max(times) - min(times)) / median, "last_loss": last[side]["train_loss"]}
    result["ours"] |= {"precision": ours.runtime.precision, "channels_last": ours.runtime.channels_last}
    result["notebook"] |= {"precision": "fp32", "channels_last": False}
    summary = summarize(ours.model, image_size)
    ours_rate, notebook_rate = result["ours"]["images_per_second"], result["notebook"]["images_per_second"]
    print(f"bench: train {family_of(config)} {image_size} px batch {batch_size}: ours {ours_rate:,.0f} img/s, "
          f"notebook {notebook_rate:,.0f} img/s ({ours_rate / notebook_rate:.2f}x)", flush=True)
    return result | {"image_size": image_size, "batch_size": batch_size, "params": summary.params,
                     "forward_flops_per_image": 2 * summary.macs, "speedup": ours_rate / notebook_rate}


def matmul_peak(device: torch.device, precision: str, size: int, repeats: int) -> dict[str, Any]:
    """Best FLOP/s of ``torch.mm`` on two ``size x size`` matrices in ``precision`` (after one untimed run)."""
    a, b = torch.randn(2, size, size, generator=torch.Generator().manual_seed(0)).to(device, DTYPES[precision])
    torch.mm(a, b)
    seconds = min(timed(lambda: torch.mm(a, b), device) for _ in range(repeats))
    return {"flops": 2 * size**3 / seconds, "size": size}
