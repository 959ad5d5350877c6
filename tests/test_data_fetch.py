"""ensure_archive: an existing archive, a local copy, a (faked) download, clear errors; never the network."""

from __future__ import annotations

import stat
import subprocess
import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from imagezips import make_image_zip
from PIL import Image

from convbench.data import fetch
from convbench.data.cache import build_cache
from convbench.data.fetch import SOURCE_ENV, ensure_archive, track_archive, write_class_zip
from convbench.data.unzip import unzip_archive
from convbench.errors import ConvbenchError
from convbench.params import DataParams
from convbench.stages import fetch as fetch_stage

DEFAULT = Path("data/cifar10.zip")


@pytest.fixture
def downloads(monkeypatch, tmp_path) -> list[Path]:
    """Run in an empty project folder where downloading fails; returns the paths a download was asked for."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(SOURCE_ENV, raising=False)
    calls: list[Path] = []

    def offline(dest: Path) -> Path:
        calls.append(Path(dest))
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(fetch, "download_cifar10", offline)
    return calls


@pytest.fixture
def local_zip(tmp_path) -> Path:
    return make_image_zip(tmp_path / "elsewhere" / "copy.zip", {"cifar10/train/a": 1, "cifar10/train/b": 1}, size=8)


def test_an_existing_archive_is_used_as_is(downloads, local_zip, monkeypatch):
    monkeypatch.setenv(SOURCE_ENV, str(local_zip))
    DEFAULT.parent.mkdir()
    DEFAULT.write_bytes(b"already here")
    assert ensure_archive(DataParams()) == DEFAULT
    assert DEFAULT.read_bytes() == b"already here" and downloads == []


def test_the_environment_variable_copy_is_used_offline(downloads, local_zip, monkeypatch):
    monkeypatch.setenv(SOURCE_ENV, str(local_zip))
    assert ensure_archive(DataParams()) == DEFAULT
    assert DEFAULT.read_bytes() == local_zip.read_bytes()
    assert stat.S_IMODE(DEFAULT.stat().st_mode) == 0o644
    assert downloads == [] and [p.name for p in DEFAULT.parent.iterdir()] == ["cifar10.zip"]


@pytest.mark.parametrize(("content", "message"), [(None, "no such file"), (b"plain text", "not a zip file")])
def test_a_bad_environment_variable_copy_is_an_error(downloads, tmp_path, monkeypatch, content, message):
    source = tmp_path / "given.zip"
    if content is not None:
        source.write_bytes(content)
    monkeypatch.setenv(SOURCE_ENV, str(source))
    with pytest.raises(ConvbenchError, match=message):
        ensure_archive(DataParams())
    assert not DEFAULT.exists() and downloads == []


def test_a_failed_download_says_how_to_provide_the_archive(downloads):
    with pytest.raises(ConvbenchError) as err:
        ensure_archive(DataParams())
    message = str(err.value)
    assert "download failed" in message and SOURCE_ENV in message and "--from" in message and "\n" not in message
    assert downloads == [DEFAULT] and not DEFAULT.exists()


def test_a_successful_download_is_returned(downloads, monkeypatch):
    monkeypatch.setattr(fetch, "download_cifar10", lambda dest: make_image_zip(dest, {"a": 1, "b": 1}, size=8))
    assert ensure_archive(DataParams()) == DEFAULT and zipfile.is_zipfile(DEFAULT)


def test_a_missing_custom_archive_is_an_error_and_never_downloaded(downloads, local_zip, monkeypatch):
    monkeypatch.setenv(SOURCE_ENV, str(local_zip))
    with pytest.raises(ConvbenchError, match="mine.zip: archive not found.*data.archive"):
        ensure_archive(DataParams(archive="data/mine.zip"))
    assert downloads == [] and not Path("data/mine.zip").exists()


def test_an_explicit_source_is_copied_to_any_archive_name(downloads, local_zip):
    assert ensure_archive(DataParams(archive="data/mine.zip"), local_zip) == Path("data/mine.zip")
    assert Path("data/mine.zip").read_bytes() == local_zip.read_bytes()


def test_downloaded_arrays_are_written_in_the_local_copy_layout(tmp_path):
    rng = np.random.default_rng(0)
    classes = ["plane", "car", "bird"]

    def fake(n: int, seed: int) -> SimpleNamespace:
        targets = [i % 3 for i in range(n)]
        base = np.array([[200, 30, 30], [30, 200, 30], [30, 30, 200]], dtype=np.int16)[targets][:, None, None, :]
        data = np.clip(base + rng.integers(-5, 6, (n, 32, 32, 3)), 0, 255).astype(np.uint8)
        return SimpleNamespace(data=data, targets=targets, classes=classes)

    train, test = fake(7, 0), fake(3, 1)
    archive = write_class_zip(tmp_path / "cifar10.zip", {"train": train, "test": test})
    with zipfile.ZipFile(archive) as zf:
        names = set(zf.namelist())
    assert {"cifar10/train/plane/0000.png", "cifar10/train/plane/0002.png", "cifar10/train/bird/0001.png",
            "cifar10/test/car/0000.png"} <= names and len(names) == 10
    images, manifest = tmp_path / "images", tmp_path / "unzip.json"
    plan = unzip_archive(archive, images, manifest, max_files=100, max_bytes=1 << 20)
    assert plan.layout == "pre-split" and plan.root == "cifar10/"
    cache = build_cache(images, manifest, 32, workers=1)
    assert cache.classes == ["bird", "car", "plane"]
    first_plane = cache.files.index("train/plane/0000.png")
    assert np.array_equal(cache.images[first_plane].numpy().transpose(1, 2, 0), train.data[0])


def test_downloaded_images_are_written_losslessly_as_png(tmp_path):
    """Every image read back from the zip has exactly the dataset's pixels: a download is never re-encoded lossily."""
    rng = np.random.default_rng(1)
    classes = ["cat", "dog"]
    splits = {
        split: SimpleNamespace(data=rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
                               targets=[int(t) for t in rng.integers(0, 2, n)], classes=classes)
        for split, n in (("train", 5), ("test", 3))
    }
    archive = write_class_zip(tmp_path / "cifar10.zip", splits)
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        assert len(infos) == 8 and all(i.filename.endswith(".png") for i in infos)
        assert all(i.compress_type == zipfile.ZIP_STORED for i in infos)
        for split, ds in splits.items():
            seen = [0, 0]
            for pixels, target in zip(ds.data, ds.targets):
                with zf.open(f"cifar10/{split}/{classes[target]}/{seen[target]:04d}.png") as fh, Image.open(fh) as img:
                    assert img.format == "PNG" and img.mode == "RGB"
                    assert np.array_equal(np.asarray(img), pixels)
                seen[target] += 1


def test_fetch_stage_main(downloads, local_zip, capsys):
    Path("params.yaml").write_text("data:\n  image_size: 8\n")
    assert fetch_stage.main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("convbench fetch: error: ") and err.count("\n") == 1
    assert fetch_stage.main(["--from", str(local_zip)]) == 0
    assert DEFAULT.read_bytes() == local_zip.read_bytes()
    assert "ready" in capsys.readouterr().out


def test_track_archive_dvc_adds_it_once_and_stages_its_dvc_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What `./run.sh repro` does before `dvc repro`, so that DVC's queue gets the archive from the cache."""
    monkeypatch.chdir(tmp_path)
    archive = Path("data/own.zip")
    archive.parent.mkdir()
    archive.write_bytes(b"zip bytes")
    assert "not DVC-tracked (not a git repository)" in track_archive(archive)
    for command in (["git", "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"]):
        subprocess.run(command, check=True)
    assert track_archive(archive).startswith("dvc add data/own.zip")
    staged = subprocess.run(["git", "diff", "--cached", "--name-only"], capture_output=True, text=True).stdout
    assert "data/own.zip.dvc" in staged.split()
    assert track_archive(archive) == "data/own.zip is DVC-tracked (data/own.zip.dvc)"
