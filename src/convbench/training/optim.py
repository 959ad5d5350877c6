"""SGD with per-batch learning-rate schedules that survive a checkpoint round trip.

Both schedules are a :class:`~torch.optim.lr_scheduler.LambdaLR` over the global
batch index, so ``scheduler.state_dict()`` (the step count) is all a resumed run
needs; the shape itself is rebuilt from params.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from torch import nn
from torch.optim import SGD
from torch.optim.lr_scheduler import LambdaLR

from convbench.params import TrainParams

ONECYCLE_START = 1 / 25
"""One-cycle warm-up starts at lr/25 (``div_factor`` of Smith's one-cycle and OneCycleLR)."""


def build_optimizer(model: nn.Module, params: TrainParams) -> SGD:
    """SGD with momentum; weight decay only on conv/linear weights.

    Decaying BatchNorm scales and biases only shrinks them towards zero without
    regularising the function (BN makes the net invariant to weight scale).
    """
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    return SGD(
        [
            {"params": decay, "weight_decay": params.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=params.lr,
        momentum=params.momentum,
        nesterov=params.nesterov and params.momentum > 0,
    )


def lr_multiplier(schedule: str, total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """The factor on ``train.lr`` for batch ``step`` (0-based).

    Both start with a linear warm-up over ``warmup_steps`` batches, then
    ``cosine`` follows half a cosine down to 0, and ``onecycle`` (Smith's
    one-cycle, as in airbench) warms up from lr/25 and decays linearly to 0.
    """
    start = ONECYCLE_START if schedule == "onecycle" else 0.0
    decay_steps = max(total_steps - warmup_steps, 1)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return start + (1.0 - start) * (step + 1) / warmup_steps
        progress = min((step - warmup_steps) / decay_steps, 1.0)
        if schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0 - progress

    return factor


def build_scheduler(optimizer: SGD, params: TrainParams, steps_per_epoch: int) -> LambdaLR:
    """A per-batch :class:`LambdaLR` for ``params.schedule`` over all ``params.epochs``.

    The warm-up is a share of the whole schedule, so every budget (``train.epochs``) gets the same shape
    and a 1-epoch run is as valid as a 16-epoch one.
    """
    total = params.epochs * steps_per_epoch
    warmup = round(params.warmup_fraction * total)
    return LambdaLR(optimizer, lr_multiplier(params.schedule, total, warmup))
