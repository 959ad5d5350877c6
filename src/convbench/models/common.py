"""What every family shares: the ``width`` knob and the checks on ``width``/``dropout``."""

from __future__ import annotations

from typing import Literal

from convbench.config import require

Stem = Literal["cifar", "imagenet"]


def scale_channels(channels: int, width: float) -> int:
    """``channels * width`` rounded, never below 1, so any positive width builds a network."""
    return max(1, round(channels * width))


def check_width_dropout(width: float, dropout: float) -> None:
    """Range checks shared by every family's config (raise ConfigError naming the key)."""
    require(width > 0, "width", f"must be a positive channel multiplier (1.0 = paper), got {width}")
    require(0.0 <= dropout < 1.0, "dropout", f"must be in [0, 1), got {dropout}")
