"""The data stage mains end to end in a scratch project: params.yaml in, DVC outputs out, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from imagezips import make_image_zip

from convbench.data.fetch import SOURCE_ENV
from convbench.data.format import ORIGINS, load_cache
from convbench.stages import cache as cache_stage
from convbench.stages import split as split_stage
from convbench.stages import unzip as unzip_stage


def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **data: object) -> Path:
    """An empty project folder (the cwd) whose params.yaml has ``data`` as its data section."""
    root = tmp_path / "project"
    root.mkdir()
    monkeypatch.chdir(root)
    (root / "params.yaml").write_text(yaml.safe_dump({"data": data}))
    return root


def test_unzip_cache_split_end_to_end(tmp_path, monkeypatch, capsys):
    layout = {"ds/train/cat": 6, "ds/train/dog": 5, "ds/test/cat": 2, "ds/test/dog": 2}
    extra = {"__MACOSX/ds/train/cat/._000.png": b"\x00", "ds/train/dog/broken.png": b"not png"}
    archive = make_image_zip(tmp_path / "in" / "d.zip", layout, size=10, extra=extra)
    root = project(tmp_path, monkeypatch, archive=str(archive), image_size=8, val_fraction=0.2, test_fraction=0.5)

    assert unzip_stage.main([]) == 0
    out = capsys.readouterr().out
    assert "unzip: 16 images in 2 classes (train 12, test 4); layout pre-split, class root 'ds/'" in out
    assert "ignored 1 entries" in out and "__MACOSX/ds/train/cat/._000.png (OS junk)" in out
    assert json.loads((root / "data/unzip.json").read_text())["counts"]["test"] == {"cat": 2, "dog": 2}

    assert cache_stage.main([]) == 0
    out = capsys.readouterr().out
    assert "cache: 15 images at 8px" in out and "1 skipped" in out and "broken.png" in out
    cache = load_cache(root / "data/cache.pt")
    assert cache.images.shape == (15, 3, 8, 8) and cache.skipped[0][0] == "train/dog/broken.png"
    assert (root / "reports/dataset.md").is_file() and (root / "reports/dataset/samples.png").is_file()
    assert (root / "reports/dataset/class_means.png").is_file()

    assert split_stage.main([]) == 0
    assert "split: train 9, val 2, test 4 (test from the archive's folders)" in capsys.readouterr().out
    first = (root / "data/split.json").read_bytes()
    split = json.loads(first)
    assert split["test"] == [i for i, o in enumerate(cache.origin.tolist()) if ORIGINS[o] == "test"]

    assert unzip_stage.main([]) == 0 and cache_stage.main([]) == 0 and split_stage.main([]) == 0
    again = load_cache(root / "data/cache.pt")
    assert torch.equal(again.images, cache.images) and again.files == cache.files
    assert (root / "data/split.json").read_bytes() == first


def test_unzip_stage_fetches_the_default_archive_from_the_environment(tmp_path, monkeypatch, capsys):
    local = make_image_zip(tmp_path / "shared" / "cifar10.zip", {"cifar10/train/a": 2, "cifar10/train/b": 2}, size=8)
    monkeypatch.setenv(SOURCE_ENV, str(local))
    root = project(tmp_path, monkeypatch, image_size=8)
    assert unzip_stage.main([]) == 0
    assert (root / "data/cifar10.zip").read_bytes() == local.read_bytes()
    assert sorted(p.name for p in (root / "data/images/train").iterdir()) == ["a", "b"]


def test_stage_errors_are_one_line(tmp_path, monkeypatch, capsys):
    archive = make_image_zip(tmp_path / "in" / "d.zip", {"cat": 2, "dog": 2}, size=8, extra={"../evil.png": b"x"})
    project(tmp_path, monkeypatch, archive=str(archive), image_size=8)
    for main, name, words in (
        (unzip_stage.main, "unzip", "unsafe"),
        (cache_stage.main, "cache", "run the unzip stage"),
        (split_stage.main, "split", "dvc repro cache"),
    ):
        assert main([]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"convbench {name}: error: ") and words in err and err.count("\n") == 1
    assert not (tmp_path / "project" / "data").exists() and not (tmp_path / "evil.png").exists()


@pytest.mark.parametrize(
    ("limits", "refused_by"),
    [({}, "data.max_ratio"), ({"max_ratio": 5000, "max_file_bytes": 1 << 20}, "data.max_file_bytes"),
     ({"max_ratio": 5000}, None)],
    ids=["ratio", "file-bytes", "raised"],
)
def test_unzip_stage_applies_the_per_image_limits(tmp_path, monkeypatch, capsys, limits, refused_by):
    flat = bytes(2 << 20)  # deflates about 1000:1
    archive = make_image_zip(tmp_path / "in" / "d.zip", {"cat": 2, "dog": 2}, size=8, extra={"cat/flat.png": flat})
    root = project(tmp_path, monkeypatch, archive=str(archive), image_size=8, **limits)
    if refused_by:
        assert unzip_stage.main([]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "'cat/flat.png' declares" in err and f"over {refused_by} = " in err
        assert not (root / "data").exists()
    else:
        assert unzip_stage.main([]) == 0
        assert (root / "data/images/all/cat/flat.png").read_bytes() == flat
