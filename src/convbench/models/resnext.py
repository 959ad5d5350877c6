"""ResNeXt (Xie et al., 2017): the ResNet skeleton with grouped bottlenecks, as torchvision builds it.

``cardinality`` is the number of groups in each bottleneck's 3x3 convolution
and ``base_width`` the channels per group at the first stage (doubling per
stage): 32x4d is ``cardinality=32, base_width=4``. Depth 50 and 101 are the
ImageNet networks; depth 29 is the CIFAR network (3x3 stem of 64 channels,
three stages of three blocks, 256/512/1024 output channels). The CIFAR family is
depth 9n + 2 for n blocks per stage, so 20 and 11 are its shallower members
(two and one block per stage): CPU-sized networks with the same block.

``layout: course`` is the course notebook's ResNeXt instead (see
:class:`~convbench.models.resnet.CourseBottleneck`): blocks that do not expand,
the same grouped width ``cardinality * base_width`` in every stage, and
``dropout`` after each block's first ReLU and before the classifier. With
``depth: 50, stem: imagenet`` it is the notebook's network ([3, 4, 6, 3] blocks
after the 7x7/2 stem and max-pool, stage outputs 64-512).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from convbench.config import require
from convbench.models.common import Stem, check_width_dropout, scale_channels
from convbench.models.resnet import Bottleneck, CourseBottleneck, Layout, ResNet

RESNEXT_DEPTHS: dict[int, tuple[int, ...]] = {
    11: (1, 1, 1),
    20: (2, 2, 2),
    29: (3, 3, 3),
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
}


@dataclass(frozen=True)
class ResNeXtConfig:
    """The ``resnext`` section of params.yaml.

    ``width`` scales every convolution's channels; the grouped width is then
    torchvision's ``int(planes * base_width / 64) * cardinality`` of the scaled
    planes, so the cardinality always divides it. A width so small that a group
    would get no channel is rejected. In the ``course`` layout ``width`` scales
    the stem and stage outputs only: the grouped width is ``cardinality *
    base_width`` everywhere, as in the notebook.
    """

    depth: int = 29
    cardinality: int = 8
    base_width: int = 64
    stem: Stem = "cifar"
    width: float = 1.0
    dropout: float = 0.0
    zero_init_residual: bool = False
    layout: Layout = "paper"

    def __post_init__(self) -> None:
        require(
            self.depth in RESNEXT_DEPTHS,
            "depth",
            f"{self.depth} is not a ResNeXt depth; choose one of {', '.join(map(str, RESNEXT_DEPTHS))}",
        )
        require(self.cardinality >= 1, "cardinality", f"must be at least 1 group, got {self.cardinality}")
        require(self.base_width >= 1, "base_width", f"must be at least 1 channel per group, got {self.base_width}")
        check_width_dropout(self.width, self.dropout)
        if self.layout == "course":
            return
        planes = scale_channels(64, self.width)
        grouped = planes * self.base_width / 64 * self.cardinality
        require(
            planes * self.base_width // 64 >= 1,
            "cardinality",
            f"{self.cardinality} groups do not divide the first stage's grouped width of {grouped:g} channels "
            f"(width {self.width:g}, base_width {self.base_width}); use width >= "
            f"{math.ceil(64 / self.base_width) / 64:g}, a larger base_width or a smaller cardinality",
        )


def build_resnext(config: ResNeXtConfig, num_classes: int) -> ResNet:
    """The ResNeXt that ``config`` describes: ``ResNet`` with grouped bottlenecks of ``cardinality`` groups."""
    course = config.layout == "course"
    return ResNet(
        CourseBottleneck if course else Bottleneck,
        RESNEXT_DEPTHS[config.depth],
        num_classes,
        groups=config.cardinality,
        width_per_group=config.base_width,
        stem=config.stem,
        width=config.width,
        dropout=config.dropout,
        head_dropout=config.dropout if course else 0.0,
        zero_init_residual=config.zero_init_residual,
    )
