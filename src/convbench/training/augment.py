"""Whole-batch data augmentation on the training device.

Every function takes a (N, C, H, W) batch and a CPU ``torch.Generator``: the few
random numbers per sample are drawn on the CPU (so a run is reproducible on any
device and resumable from the generator's seed), then one batched tensor
operation applies them. No per-sample Python loop, no DataLoader workers.

In multi-process training each rank holds a slice of the global batch: with
``part=(offset, total)`` the random numbers are drawn for all ``total`` images
and the rank keeps its rows, so every image is augmented exactly as in a
single-process run.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Part = tuple[int, int]
"""``(offset, total)``: the batch is rows ``offset..offset+len`` of a global batch of ``total`` images."""


def _draw(sample: Callable[[int], torch.Tensor], n: int, part: Part | None) -> torch.Tensor:
    """``sample(k)`` draws per-image numbers for ``k`` images; keep the columns of this ``n``-image batch."""
    offset, total = part or (0, n)
    return sample(total)[..., offset : offset + n]


def reflect_index(index: torch.Tensor, size: int) -> torch.Tensor:
    """Map indices in ``[-size+1, 2*size-2]`` into ``[0, size)`` by mirror reflection (no edge repeat)."""
    index = index.abs()
    return torch.where(index >= size, 2 * (size - 1) - index, index)


def random_crop(
    x: torch.Tensor, padding: int, generator: torch.Generator, part: Part | None = None
) -> torch.Tensor:
    """Random crops of the reflect-padded batch, one offset per sample.

    Equivalent to ``F.pad(x, [padding] * 4, mode="reflect")`` followed by an
    ``H x W`` crop at a random offset in ``0..2*padding``, but done as two
    gathers of mirrored indices: no padded copy, and it works on uint8.
    """
    if padding == 0:
        return x
    n, c, h, w = x.shape
    if padding >= min(h, w):
        raise ValueError(f"crop padding {padding} must be smaller than the image side {min(h, w)}")
    shift = _draw(lambda k: torch.randint(-padding, padding + 1, (2, k), generator=generator), n, part).to(x.device)
    rows = reflect_index(shift[0, :, None] + torch.arange(h, device=x.device), h)
    cols = reflect_index(shift[1, :, None] + torch.arange(w, device=x.device), w)
    x = x.gather(2, rows[:, None, :, None].expand(n, c, h, w))
    return x.gather(3, cols[:, None, None, :].expand(n, c, h, w))


def flip_where(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mirror left-right the samples where ``mask`` (one bool per sample) is True."""
    return torch.where(mask.to(x.device)[:, None, None, None], x.flip(3), x)


def random_flip(x: torch.Tensor, generator: torch.Generator, part: Part | None = None) -> torch.Tensor:
    """Mirror each sample left-right with probability 1/2."""
    return flip_where(x, _draw(lambda k: torch.rand(k, generator=generator), x.shape[0], part) < 0.5)


def flip_coins(images: int, seed: int) -> torch.Tensor:
    """One fair coin per cache image: whether alternating flip mirrors it in the first epoch."""
    return torch.rand(images, generator=torch.Generator().manual_seed(seed)) < 0.5


def alternating_flips(coins: torch.Tensor, index: torch.Tensor, epoch: int) -> torch.Tensor:
    """Which images at cache ``index`` alternating flip mirrors in ``epoch`` (1-based).

    airbench's alternating flip: a random half in the first epoch, then every
    image the other way round from the epoch before, so each is seen both ways
    in every two epochs (no epoch repeats the previous one's view by chance).
    """
    return coins[index] ^ bool((epoch - 1) % 2)


def cutout(x: torch.Tensor, size: int, generator: torch.Generator, part: Part | None = None) -> torch.Tensor:
    """Zero one ``size x size`` square per sample, placed uniformly and wholly inside the image.

    Applied after normalisation, zero is the dataset's mean colour.
    """
    if size == 0:
        return x
    n, _, h, w = x.shape
    if size > min(h, w):
        raise ValueError(f"cutout {size} must not exceed the image side {min(h, w)}")
    top = _draw(lambda k: torch.randint(0, h - size + 1, (k,), generator=generator), n, part).to(x.device)
    left = _draw(lambda k: torch.randint(0, w - size + 1, (k,), generator=generator), n, part).to(x.device)
    rows = torch.arange(h, device=x.device)
    cols = torch.arange(w, device=x.device)
    in_rows = (rows >= top[:, None]) & (rows < top[:, None] + size)
    in_cols = (cols >= left[:, None]) & (cols < left[:, None] + size)
    return x.masked_fill(in_rows[:, None, :, None] & in_cols[:, None, None, :], 0)


class Normalizer:
    """``(uint8 / 255 - mean) / std`` as one multiply-subtract on the device."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, device: torch.device) -> None:
        std = std.to(device=device, dtype=torch.float32).view(1, -1, 1, 1)
        mean = mean.to(device=device, dtype=torch.float32).view(1, -1, 1, 1)
        self.scale = 1.0 / (255.0 * std)
        self.shift = mean / std

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x.float().mul_(self.scale).sub_(self.shift)


def augment_batch(
    x: torch.Tensor,
    normalizer: Normalizer,
    generator: torch.Generator,
    *,
    crop_padding: int,
    flip: bool,
    cutout_size: int,
    part: Part | None = None,
    flip_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Crop and flip the uint8 batch (4x less memory traffic), normalise, then cut out.

    ``flip_mask`` (from :func:`alternating_flips`) replaces the random flip.
    """
    x = random_crop(x, crop_padding, generator, part)
    if flip_mask is not None:
        x = flip_where(x, flip_mask)
    elif flip:
        x = random_flip(x, generator, part)
    return cutout(normalizer(x), cutout_size, generator, part)
