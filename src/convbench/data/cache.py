"""Decode every extracted image once into one uint8 tensor file (``data/cache.pt``).

Training then reads a memory-mapped array instead of decoding JPEGs every epoch.
Decoding runs on all cores: workers decode chunks of files into uint8 arrays and
per-channel value histograms, the parent copies them into one preallocated
(N, 3, S, S) uint8 array. The dataset is never held as floats: mean and std come
from the exact 256-bin histograms (float64 sums), so they are exact for any N.

Conversion to RGB: images with transparency (RGBA, LA, PA, or a palette/grey image
with a transparent colour) are composited on white, the way viewers show them,
so hidden colour under transparent pixels cannot leak into the data; 16-bit grey
images are scaled to 8 bits rather than clipped. Every image is resized to a
S x S square (aspect ratio not kept) with bilinear filtering; JPEGs are decoded at
a reduced scale first via ``draft``, which makes large JPEGs far cheaper.
Files Pillow cannot decode are skipped and listed with the reason, never fatal.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from convbench.data.format import ORIGINS, Cache
from convbench.data.unzip import is_image_name
from convbench.errors import ConvbenchError

CHUNK_IMAGES = 256
"""Images per worker task: big enough to amortise inter-process transfer, small enough to balance cores."""

WHITE = (255, 255, 255, 255)


def to_rgb(img: Image.Image) -> Image.Image:
    """``img`` as an RGB image (see the module docstring for transparency and 16-bit rules)."""
    if img.mode.startswith("I;16") or img.mode == "I":
        grey = np.asarray(img).astype(np.int64).clip(0, 65535)
        img = Image.fromarray(((grey * 255 + 32767) // 65535).astype(np.uint8), "L")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, WHITE), rgba).convert("RGB")
    return img if img.mode == "RGB" else img.convert("RGB")


def decode_image(path: str | Path, size: int) -> np.ndarray:
    """The image at ``path`` as a (3, size, size) uint8 array; raises whatever Pillow raises on bad data."""
    with Image.open(path) as img:
        img.draft("RGB", (size, size))
        rgb = to_rgb(img)
        if rgb.size != (size, size):
            rgb = rgb.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
        return np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1)


def decode_chunk(task: tuple[list[str], int]) -> tuple[np.ndarray, list[tuple[int, str]], np.ndarray]:
    """Decode a chunk of files (worker entry point).

    Returns the decoded images in order (failures left out), ``(position, reason)``
    for each failure, and the (3, 256) histogram of channel values of the decoded images.
    """
    paths, size = task
    out = np.empty((len(paths), 3, size, size), dtype=np.uint8)
    failed: list[tuple[int, str]] = []
    k = 0
    for i, path in enumerate(paths):
        try:
            out[k] = decode_image(path, size)
            k += 1
        except Exception as exc:  # noqa: BLE001 - Pillow's plugins raise many types on corrupt data; skip and report
            failed.append((i, f"{type(exc).__name__}: {exc}".strip()))
    good = out[:k]
    hist = np.stack([np.bincount(good[:, c].ravel(), minlength=256) for c in range(3)]).astype(np.int64)
    return good, failed, hist


def list_images(images: Path, classes: list[str]) -> list[tuple[str, int, int]]:
    """``(relative path, origin code, label)`` for every image under ``images``, sorted by origin, class, file."""
    images = Path(images)
    label = {c: i for i, c in enumerate(classes)}
    found: list[tuple[str, int, int]] = []
    for code, origin in enumerate(ORIGINS):
        folder = images / origin
        if not folder.is_dir():
            continue
        for cls_dir in sorted(folder.iterdir()):
            if cls_dir.name not in label:
                raise ConvbenchError(f"{cls_dir}: not a class in the unzip manifest; re-run the unzip stage")
            files = sorted(
                Path(root, f).relative_to(images).as_posix()
                for root, _, names in os.walk(cls_dir)
                for f in names
                if is_image_name(f)
            )
            found.extend((f, code, label[cls_dir.name]) for f in files)
    return found


def check_tree(images: Path, listing: list[tuple[str, int, int]], info: dict) -> None:
    """Refuse a tree that is not what the unzip stage recorded (files deleted, added or rewritten since).

    DVC tracks only ``data/unzip.json``, so it cannot see such edits itself.
    """
    found = (len(listing), sum((images / f).stat().st_size for f, _, _ in listing))
    recorded = (info["files"], info["bytes"])
    if found != recorded:
        raise ConvbenchError(
            f"{images}: {found[0]:,} images, {found[1]:,} bytes, but the unzip stage wrote {recorded[0]:,} and "
            f"{recorded[1]:,}; it changed since, so extract it again: dvc repro -f unzip"
        )


def read_manifest(path: Path) -> dict:
    """``data/unzip.json``, or a one-line error saying to run the unzip stage."""
    try:
        with Path(path).open() as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise ConvbenchError(f"{path}: not found; run the unzip stage first (dvc repro unzip)") from None


def mean_std(hist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and (population) std on the 0..1 scale from (3, 256) value counts."""
    values = np.arange(256, dtype=np.float64) / 255.0
    counts = hist.astype(np.float64)
    n = counts.sum(axis=1)
    mean = counts @ values / n
    var = counts @ values**2 / n - mean**2
    return mean, np.sqrt(np.maximum(var, 0.0))


def decode_all(
    paths: list[str], size: int, workers: int | None = None
) -> tuple[np.ndarray, list[tuple[int, str]], np.ndarray]:
    """Decode ``paths`` in order on ``workers`` processes (default all cores; 1 = in this process).

    Returns the decodable images as one (k, 3, size, size) uint8 array, ``(index, reason)``
    for each file that failed, and the (3, 256) histogram of channel values.
    """
    n = len(paths)
    array = np.empty((n, 3, size, size), dtype=np.uint8)
    failed: list[tuple[int, str]] = []
    hist = np.zeros((3, 256), dtype=np.int64)
    tasks = [(paths[start : start + CHUNK_IMAGES], size) for start in range(0, n, CHUNK_IMAGES)]
    workers = min(workers or os.cpu_count() or 1, len(tasks))
    with ExitStack() as stack:
        mapper = map
        if workers > 1:
            pool = ProcessPoolExecutor(workers)
            stack.callback(pool.shutdown, cancel_futures=True)
            mapper = pool.map
        bar = stack.enter_context(tqdm(total=n, desc="cache", unit="img", disable=None, mininterval=0.5))
        write = 0
        for start, (good, bad, chunk_hist) in zip(range(0, n, CHUNK_IMAGES), mapper(decode_chunk, tasks)):
            array[write : write + len(good)] = good
            write += len(good)
            hist += chunk_hist
            failed.extend((start + pos, reason) for pos, reason in bad)
            bar.update(len(good) + len(bad))
    array.resize((write, 3, size, size), refcheck=False)  # in place: no second copy of the images
    return array, failed, hist


def build_cache(images: Path, manifest: Path, image_size: int, *, workers: int | None = None) -> Cache:
    """Decode every image under ``images`` (the unzip stage's tree) to ``image_size`` and return the :class:`Cache`.

    ``workers`` as in :func:`decode_all`. Raises :class:`ConvbenchError` when a class
    has no decodable image (so also when nothing decodes).
    """
    info = read_manifest(manifest)
    classes: list[str] = info["classes"]
    listing = list_images(images, classes)
    check_tree(Path(images), listing, info)
    array, failed, hist = decode_all([str(Path(images) / f) for f, _, _ in listing], image_size, workers)
    bad = {i for i, _ in failed}
    kept = [item for i, item in enumerate(listing) if i not in bad]
    labels = np.array([label for _, _, label in kept], dtype=np.int64)
    counts = np.bincount(labels, minlength=len(classes)).astype(np.int64)
    lost = [c for c, k in zip(classes, counts) if k == 0]
    if lost:
        raise ConvbenchError(f"class(es) {', '.join(lost)} have no decodable images; replace the corrupt files")
    mean, std = mean_std(hist)
    return Cache(
        images=torch.from_numpy(array),
        labels=torch.from_numpy(labels),
        onehot=torch.from_numpy(np.eye(len(classes), dtype=np.uint8)[labels]),
        classes=list(classes),
        mean=torch.tensor(mean, dtype=torch.float32),
        std=torch.tensor(std, dtype=torch.float32),
        counts=torch.from_numpy(counts),
        origin=torch.tensor([origin for _, origin, _ in kept], dtype=torch.uint8),
        files=[f for f, _, _ in kept],
        skipped=[[listing[i][0], reason] for i, reason in failed],
        ignored=[name for name, _ in info.get("ignored", [])],
    )
