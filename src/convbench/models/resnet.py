"""ResNet (He et al., 2016) in torchvision's layout, with the knobs ResNeXt needs.

Module and parameter names match ``torchvision.models.ResNet`` so its
state_dicts load directly (the tests use that to prove the architectures are
equal). Like torchvision, the skeleton takes a block class plus ``groups`` and
``width_per_group``: ResNeXt is this same skeleton with grouped bottlenecks
(see :mod:`convbench.models.resnext`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from convbench.families import RESNET_DEPTHS, ResNetConfig, Stem, scale_channels


def conv3x3(in_planes: int, out_planes: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding; no bias because a BatchNorm follows."""
    return nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, groups=groups, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution; no bias because a BatchNorm follows."""
    return nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions (ResNet-18/34); ``dropout`` sits between them, as in Wide ResNets."""

    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        groups: int = 1,
        base_width: int = 64,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ValueError("BasicBlock supports only groups=1 and base_width=64; grouped blocks need Bottleneck")
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.dropout(self.relu(self.bn1(self.conv1(x))))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)

    def zero_init_last(self) -> None:
        """Start the residual branch at zero so the block begins as the identity (Goyal et al., 2017)."""
        nn.init.zeros_(self.bn2.weight)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand (x4); with ``groups > 1`` the 3x3 is grouped: the ResNeXt block.

    The inner width is torchvision's ``int(planes * base_width / 64) * groups``,
    so ``groups=32, base_width=4`` is ResNeXt's 32x4d. The stride sits on the
    3x3 convolution (torchvision's "ResNet v1.5"); ``dropout`` sits before the
    last 1x1 convolution.
    """

    expansion = 4

    @staticmethod
    def inner_width(planes: int, base_width: int, groups: int) -> int:
        """Channels of the grouped 3x3: ``base_width`` per group at 64 planes, scaled with the stage."""
        return planes * base_width // 64 * groups

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        groups: int = 1,
        base_width: int = 64,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        width = self.inner_width(planes, base_width, groups)
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride, groups)
        self.bn2 = nn.BatchNorm2d(width)
        self.dropout = nn.Dropout(dropout)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.dropout(self.relu(self.bn2(self.conv2(out))))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)

    def zero_init_last(self) -> None:
        """Start the residual branch at zero so the block begins as the identity (Goyal et al., 2017)."""
        nn.init.zeros_(self.bn3.weight)


class CourseBottleneck(Bottleneck):
    """The course notebook's ResNeXt block: ``Bottleneck`` without the x4 expansion, a fixed grouped width.

    The grouped 3x3 has ``groups * base_width`` channels in every stage (128 for
    32x4d) and the block outputs ``planes`` channels (64, 128, 256, 512), so the
    network is about a tenth of ResNeXt-50. ``dropout`` sits after the first
    ReLU, where the notebook puts it.
    """

    expansion = 1

    @staticmethod
    def inner_width(planes: int, base_width: int, groups: int) -> int:
        return groups * base_width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.dropout(self.relu(self.bn1(self.conv1(x))))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


Block = type[BasicBlock] | type[Bottleneck]


class ResNet(nn.Module):
    """The ResNet skeleton: stem, ``len(layers)`` stages of blocks, global average pool, linear.

    Stage ``i`` has ``64 * 2**i`` planes (times ``width``) and stride 2 except
    the first. ``stem="imagenet"`` is the paper's 7x7/2 convolution and 3x3/2
    max-pool; ``stem="cifar"`` is one 3x3/1 convolution and no pool, so 32 px
    inputs keep their resolution; ``stem="pool"`` adds a 2x2/2 max-pool to it,
    so the stages start at 16 px, as fast CIFAR recipes' networks do. ``head_dropout`` drops pooled features before
    the classifier (the course notebook's models do). Initialisation is
    torchvision's (Kaiming normal, fan-out).
    """

    def __init__(
        self,
        block: Block,
        layers: Sequence[int],
        num_classes: int = 1000,
        *,
        groups: int = 1,
        width_per_group: int = 64,
        stem: Stem = "imagenet",
        width: float = 1.0,
        dropout: float = 0.0,
        head_dropout: float = 0.0,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        inplanes = scale_channels(64, width)
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(3, inplanes, 7, stride=2, padding=3, bias=False)
            self.maxpool: nn.Module = nn.MaxPool2d(3, stride=2, padding=1)
        else:
            self.conv1 = conv3x3(3, inplanes)
            self.maxpool = nn.MaxPool2d(2) if stem == "pool" else nn.Identity()
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.stage_names = tuple(f"layer{i + 1}" for i in range(len(layers)))
        for i, (name, blocks) in enumerate(zip(self.stage_names, layers)):
            planes = scale_channels(64 * 2**i, width)
            stride = 1 if i == 0 else 2
            downsample = None
            if stride != 1 or inplanes != planes * block.expansion:
                downsample = nn.Sequential(
                    conv1x1(inplanes, planes * block.expansion, stride), nn.BatchNorm2d(planes * block.expansion)
                )
            stage = [block(inplanes, planes, stride, downsample, groups, width_per_group, dropout)]
            inplanes = planes * block.expansion
            stage += [block(inplanes, planes, 1, None, groups, width_per_group, dropout) for _ in range(blocks - 1)]
            setattr(self, name, nn.Sequential(*stage))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.head_dropout = nn.Dropout(head_dropout)
        self.fc = nn.Linear(inplanes, num_classes)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)):
                    m.zero_init_last()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for name in self.stage_names:
            x = getattr(self, name)(x)
        return self.fc(self.head_dropout(torch.flatten(self.avgpool(x), 1)))

    def stages(self) -> list[tuple[str, nn.Module]]:
        """Top-level stages in forward order, each named by the module whose output it is (for summaries)."""
        return [
            ("stem", self.maxpool),
            *((name, getattr(self, name)) for name in self.stage_names),
            ("avgpool", self.avgpool),
            ("fc", self.fc),
        ]


BLOCKS: dict[str, Block] = {"basic": BasicBlock, "bottleneck": Bottleneck}


def build_resnet(config: ResNetConfig, num_classes: int) -> ResNet:
    """The ResNet that ``config`` describes."""
    kind, layers = RESNET_DEPTHS[config.depth]
    return ResNet(
        BLOCKS[kind],
        layers,
        num_classes,
        stem=config.stem,
        width=config.width,
        dropout=config.dropout,
        head_dropout=config.dropout if config.layout == "course" else 0.0,
        zero_init_residual=config.zero_init_residual,
    )
