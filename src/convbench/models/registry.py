"""Named shortcuts and the one function that builds any model.

``create_model`` takes a family's typed config (``params.models["resnext"]``,
parsed once from params.yaml by :mod:`convbench.params`), or a family or
shortcut name with the section's keys as keyword arguments. The families and
their configs live in :mod:`convbench.families` (no torch there).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from convbench.config import ConfigError, require
from convbench.families import (
    DEFAULT_CONFIG, FAMILIES, RESNET_DEPTHS, FamilyConfig, ResNetConfig, ResNeXtConfig, VGGConfig, family_of,
    model_config, paper_depth,
)
from convbench.models.resnet import build_resnet
from convbench.models.resnext import build_resnext
from convbench.models.vgg import build_vgg


@dataclass(frozen=True)
class Shortcut:
    """A named model: ``fixed`` keys define it (overriding them is an error), ``defaults`` may be overridden."""

    family: str
    fixed: Mapping[str, Any]
    defaults: Mapping[str, Any] = field(default_factory=dict)


BUILDERS: dict[type, Callable[[Any, int], nn.Module]] = {
    VGGConfig: build_vgg,
    ResNetConfig: build_resnet,
    ResNeXtConfig: build_resnext,
}
"""The network builder of each family's config class."""


def _shortcuts() -> dict[str, Shortcut]:
    """torchvision's names (ImageNet stem, classic VGG head) plus the CIFAR ResNeXt-29s, at full width.

    Each shortcut names every key in which its paper's model differs from params.yaml's defaults.
    """
    table = {f"resnet{d}": Shortcut("resnet", {"depth": d}, {"stem": "imagenet", "width": 1.0})
             for d in RESNET_DEPTHS}
    for depth, cardinality, base_width, stem in (
        (50, 32, 4, "imagenet"),
        (101, 32, 8, "imagenet"),
        (29, 8, 64, "cifar"),
        (29, 16, 64, "cifar"),
    ):
        table[f"resnext{depth}_{cardinality}x{base_width}d"] = Shortcut(
            "resnext", {"depth": depth, "cardinality": cardinality, "base_width": base_width},
            {"stem": stem, "width": 1.0, "complexity_of": ""},
        )
    vgg_names = {f"vgg{d}": c for d, c in DEFAULT_CONFIG.items()} | {"vgg16c": "C"}
    for name, config in vgg_names.items():
        for suffix, batch_norm in (("", False), ("_bn", True)):
            table[name + suffix] = Shortcut(
                "vgg",
                {"depth": paper_depth(config), "config": config, "batch_norm": batch_norm},
                {"head": "classic", "dropout": 0.5, "width": 1.0},
            )
    return table


SHORTCUTS: dict[str, Shortcut] = _shortcuts()


def list_models() -> list[str]:
    """Every name :func:`create_model` accepts: the families, then the shortcuts, sorted."""
    return sorted(FAMILIES) + sorted(SHORTCUTS)


def _resolve(name: str | FamilyConfig, overrides: Mapping[str, Any]) -> tuple[str, FamilyConfig]:
    """(family, config) for a typed config, a family name or a shortcut with keyword overrides."""
    if not isinstance(name, str):
        require(not overrides, "create_model", "takes no keyword overrides with a config; use dataclasses.replace")
        return family_of(name), name
    if name in FAMILIES:
        return name, model_config(name, **overrides)
    if name not in SHORTCUTS:
        raise ConfigError(f"unknown model {name!r}; valid names: {', '.join(list_models())}")
    shortcut = SHORTCUTS[name]
    for key, value in overrides.items():
        require(
            shortcut.fixed.get(key, value) == value,
            f"{name}.{key}",
            f"{name} fixes {key}={shortcut.fixed.get(key)!r}; build create_model({shortcut.family!r}, "
            f"{key}={value!r}, ...) instead",
        )
    return shortcut.family, model_config(shortcut.family, **{**shortcut.defaults, **shortcut.fixed, **overrides})


def create_model(name: str | FamilyConfig, num_classes: int, **section: Any) -> nn.Module:
    """Build a model from a typed config, a family name and its params section, or a shortcut plus overrides.

    ``create_model(params.models["resnext"], 10)`` is the configured family;
    ``create_model("resnext", 10, cardinality=16)`` is the family with one key
    changed; ``create_model("resnet18", 10, stem="cifar")`` is a named model
    with a non-defining key changed. The returned module has a ``family``
    attribute naming its family.
    """
    family, config = _resolve(name, section)
    require(
        isinstance(num_classes, int) and not isinstance(num_classes, bool) and num_classes >= 1,
        "num_classes",
        f"must be a positive integer, got {num_classes!r}",
    )
    model = BUILDERS[type(config)](config, num_classes)
    model.family = family
    return model
