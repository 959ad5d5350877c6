"""train.whiten: the frozen patch-whitening layer every family gets in front of its first convolution."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from convbench.config import ConfigError
from convbench.data.format import load_cache, load_split
from convbench.families import FAMILIES
from convbench.models import create_model, summarize
from convbench.models.whiten import WhitenedStem, patch_whitening, whiten_stem
from convbench.params import TrainParams
from convbench.paths import Layout
from convbench.models.weights import load_trained
from convbench.training.augment import Normalizer
from synthetic import write_params, write_synthetic_project
from trainstage import TINY, stage

SMALL = {"vgg": {"width": 0.125}, "resnet": {"width": 0.125}, "resnext": {"width": 0.25}}


def correlated_images(n: int = 64, size: int = 12) -> torch.Tensor:
    """Smooth, colour-correlated images: their 3x3 patches are far from white."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 1, size, size, generator=g) * 2 + torch.randn(n, 3, size, size, generator=g) * 0.3
    return F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), 3, stride=1)


def test_whitened_patches_have_unit_covariance() -> None:
    images = correlated_images()
    filters = patch_whitening(images, 3, eps=0.0)
    assert filters.shape == (27, 3, 3, 3)
    out = F.conv2d(images, filters).permute(0, 2, 3, 1).reshape(-1, 27)
    raw = F.unfold(images, 3).transpose(1, 2).reshape(-1, 27)
    assert torch.cov(raw.T).abs().fill_diagonal_(0).max() > 0.5  # the input is strongly correlated ...
    assert torch.allclose(torch.cov(out.T), torch.eye(27), atol=1e-3)  # ... its whitened patches are not
    norms = filters.flatten(1).norm(dim=1)  # 1 / sqrt(eigenvalue): largest principal component first
    assert torch.all(norms[1:] >= norms[:-1])


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_gets_the_same_frozen_stem(family: str) -> None:
    torch.manual_seed(0)
    model = create_model(family, 10, **SMALL[family])
    before = summarize(model, 32)
    stem = whiten_stem(model, 3)
    assert stem.conv.in_channels == 27
    assert sum(isinstance(m, WhitenedStem) for m in model.modules()) == 1
    after = summarize(model, 32)
    assert after.stages == before.stages  # same shapes everywhere: only the first convolution's input grew
    assert after.macs > before.macs
    assert "whiten" not in dict(model.named_parameters()) and any(k.endswith("whiten") for k in model.state_dict())
    stem.whiten.copy_(patch_whitening(correlated_images(size=32), 3))
    x = torch.randn(4, 3, 32, 32)
    model(x).sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_whiten_must_be_off_or_an_odd_patch_side() -> None:
    for good in (0, 1, 3, 5):
        TrainParams(whiten=good)  # accepted: no error
    for bad in (-1, 2):
        with pytest.raises(ConfigError, match="whiten"):
            TrainParams(whiten=bad)


def test_a_whitened_model_trains_frozen_and_reloads_from_its_weights_file(tmp_path: Path) -> None:
    write_synthetic_project(tmp_path, classes=3, per_class=40, size=16)
    write_params(tmp_path, {**TINY, "train": {**TINY["train"], "epochs": 2, "whiten": 3}})
    done = stage(tmp_path, "resnet")
    assert done.returncode == 0, done.stderr[-3000:]
    model, meta = load_trained(Layout(tmp_path).weights("resnet"))  # strict load: the same network was rebuilt
    assert meta["whiten"] == 3
    (stem,) = [m for m in model.modules() if isinstance(m, WhitenedStem)]
    cache, split = load_cache(Layout(tmp_path).cache), load_split(Layout(tmp_path).split)
    images = Normalizer(cache.mean, cache.std, torch.device("cpu"))(cache.images[split["train"]])
    assert torch.allclose(stem.whiten, patch_whitening(images, 3), atol=1e-5)  # fitted on training images, untrained
