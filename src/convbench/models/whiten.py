"""A frozen patch-whitening layer in front of any family's first convolution (``train.whiten``).

Fast CIFAR recipes (Page's ResNet-9, airbench) start the network with a fixed
convolution whose filters are the principal components of the training set's
k x k image patches, each scaled to unit variance. The first learned
convolution then sees decorrelated inputs of equal variance, which
preconditions it: the same learning rate moves every input direction equally.

:func:`whiten_stem` gives the same layer to every family the same way: the
first convolution that reads the 3-channel image is replaced by a
:class:`WhitenedStem`, the whitening followed by a copy of that convolution
that reads ``3 k²`` channels. The whitening filters are a buffer (saved,
never trained) computed by :func:`patch_whitening` from training images.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

WHITEN_EPS = 5e-4
"""Added to each eigenvalue before scaling, so near-empty directions are not blown up (airbench's value)."""


def patch_whitening(images: torch.Tensor, kernel: int, eps: float = WHITEN_EPS) -> torch.Tensor:
    """Filters ``(3 k², 3, k, k)`` that map ``k x k`` patches of ``images`` (normalised floats) to unit variance.

    Each output channel is one eigenvector of the patch covariance divided by
    the square root of its eigenvalue (PCA whitening), largest first.
    """
    patches = F.unfold(images.float(), kernel).transpose(1, 2).reshape(-1, images.shape[1] * kernel * kernel)
    patches = patches - patches.mean(0)
    covariance = patches.T @ patches / len(patches)
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance.double())
    filters = (eigenvectors.T / torch.sqrt(eigenvalues.clamp(min=0) + eps)[:, None]).flip(0)
    return filters.reshape(-1, images.shape[1], kernel, kernel).float()


class WhitenedStem(nn.Module):
    """The fixed whitening convolution (odd ``kernel``, size-keeping zero padding), then the learned ``conv``."""

    def __init__(self, conv: nn.Conv2d, kernel: int) -> None:
        super().__init__()
        channels = conv.in_channels * kernel * kernel
        self.register_buffer("whiten", torch.zeros(channels, conv.in_channels, kernel, kernel))
        self.conv = nn.Conv2d(
            channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=conv.bias is not None
        )
        nn.init.kaiming_normal_(self.conv.weight, mode="fan_out", nonlinearity="relu")
        if self.conv.bias is not None:
            nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.conv2d(x, self.whiten.to(x.dtype), padding=self.whiten.shape[-1] // 2))


def whiten_stem(model: nn.Module, kernel: int) -> WhitenedStem:
    """Replace ``model``'s first convolution on the 3-channel image by a :class:`WhitenedStem`, in place; return it.

    The whitening filters start at zero: set them with
    ``stem.whiten.copy_(patch_whitening(...))`` or load a saved state dict.
    """
    for parent in model.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.Conv2d) and child.in_channels == 3:
                stem = WhitenedStem(child, kernel)
                setattr(parent, name, stem)
                return stem
    raise ValueError(f"{type(model).__name__} has no convolution on 3-channel images to whiten")
