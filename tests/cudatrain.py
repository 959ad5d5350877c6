"""A small model's Trainer on the GPU, shared by test_cuda.py and the torchrun worker cuda_ddp_worker.py."""

from __future__ import annotations

from pathlib import Path

import torch

from convbench.data.format import load_cache, load_split
from convbench.models import create_model
from convbench.params import TrainParams
from convbench.paths import Layout
from convbench.training.device import resolve_runtime
from convbench.training.distributed import Dist
from convbench.training.loop import Trainer

CUDA_TRAIN = {"epochs": 2, "batch_size": 16, "eval_batch_size": 64, "lr": 0.05, "warmup_fraction": 0.17,
              "device": "cuda", "precision": "bf16", "channels_last": "on"}


def cuda_trainer(base: Path, family: str = "resnet", dist: Dist = Dist(), **train: object) -> Trainer:
    """A Trainer of a small model on the synthetic project in ``base``, on the GPU."""
    params = TrainParams(**{**CUDA_TRAIN, **train})
    layout = Layout(base)
    cache, split = load_cache(layout.cache), load_split(layout.split)
    torch.manual_seed(params.seed)
    model = create_model(family, cache.num_classes, width={"resnet": 0.125, "resnext": 0.25, "vgg": 0.125}[family])
    return Trainer(model, cache, split, params, resolve_runtime(params, dist), dist=dist)
