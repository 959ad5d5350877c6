"""VGG (Simonyan & Zisserman, 2015): the paper's configurations A to E.

``features`` follows torchvision's layout (conv[, BatchNorm], ReLU, ..., max-pool),
so the classic head reproduces torchvision's parameter counts exactly.
Five 2x2 max-pools need inputs of at least 32 px.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from convbench.config import require
from convbench.models.common import check_width_dropout, scale_channels

ConfigName = Literal["A", "B", "C", "D", "E"]
Head = Literal["compact", "classic"]

BLOCK_CHANNELS: tuple[int, ...] = (64, 128, 256, 512, 512)

# Kernel size of each convolution, block by block (paper Table 1). Configuration C
# ends blocks 3-5 with a 1x1 convolution; D uses 3x3 there.
VGG_CONFIGS: dict[str, tuple[tuple[int, ...], ...]] = {
    "A": ((3,), (3,), (3, 3), (3, 3), (3, 3)),
    "B": ((3, 3), (3, 3), (3, 3), (3, 3), (3, 3)),
    "C": ((3, 3), (3, 3), (3, 3, 1), (3, 3, 1), (3, 3, 1)),
    "D": ((3, 3), (3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3)),
    "E": ((3, 3), (3, 3), (3, 3, 3, 3), (3, 3, 3, 3), (3, 3, 3, 3)),
}
# The configuration a bare depth means (16 is ambiguous: C or D; D is the usual VGG-16).
DEFAULT_CONFIG: dict[int, str] = {11: "A", 13: "B", 16: "D", 19: "E"}


def paper_depth(config: str) -> int:
    """Weight layers of a configuration as the paper counts them: convolutions plus three FC layers."""
    return sum(len(block) for block in VGG_CONFIGS[config]) + 3


class VGG(nn.Module):
    """VGG feature extractor plus one of two heads.

    ``head="classic"`` is torchvision's: adaptive average pool to 7x7, then
    Linear-ReLU-Dropout twice (4096 units times ``width``) and a Linear; on a
    32 px input it upsamples a 1x1 map to 7x7 and spends ~120 M parameters.
    ``head="compact"`` (the default) is global average pooling, Dropout and one
    Linear. ``dropout`` is the probability of every Dropout in the head.
    """

    def __init__(
        self,
        blocks: Sequence[Sequence[int]],
        num_classes: int = 1000,
        *,
        batch_norm: bool = True,
        width: float = 1.0,
        dropout: float = 0.0,
        head: Head = "compact",
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for kernels, block_channels in zip(blocks, BLOCK_CHANNELS):
            out = scale_channels(block_channels, width)
            for k in kernels:
                layers.append(nn.Conv2d(channels, out, k, padding=k // 2))
                if batch_norm:
                    layers.append(nn.BatchNorm2d(out))
                layers.append(nn.ReLU(inplace=True))
                channels = out
            layers.append(nn.MaxPool2d(2, 2))
        self.features = nn.Sequential(*layers)
        if head == "classic":
            hidden = scale_channels(4096, width)
            self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
            self.classifier = nn.Sequential(
                nn.Linear(channels * 7 * 7, hidden),
                nn.ReLU(inplace=True),
                nn.Dropout(dropout),
                nn.Linear(hidden, hidden),
                nn.ReLU(inplace=True),
                nn.Dropout(dropout),
                nn.Linear(hidden, num_classes),
            )
        else:
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(channels, num_classes))

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

    @property
    def min_image_size(self) -> int:
        """The smallest input side: each block's max-pool halves it, and a 1 px map cannot be pooled."""
        return 2 ** sum(isinstance(m, nn.MaxPool2d) for m in self.features)

    def stages(self) -> list[tuple[str, nn.Module]]:
        """Each conv block (ending at its max-pool), then the pool and the classifier (for summaries)."""
        pools = [m for m in self.features if isinstance(m, nn.MaxPool2d)]
        return [
            *((f"block{i + 1}", pool) for i, pool in enumerate(pools)),
            ("avgpool", self.avgpool),
            ("classifier", self.classifier),
        ]


@dataclass(frozen=True)
class VGGConfig:
    """The ``vgg`` section of params.yaml.

    ``depth`` counts weight layers as the paper does (11, 13, 16, 19);
    ``config`` picks the paper's column (A-E) and defaults to the one for that
    depth (D for 16; C is VGG-16 with 1x1 convolutions). ``head`` defaults to
    ``"compact"`` (global average pool + one Linear) because the classic
    4096-4096 head costs ~120 M parameters on a 32 px input. ``width`` scales
    every convolution's channels (and the classic head's hidden units).
    """

    depth: int = 16
    config: ConfigName | None = None
    batch_norm: bool = True
    width: float = 1.0
    dropout: float = 0.0
    head: Head = "compact"

    def __post_init__(self) -> None:
        require(
            self.depth in DEFAULT_CONFIG,
            "depth",
            f"{self.depth} is not a VGG depth; choose one of {', '.join(map(str, DEFAULT_CONFIG))}",
        )
        if self.config is None:
            object.__setattr__(self, "config", DEFAULT_CONFIG[self.depth])
        matching = [name for name in VGG_CONFIGS if paper_depth(name) == self.depth]
        require(
            self.config in matching,
            "config",
            f"{self.config} has {paper_depth(self.config)} layers, not depth {self.depth}; "
            f"for depth {self.depth} use {' or '.join(matching)} (or leave config out)",
        )
        check_width_dropout(self.width, self.dropout)


def build_vgg(config: VGGConfig, num_classes: int) -> VGG:
    """The VGG that ``config`` describes."""
    assert config.config is not None  # resolved in VGGConfig.__post_init__
    return VGG(
        VGG_CONFIGS[config.config],
        num_classes,
        batch_norm=config.batch_norm,
        width=config.width,
        dropout=config.dropout,
        head=config.head,
    )
