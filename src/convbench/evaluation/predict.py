"""``convbench predict IMAGE...``: classify image files with a family's best weights or a registered model.

Images go through exactly the cache stage's decoding (Pillow, RGB, square
resize to the trained image size: :func:`convbench.data.cache.decode_image`) and
the training normalisation, so a file scores as its cached copy would. With
``--model-uri`` the model is loaded as an MLflow pyfunc, the same object
``mlflow models serve`` runs, so both give the same probabilities for the same
input.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from convbench.data.cache import decode_image
from convbench.errors import ConvbenchError, run_stage
from convbench.families import FAMILIES
from convbench.paths import Layout
from convbench.training.augment import Normalizer

PREPROCESS_KEYS = ("classes", "mean", "std", "image_size")


@dataclass(frozen=True)
class Prediction:
    """One image's class probabilities (in class order) and its top-k ``(class, probability)`` pairs."""

    path: str
    probabilities: np.ndarray
    top: list[tuple[str, float]]


def preprocess(paths: Sequence[str | Path], image_size: int, mean: Sequence[float],
               std: Sequence[float]) -> torch.Tensor:
    """The float32 (N, 3, S, S) batch the model sees: cache decoding, then ``(x/255 - mean)/std``."""
    arrays = []
    for path in paths:
        try:
            arrays.append(decode_image(path, image_size))
        except (OSError, ValueError, SyntaxError) as exc:  # what Pillow raises for missing or corrupt files
            raise ConvbenchError(f"cannot read image {path}: {exc}") from None
    batch = torch.from_numpy(np.stack(arrays))
    normalize = Normalizer(torch.tensor(mean), torch.tensor(std), torch.device("cpu"))
    return normalize(batch)


def classify(paths: Sequence[str | Path], logits_of: Callable[[torch.Tensor], Any], meta: dict[str, Any],
             top_k: int) -> list[Prediction]:
    """Softmax probabilities and top-k classes of each image; ``logits_of`` maps the batch to (N, C) logits."""
    x = preprocess(paths, int(meta["image_size"]), meta["mean"], meta["std"])
    logits = torch.as_tensor(np.asarray(logits_of(x)), dtype=torch.float32)
    classes = list(meta["classes"])
    if logits.shape != (len(paths), len(classes)):
        raise ConvbenchError(f"the model returned shape {tuple(logits.shape)} for {len(paths)} image(s) and "
                             f"{len(classes)} classes: the model and its preprocessing metadata do not match")
    probabilities = logits.softmax(dim=1).numpy()
    k = max(1, min(top_k, len(classes)))
    results = []
    for path, p in zip(paths, probabilities):
        order = np.argsort(-p, kind="stable")[:k]
        results.append(Prediction(str(path), p, [(classes[i], float(p[i])) for i in order]))
    return results


def weights_predictor(path: Path) -> tuple[Callable[[torch.Tensor], Any], dict[str, Any]]:
    """A trained ``models/<family>.pt``: fp32 on the CPU, plus its preprocessing metadata."""
    from convbench.models.weights import load_trained

    model, meta = load_trained(path)

    def logits_of(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return model(x)

    return logits_of, meta


def mlflow_predictor(uri: str, fallback_weights: Path) -> tuple[Callable[[torch.Tensor], Any], dict[str, Any]]:
    """An MLflow model as a pyfunc (what ``mlflow models serve`` runs).

    Preprocessing metadata comes from the logged model's metadata when it has
    classes/mean/std/image_size, else from the family's local weights file.
    """
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow
    from mlflow.exceptions import MlflowException

    from convbench.tracking.store import tracking_uri

    mlflow.set_tracking_uri(tracking_uri())
    try:
        model = mlflow.pyfunc.load_model(uri)
    except (MlflowException, OSError) as exc:
        raise ConvbenchError(f"cannot load {uri} from {tracking_uri()}: {str(exc).splitlines()[0]}; "
                             "train the family first (it registers the model) or check the name/alias") from None
    meta = dict(model.metadata.metadata or {})
    if not all(key in meta for key in PREPROCESS_KEYS):
        if not fallback_weights.is_file():
            raise ConvbenchError(f"{uri} carries no preprocessing metadata and {fallback_weights} is missing; "
                                 "pass --weights or run `dvc pull` / `dvc repro` to get the trained weights")
        stored = torch.load(fallback_weights, map_location="cpu", weights_only=True)
        meta = {key: stored[key] for key in PREPROCESS_KEYS}
    return (lambda x: model.predict(x.numpy())), meta


def family_of_model(uri: str | None, family: str | None) -> str:
    """``--family``, else the family in a ``models:/convbench-<family>...`` URI, else ``resnext``."""
    if family:
        return family
    if uri and uri.startswith("models:/convbench-"):
        name = uri.removeprefix("models:/convbench-").split("@")[0].split("/")[0]
        if name in FAMILIES:
            return name
    return "resnext"


def format_prediction(p: Prediction) -> str:
    return f"{p.path}: " + ", ".join(f"{name} {100 * prob:.1f} %" for name, prob in p.top)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="convbench predict", description="Classify image files with a trained "
                                     "family's best weights (default) or a registered MLflow model.")
    parser.add_argument("images", nargs="+", metavar="IMAGE")
    parser.add_argument("--family", choices=FAMILIES, help="family whose models/<family>.pt to use (default resnext)")
    parser.add_argument("--weights", type=Path, help="trained weights file (default models/<family>.pt)")
    parser.add_argument("--model-uri", help="MLflow model, e.g. models:/convbench-resnext@current")
    parser.add_argument("--top-k", type=int, default=3, help="classes to print per image (default 3)")
    args = parser.parse_args(argv)

    def body() -> None:
        family = family_of_model(args.model_uri, args.family)
        weights = args.weights or Layout().weights(family)
        if args.model_uri:
            logits_of, meta = mlflow_predictor(args.model_uri, weights)
        else:
            if not weights.is_file():
                raise ConvbenchError(f"{weights} is missing; run `dvc repro train@{family}` (or `convbench train "
                                     f"{family}`) first, or pass --weights/--model-uri")
            logits_of, meta = weights_predictor(weights)
        for prediction in classify(args.images, logits_of, meta, args.top_k):
            print(format_prediction(prediction))

    return run_stage("predict", body)


if __name__ == "__main__":
    raise SystemExit(main())
