"""The trained-model file ``models/<family>.pt``: weights plus what inference needs to rebuild and feed them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from convbench.data.format import Cache, atomic_torch_save
from convbench.errors import ConvbenchError


def save_trained(
    path: Path,
    model: nn.Module,
    *,
    family: str,
    config: dict[str, Any],
    cache: Cache,
    best_epoch: int,
    mlflow_run_id: str | None,
    whiten: int = 0,
) -> None:
    """Write the contract's weights file: CPU, fp32, NCHW-contiguous tensors, loadable with ``weights_only``.

    ``whiten`` is the patch side of the model's :class:`~convbench.models.whiten.WhitenedStem` (0: none), which
    :func:`load_trained` needs to rebuild the same network.
    """
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    atomic_torch_save(
        {
            "state_dict": state,
            "family": family,
            "config": dict(config),
            "num_classes": cache.num_classes,
            "classes": list(cache.classes),
            "mean": [float(v) for v in cache.mean],
            "std": [float(v) for v in cache.std],
            "image_size": cache.image_size,
            "best_epoch": best_epoch,
            "mlflow_run_id": mlflow_run_id,
            "whiten": whiten,
        },
        path,
    )


def load_trained(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model saved by the train stage, in eval mode on ``device``; also return the file's metadata.

    Normalise inputs as ``(uint8 / 255 - meta["mean"]) / meta["std"]`` at
    ``meta["image_size"]`` pixels.
    """
    from convbench.models import create_model
    from convbench.models.whiten import whiten_stem

    path = Path(path)
    if not path.is_file():
        raise ConvbenchError(f"{path}: no trained model; run `dvc repro` (or `convbench train <family>`) first")
    meta = torch.load(path, map_location="cpu", weights_only=True)
    model = create_model(meta["family"], meta["num_classes"], **meta["config"])
    if meta.get("whiten", 0):
        whiten_stem(model, meta["whiten"])
    model.load_state_dict(meta.pop("state_dict"))
    return model.to(device).eval(), meta
