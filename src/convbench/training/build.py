"""The untrained network a training run starts from, built the same way wherever training happens."""

from __future__ import annotations

import torch
from torch import nn

from convbench.data.format import Cache
from convbench.families import FamilyConfig
from convbench.models import create_model
from convbench.models.whiten import patch_whitening, whiten_stem
from convbench.training.augment import Normalizer

WHITEN_IMAGES = 5000
"""Training images whose patch covariance sets the whitening filters (airbench's count)."""


def build_untrained(config: FamilyConfig, whiten: int, cache: Cache, split: dict[str, torch.Tensor]) -> nn.Module:
    """``config``'s model, plus ``train.whiten``'s frozen stem fitted on the split's first training images.

    The train stage and the GPU check both build through here, so the check
    times the network the pipeline trains, the one
    :func:`~convbench.models.weights.load_trained` rebuilds from its file.
    """
    model = create_model(config, cache.num_classes)
    if whiten:
        images = Normalizer(cache.mean, cache.std, torch.device("cpu"))(cache.images[split["train"][:WHITEN_IMAGES]])
        whiten_stem(model, whiten).whiten.copy_(patch_whitening(images, whiten))
    return model
