"""The one synthetic image generator, for the benchmark and the tests: learnable classes at any size.

Each class is one colour (hues evenly spaced around the colour wheel) with
pixel noise and a faint class-specific stripe pattern, so even a tiny network
separates the classes within an epoch or two (losses stay finite, so no one
times NaN arithmetic), and crops and flips keep the label true.
"""

from __future__ import annotations

import colorsys
from pathlib import Path

import torch
from PIL import Image

from convbench.data.format import Cache


def synthetic_cache(classes: int = 3, per_class: int = 40, size: int = 16, seed: int = 0) -> Cache:
    """An in-memory :class:`Cache` of ``classes * per_class`` RGB images, class-major order."""
    generator = torch.Generator().manual_seed(seed)
    images = []
    for k in range(classes):
        colour = torch.tensor(colorsys.hsv_to_rgb(k / classes, 0.8, 0.9)) * 255
        stripes = (torch.arange(size) // (k + 1) % 2).float() * 20 - 10
        base = colour.view(3, 1, 1) + stripes.view(1, 1, size)
        noise = torch.randn(per_class, 3, size, size, generator=generator) * 25
        images.append((base + noise).clamp(0, 255).round().to(torch.uint8))
    images_t = torch.cat(images)
    labels = torch.arange(classes).repeat_interleave(per_class)
    scaled = images_t.float() / 255
    names = [f"class{k}" for k in range(classes)]
    return Cache(
        images=images_t,
        labels=labels,
        onehot=torch.nn.functional.one_hot(labels, classes).to(torch.uint8),
        classes=names,
        mean=scaled.mean(dim=(0, 2, 3)),
        std=scaled.std(dim=(0, 2, 3)),
        counts=torch.full((classes,), per_class, dtype=torch.long),
        origin=torch.zeros(len(labels), dtype=torch.uint8),
        files=[f"{names[k]}/{j:04d}.png" for k in range(classes) for j in range(per_class)],
        skipped=[],
        ignored=[],
    )


def write_image_folder(cache: Cache, root: Path, quality: int = 75) -> Path:
    """``cache``'s images as ``root/<class>/NNNNNN.jpg`` (JPEG ``quality``, as CIFAR-style datasets ship)."""
    for i, (image, label) in enumerate(zip(cache.images, cache.labels.tolist())):
        folder = root / cache.classes[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"{i:06d}.jpg", quality=quality)
    return root
