"""Test-time augmentation: the fixed views of a test image whose logits evaluation averages."""

from __future__ import annotations

import torch

from convbench.training.augment import reflect_index


def translate(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Shift every image by ``(dy, dx)`` pixels, mirroring at the borders (a fixed training random crop).

    Output pixel ``(i, j)`` is input pixel ``(i + dy, j + dx)`` reflected into the image.
    """
    if dy == 0 and dx == 0:
        return x
    h, w = x.shape[-2:]
    rows = reflect_index(dy + torch.arange(h, device=x.device), h)
    cols = reflect_index(dx + torch.arange(w, device=x.device), w)
    return x.index_select(2, rows).index_select(3, cols)


TTA_SHIFTS: dict[str, tuple[tuple[int, int], ...]] = {
    "none": ((0, 0),), "flip": ((0, 0),), "flip_translate": ((0, 0), (-1, -1), (1, 1)),
}
"""Shifts of each test-time augmentation mode; every mode but ``none`` also mirrors each shifted view.
The six views of ``flip_translate`` are airbench94's: mirror x {no shift, (-1, -1), (+1, +1)}."""


def tta_views(x: torch.Tensor, mode: str) -> list[torch.Tensor]:
    """The views whose logits test-time augmentation averages; the first is always ``x`` itself."""
    shifted = [translate(x, dy, dx) for dy, dx in TTA_SHIFTS[mode]]
    if mode == "none":
        return shifted
    return [view for s in shifted for view in (s, s.flip(3))]
