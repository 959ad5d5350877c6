"""Size and cost of a model: parameters, multiply-accumulates, output shape per stage."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from convbench.config import ConfigError


@dataclass(frozen=True)
class ModelSummary:
    """``macs`` counts one 1x3xSxS forward as measured by ``FlopCounterMode`` (FLOPs / 2)."""

    params: int
    macs: int
    stages: list[tuple[str, tuple[int, ...]]]


def summarize(model: nn.Module, image_size: int) -> ModelSummary:
    """Count parameters and MACs and record each stage's output shape with one batch-1 eval forward.

    Stages come from the model's ``stages()`` method when it has one (our
    models do), else its top-level children. The model's train/eval mode is
    restored afterwards. A model with a ``min_image_size`` (VGG) refuses smaller
    images here, in one line, before PyTorch fails deep inside a pooling layer.
    """
    smallest = getattr(model, "min_image_size", 1)
    if image_size < smallest:
        raise ConfigError(
            f"data.image_size: {type(model).__name__} needs images of at least {smallest} px, got {image_size}"
        )
    stages = model.stages() if hasattr(model, "stages") else list(model.named_children())
    shapes: dict[str, tuple[int, ...]] = {}

    def recorder(name: str):
        def hook(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
            shapes[name] = tuple(output.shape)

        return hook

    handles = [module.register_forward_hook(recorder(name)) for name, module in stages]
    parameter = next(model.parameters())
    x = torch.zeros(1, 3, image_size, image_size, device=parameter.device, dtype=parameter.dtype)
    was_training = model.training
    counter = FlopCounterMode(display=False)
    try:
        model.eval()
        with torch.no_grad(), counter:
            model(x)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return ModelSummary(
        params=sum(p.numel() for p in model.parameters()),
        macs=counter.get_total_flops() // 2,
        stages=[(name, shapes[name]) for name, _ in stages if name in shapes],
    )
