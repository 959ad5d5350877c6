"""VGG (Simonyan & Zisserman, 2015): the paper's configurations A to E.

``features`` follows torchvision's layout (conv[, BatchNorm], ReLU, ..., max-pool),
so the classic head reproduces torchvision's parameter counts exactly.
Five 2x2 max-pools need inputs of at least 32 px.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from convbench.families import VGG_CONFIGS, Head, VGGConfig, scale_channels

BLOCK_CHANNELS: tuple[int, ...] = (64, 128, 256, 512, 512)


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
