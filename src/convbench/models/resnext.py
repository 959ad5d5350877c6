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

from convbench.families import RESNEXT_DEPTHS, ResNeXtConfig
from convbench.models.resnet import Bottleneck, CourseBottleneck, ResNet

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
