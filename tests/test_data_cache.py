"""The cache stage's pure functions: decoding, RGB conversion, statistics, skipped files, the dataset report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from imagezips import image_bytes, make_image, make_image_zip
from PIL import Image

from convbench.data import cache as cache_mod
from convbench.data.cache import build_cache
from convbench.data.dataset_report import class_means, write_dataset_report
from convbench.data.format import ORIGINS, load_cache, save_cache
from convbench.data.unzip import unzip_archive
from convbench.errors import ConvbenchError


def unzipped(tmp_path: Path, layout: dict[str, int], **zip_args) -> tuple[Path, Path]:
    """Make a zip from ``layout`` and extract it; return (images folder, manifest)."""
    zip_path = make_image_zip(tmp_path / "d.zip", layout, **zip_args)
    images, manifest = tmp_path / "data" / "images", tmp_path / "data" / "unzip.json"
    unzip_archive(zip_path, images, manifest, max_files=10_000, max_bytes=1 << 30)
    return images, manifest


def source_pixels(images: Path, rel: str) -> np.ndarray:
    """The extracted file as Pillow decodes it, without any conversion."""
    with Image.open(images / rel) as img:
        return np.asarray(img)


def test_png_at_image_size_round_trips_exactly(tmp_path):
    images, manifest = unzipped(tmp_path, {"top/dog": 2, "top/cat": 3}, size=12, extra={"top/notes.txt": b"x"})
    cache = build_cache(images, manifest, 12, workers=1)
    assert cache.images.dtype == torch.uint8 and cache.images.shape == (5, 3, 12, 12)
    assert cache.classes == ["cat", "dog"]
    assert cache.files == [f"all/cat/{i:03d}.png" for i in range(3)] + [f"all/dog/{i:03d}.png" for i in range(2)]
    assert cache.labels.tolist() == [0, 0, 0, 1, 1] and cache.labels.dtype == torch.int64
    assert cache.onehot.dtype == torch.uint8 and cache.onehot.tolist() == [[1, 0]] * 3 + [[0, 1]] * 2
    assert cache.counts.tolist() == [3, 2] and cache.counts.dtype == torch.int64
    assert cache.origin.tolist() == [ORIGINS.index("all")] * 5
    assert cache.ignored == ["top/notes.txt"] and cache.skipped == []
    for i, rel in enumerate(cache.files):
        np.testing.assert_array_equal(cache.images[i].numpy(), source_pixels(images, rel).transpose(2, 0, 1))


def _white_composite(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    a = alpha.astype(np.float64)[..., None] / 255.0
    return rgb.astype(np.float64) * a + 255.0 * (1.0 - a)


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "LA", "I;16"])
def test_png_modes_decode_to_rgb(tmp_path, mode):
    images, manifest = unzipped(tmp_path, {"cat": 2, "dog": 1}, size=10, mode=mode, ext=".PNG")
    cache = build_cache(images, manifest, 10, workers=1)
    for i, rel in enumerate(cache.files):
        got = cache.images[i].numpy().transpose(1, 2, 0).astype(np.float64)
        with Image.open(images / rel) as img:
            assert img.mode == mode
            src = np.asarray(img)
            if mode == "L":
                expected = np.repeat(src[..., None], 3, axis=2)
            elif mode == "P":
                palette = np.array(img.getpalette()[: 3 * 256]).reshape(-1, 3)
                expected = palette[src]
            elif mode == "RGBA":
                expected = _white_composite(src[..., :3], src[..., 3])
            elif mode == "LA":
                expected = _white_composite(np.repeat(src[..., :1], 3, axis=2), src[..., 1])
            else:
                expected = np.repeat((src / 257.0)[..., None], 3, axis=2)
        np.testing.assert_allclose(got, expected, atol=1.0)


def test_palette_transparency_becomes_white(tmp_path):
    img = make_image(8, "P", colour=(10, 200, 30), seed=3)
    index = np.asarray(img)
    img.info["transparency"] = int(index[0, 0])
    extra = {"cat/t.png": image_bytes(img, "PNG", transparency=int(index[0, 0]))}
    images, manifest = unzipped(tmp_path, {"dog": 1}, size=8, extra=extra)
    cache = build_cache(images, manifest, 8, workers=1)
    got = cache.images[cache.files.index("all/cat/t.png")].numpy().transpose(1, 2, 0)
    transparent = index == index[0, 0]
    assert (got[transparent] == 255).all()
    palette = np.array(img.getpalette()).reshape(-1, 3)
    np.testing.assert_array_equal(got[~transparent], palette[index[~transparent]])


def test_jpeg_decodes_close_to_the_source_and_big_images_are_resized(tmp_path):
    small = make_image(16, colour=(200, 40, 90), seed=1, noise=6)
    big = make_image((64, 40), colour=(30, 90, 220), seed=2, noise=6)
    extra = {
        "cat/small.JPG": image_bytes(small, "JPEG", quality=95),
        "dog/big.jpeg": image_bytes(big, "JPEG", quality=95),
    }
    images, manifest = unzipped(tmp_path, {}, extra=extra)
    cache = build_cache(images, manifest, 16, workers=1)
    assert cache.files == ["all/cat/small.JPG", "all/dog/big.jpeg"]
    got_small = cache.images[0].numpy().transpose(1, 2, 0)
    np.testing.assert_array_equal(got_small, source_pixels(images, "all/cat/small.JPG"))
    assert np.abs(got_small.astype(int) - np.asarray(small).astype(int)).mean() < 4
    reference = np.asarray(big.resize((16, 16), Image.Resampling.BILINEAR)).astype(int)
    assert np.abs(cache.images[1].numpy().transpose(1, 2, 0).astype(int) - reference).mean() < 4


def test_corrupt_files_are_skipped_and_listed(tmp_path):
    png = image_bytes(make_image(8), "PNG")
    extra = {"cat/bad.jpg": b"certainly not a jpeg", "dog/truncated.png": png[: len(png) // 2], "dog/empty.PNG": b""}
    images, manifest = unzipped(tmp_path, {"cat": 2, "dog": 2}, size=8, extra=extra)
    cache = build_cache(images, manifest, 8, workers=1)
    assert sorted(p for p, _ in cache.skipped) == ["all/cat/bad.jpg", "all/dog/empty.PNG", "all/dog/truncated.png"]
    assert all(reason for _, reason in cache.skipped)
    assert len(cache.labels) == len(cache.files) == cache.images.shape[0] == 4
    assert cache.counts.tolist() == [2, 2]


def test_a_class_with_only_corrupt_files_fails(tmp_path):
    images, manifest = unzipped(tmp_path, {"cat": 2}, size=8, extra={"dog/a.png": b"junk", "dog/b.jpg": b"junk"})
    with pytest.raises(ConvbenchError, match="dog have no decodable images"):
        build_cache(images, manifest, 8, workers=1)


@pytest.mark.parametrize("change", ["delete", "append", "add"])
def test_a_tree_changed_after_unzip_is_refused(tmp_path, change):
    """DVC no longer hashes data/images, so the cache stage checks it against unzip.json itself."""
    images, manifest = unzipped(tmp_path, {"cat": 2, "dog": 2}, size=8)
    one = images / "all/cat/000.png"
    if change == "delete":
        one.unlink()
    elif change == "append":
        one.write_bytes(one.read_bytes() + b"\0")
    else:
        (images / "all/dog/new.png").write_bytes(one.read_bytes())
    with pytest.raises(ConvbenchError, match=r"changed since, so extract it again: dvc repro -f unzip"):
        build_cache(images, manifest, 8, workers=1)


def test_missing_manifest_says_to_run_unzip(tmp_path):
    with pytest.raises(ConvbenchError, match="run the unzip stage"):
        build_cache(tmp_path / "images", tmp_path / "unzip.json", 8)


def test_parallel_decoding_matches_serial_and_statistics_match_numpy(tmp_path, monkeypatch):
    extra = {"b/zz_corrupt.png": b"\x89PNG broken", "a/005_corrupt.jpg": b"nope"}
    images, manifest = unzipped(tmp_path, {"a": 7, "b": 6, "c": 5}, size=(12, 9), extra=extra)
    serial = build_cache(images, manifest, 8, workers=1)
    monkeypatch.setattr(cache_mod, "CHUNK_IMAGES", 3)
    parallel = build_cache(images, manifest, 8, workers=2)
    assert torch.equal(serial.images, parallel.images) and serial.images.shape == (18, 3, 8, 8)
    assert serial.files == parallel.files and serial.skipped == parallel.skipped and len(serial.skipped) == 2
    assert torch.equal(serial.labels, parallel.labels)
    pixels = parallel.images.numpy().astype(np.float64) / 255.0
    np.testing.assert_allclose(parallel.mean.numpy(), pixels.mean(axis=(0, 2, 3)), atol=1e-6)
    np.testing.assert_allclose(parallel.std.numpy(), pixels.std(axis=(0, 2, 3)), atol=1e-6)
    assert parallel.mean.dtype == parallel.std.dtype == torch.float32


def test_presplit_origins_and_order(tmp_path):
    layout = {"cifar/test/cat": 1, "cifar/test/dog": 1, "cifar/train/cat": 2, "cifar/train/dog": 2, "cifar/val/dog": 1}
    images, manifest = unzipped(tmp_path, layout, size=8)
    cache = build_cache(images, manifest, 8, workers=1)
    assert cache.files == [
        "train/cat/000.png", "train/cat/001.png", "train/dog/000.png", "train/dog/001.png",
        "val/dog/000.png", "test/cat/000.png", "test/dog/000.png",
    ]
    assert [ORIGINS[o] for o in cache.origin.tolist()] == [f.split("/")[0] for f in cache.files]
    assert cache.labels.tolist() == [0, 0, 1, 1, 1, 0, 1]


def test_cache_file_round_trips(tmp_path):
    images, manifest = unzipped(tmp_path, {"cat": 2, "dog": 2}, size=8, extra={"dog/x.png": b"bad", ".DS_Store": b""})
    cache = build_cache(images, manifest, 8, workers=1)
    save_cache(tmp_path / "cache.pt", cache)
    loaded = load_cache(tmp_path / "cache.pt")
    for field in ("images", "labels", "onehot", "mean", "std", "counts", "origin"):
        assert torch.equal(getattr(loaded, field), getattr(cache, field)), field
    assert (loaded.classes, loaded.files, loaded.skipped, loaded.ignored) == (
        cache.classes, cache.files, cache.skipped, cache.ignored)
    assert loaded.image_size == 8 and loaded.num_classes == 2


def test_dataset_report(tmp_path):
    layout = {"train/cat": 3, "train/dog": 2, "test/cat": 1, "test/dog": 1}
    images, manifest = unzipped(tmp_path, layout, size=8, extra={"train/dog/bad.png": b"x", "train/a.txt": b"x"})
    cache = build_cache(images, manifest, 8, workers=1)
    reports = tmp_path / "reports"
    write_dataset_report(cache, reports / "dataset.md", reports / "dataset")
    text = (reports / "dataset.md").read_text()
    assert "| class | train | test | total |" in text
    assert "| cat | 3 | 1 | 4 |" in text and "| dog | 2 | 1 | 3 |" in text and "| **total** | 5 | 2 | 7 |" in text
    assert "## Skipped files (1)" in text and "`train/dog/bad.png`" in text
    assert "## Ignored archive entries (1)" in text and "`train/a.txt`" in text
    assert "](dataset/samples.png)" in text and "](dataset/class_means.png)" in text
    for name in ("samples.png", "class_means.png"):
        with Image.open(reports / "dataset" / name) as img:
            assert img.format == "PNG" and img.width > 100
    means = class_means(cache)
    pixels = cache.images.numpy().astype(np.float64) / 255.0
    for c in range(2):
        expected = pixels[cache.labels.numpy() == c].mean(axis=0).transpose(1, 2, 0)
        np.testing.assert_allclose(means[c], expected, atol=1e-12)
