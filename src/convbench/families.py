"""The model families and their params.yaml sections as typed configs, without importing torch.

Everything a stage needs to *validate* a model section lives here, so
:mod:`convbench.params` parses the whole params.yaml once into typed configs
while the data stages stay free of torch and of :mod:`convbench.models` (which
builds the networks from these configs). :data:`FAMILIES` is the one list of
families.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from convbench.config import ConfigError, parse_section, require

Stem = Literal["cifar", "pool", "imagenet"]
"""``cifar``: 3x3/1 conv, stages from full resolution; ``pool``: the same conv then a 2x2/2 max-pool, stages from
half resolution (a quarter of the cost, so wider channels that a CPU runs well); ``imagenet``: 7x7/2 conv and 3x3/2
max-pool."""


def scale_channels(channels: int, width: float) -> int:
    """``channels * width`` rounded, never below 1, so any positive width builds a network."""
    return max(1, round(channels * width))


def check_width_dropout(width: float, dropout: float) -> None:
    """Range checks shared by every family's config (raise ConfigError naming the key)."""
    require(width > 0, "width", f"must be a positive channel multiplier (1.0 = paper), got {width}")
    require(0.0 <= dropout < 1.0, "dropout", f"must be in [0, 1), got {dropout}")


BlockLayout = Literal["paper", "course"]
"""``paper``: the torchvision/paper network. ``course``: the course notebook's variant (see the configs)."""


# -- VGG ---------------------------------------------------------------------------------------------

ConfigName = Literal["A", "B", "C", "D", "E"]
Head = Literal["compact", "classic"]

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

    DISPLAY_NAME: ClassVar[str] = "VGG"
    DESCRIPTION: ClassVar[str] = "a plain stack of convolutions without shortcuts"

    depth: int = 11
    config: ConfigName | None = None
    batch_norm: bool = True
    width: float = 0.5
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


# -- ResNet ------------------------------------------------------------------------------------------

RESNET_DEPTHS: dict[int, tuple[Literal["basic", "bottleneck"], tuple[int, ...]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
"""Block kind and blocks per stage of each ResNet depth."""


@dataclass(frozen=True)
class ResNetConfig:
    """The ``resnet`` section of params.yaml.

    ``depth`` picks basic (18, 34) or bottleneck (50, 101, 152) blocks;
    ``width`` scales every convolution's channels; ``dropout`` is applied inside
    each residual branch; ``zero_init_residual`` zeroes each block's last
    BatchNorm scale. ``layout: course`` is the course notebook's ResNet: the same
    network with ``dropout`` also before the classifier.
    """

    DISPLAY_NAME: ClassVar[str] = "ResNet"
    DESCRIPTION: ClassVar[str] = "residual blocks of dense convolutions"

    depth: int = 18
    stem: Stem = "pool"
    width: float = 0.5
    dropout: float = 0.0
    zero_init_residual: bool = False
    layout: BlockLayout = "paper"

    def __post_init__(self) -> None:
        require(
            self.depth in RESNET_DEPTHS,
            "depth",
            f"{self.depth} is not a ResNet depth; choose one of {', '.join(map(str, RESNET_DEPTHS))}",
        )
        check_width_dropout(self.width, self.dropout)


# -- ResNeXt -----------------------------------------------------------------------------------------

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

    ``base_width: auto`` keeps the complexity fixed, as the ResNeXt paper's
    Table 3 does: it becomes the base width whose parameter count (without the
    classifier, which every C and d share) is closest to that of the same
    network at ``complexity_of`` (``"4x32d"``: cardinality 4, base width 32).
    So ``dvc exp run -S resnext.cardinality=64`` compares like with like.
    """

    DISPLAY_NAME: ClassVar[str] = "ResNeXt"
    DESCRIPTION: ClassVar[str] = "residual blocks of grouped convolutions"

    depth: int = 20
    cardinality: int = 4
    base_width: int | Literal["auto"] = "auto"
    stem: Stem = "pool"
    width: float = 0.5
    dropout: float = 0.0
    zero_init_residual: bool = False
    layout: BlockLayout = "paper"
    complexity_of: str = "4x24d"

    def __post_init__(self) -> None:
        require(
            self.depth in RESNEXT_DEPTHS,
            "depth",
            f"{self.depth} is not a ResNeXt depth; choose one of {', '.join(map(str, RESNEXT_DEPTHS))}",
        )
        require(self.cardinality >= 1, "cardinality", f"must be at least 1 group, got {self.cardinality}")
        check_width_dropout(self.width, self.dropout)
        if self.base_width == "auto":
            cardinality, base_width = parse_complexity(self.complexity_of)
            require(self.fits(cardinality, base_width), "complexity_of",
                    f"{self.complexity_of} is not a valid setting at width {self.width:g}")
            object.__setattr__(self, "base_width", self.matched_base_width(cardinality, base_width))
        require(self.base_width >= 1, "base_width", f"must be at least 1 channel per group, got {self.base_width}")
        planes = scale_channels(64, self.width)
        grouped = planes * self.base_width / 64 * self.cardinality
        require(
            self.fits(self.cardinality, self.base_width),
            "cardinality",
            f"{self.cardinality} groups do not divide the first stage's grouped width of {grouped:g} channels "
            f"(width {self.width:g}, base_width {self.base_width}); use width >= "
            f"{math.ceil(64 / self.base_width) / 64:g}, a larger base_width or a smaller cardinality",
        )

    def fits(self, cardinality: int, base_width: int) -> bool:
        """Whether every group of the first stage gets at least one channel."""
        return self.layout == "course" or scale_channels(64, self.width) * base_width // 64 >= 1

    def feature_params(self, cardinality: int, base_width: int) -> int:
        """Parameters of this network at ``cardinality`` x ``base_width``, classifier excluded, from the shapes."""
        course = self.layout == "course"
        channels = scale_channels(64, self.width)
        total = 3 * (49 if self.stem == "imagenet" else 9) * channels + 2 * channels
        inplanes = channels
        for stage, blocks in enumerate(RESNEXT_DEPTHS[self.depth]):
            planes = scale_channels(64 * 2**stage, self.width)
            inner = cardinality * base_width if course else planes * base_width // 64 * cardinality
            out = planes * (1 if course else 4)
            for block in range(blocks):
                total += inplanes * inner + 9 * inner * inner // cardinality + inner * out + 4 * inner + 2 * out
                if block == 0 and (stage > 0 or inplanes != out):
                    total += inplanes * out + 2 * out
                inplanes = out
        return total

    def matched_base_width(self, cardinality: int, base_width: int) -> int:
        """The smallest base width whose parameter count at this cardinality is closest to ``cardinality x base_width``."""
        target = self.feature_params(cardinality, base_width)
        candidates = [d for d in range(1, MAX_BASE_WIDTH + 1) if self.fits(self.cardinality, d)]
        return min(candidates, key=lambda d: abs(self.feature_params(self.cardinality, d) - target))


MAX_BASE_WIDTH = 1024
"""The largest base width ``auto`` considers."""


def parse_complexity(text: str) -> tuple[int, int]:
    """``"4x32d"`` -> ``(4, 32)``; raises ConfigError naming ``complexity_of``."""
    match = re.fullmatch(r"(\d+)x(\d+)d", text.strip())
    require(bool(match) and int(match.group(1)) >= 1 and int(match.group(2)) >= 1, "complexity_of",
            f"{text!r} is not a setting like '4x32d' (cardinality x base width); base_width: auto needs one")
    return int(match.group(1)), int(match.group(2))


# -- the families ------------------------------------------------------------------------------------

FamilyConfig = VGGConfig | ResNetConfig | ResNeXtConfig
CONFIGS: dict[str, type[FamilyConfig]] = {"vgg": VGGConfig, "resnet": ResNetConfig, "resnext": ResNeXtConfig}
FAMILIES: tuple[str, ...] = tuple(CONFIGS)
"""The one list of model families, in report order."""
GROUPED = "resnext"
"""The family with grouped convolutions (cardinality C): the report's cardinality study and architecture discussion."""
DENSE = "resnet"
"""The residual family with dense convolutions: the like-for-like comparison for :data:`GROUPED`."""


def model_config(family: str, **section: Any) -> FamilyConfig:
    """The frozen config of ``family`` built from its params.yaml ``section``.

    Raises ConfigError naming the key (``resnext.cardinality: ...``) for an
    unknown family or key, a wrong type, or an impossible combination.
    """
    if family not in CONFIGS:
        raise ConfigError(f"unknown model family {family!r}; valid families: {', '.join(FAMILIES)}")
    return parse_section(CONFIGS[family], section, family)


def family_of(config: FamilyConfig) -> str:
    """The family name of a config instance."""
    return next(name for name, cls in CONFIGS.items() if isinstance(config, cls))
