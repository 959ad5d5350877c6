"""The unzip stage's pure function: layouts, hostile archives, junk, and class checks."""

from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from imagezips import (
    add_central_record,
    append_entry,
    image_bytes,
    local_header,
    make_image,
    make_image_zip,
    patch_central_record,
)
from PIL import Image

from convbench.config import ConfigError
from convbench.data.unzip import (
    RATIO_MIN_BYTES,
    LimitExceeded,
    Limits,
    copy_limited,
    extract,
    plan_archive,
    unzip_archive,
)
from convbench.errors import ConvbenchError
from convbench.params import parse_params

BIG = 1 << 30
MIB = 1 << 20


def run_unzip(zip_path: Path, base: Path, *, max_files: int = 10_000, max_bytes: int = BIG, **per_entry: float):
    """Unzip into ``base/data/images``; return the plan, the images folder and the manifest dict.

    ``per_entry`` sets ``max_ratio`` / ``max_file_bytes`` (params.yaml's defaults otherwise).
    """
    images, manifest = base / "data" / "images", base / "data" / "unzip.json"
    plan = unzip_archive(zip_path, images, manifest, max_files=max_files, max_bytes=max_bytes, **per_entry)
    return plan, images, json.loads(manifest.read_text())


def tree(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def all_files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")}


@pytest.mark.parametrize(
    ("layout", "kind", "root", "expected"),
    [
        ({"cat": 2, "dog": 1}, "classes", "", {"all/cat/000.png", "all/cat/001.png", "all/dog/000.png"}),
        ({"cnn_dataset/cat": 2, "cnn_dataset/dog": 1}, "classes", "cnn_dataset/",
         {"all/cat/000.png", "all/cat/001.png", "all/dog/000.png"}),
        ({"a/b/cat": 1, "a/b/dog": 1}, "classes", "a/b/", {"all/cat/000.png", "all/dog/000.png"}),
        ({"train/cat": 2, "train/dog": 1, "test/cat": 1, "test/dog": 1}, "pre-split", "",
         {"train/cat/000.png", "train/cat/001.png", "train/dog/000.png", "test/cat/000.png", "test/dog/000.png"}),
        ({"train/cat": 1, "train/dog": 1, "val/cat": 1, "val/dog": 1, "test/cat": 1, "test/dog": 1}, "pre-split", "",
         {f"{s}/{c}/000.png" for s in ("train", "val", "test") for c in ("cat", "dog")}),
        ({"cifar10/train/cat": 1, "cifar10/train/dog": 2, "cifar10/test/cat": 1, "cifar10/test/dog": 1}, "pre-split",
         "cifar10/",
         {"train/cat/000.png", "train/dog/000.png", "train/dog/001.png", "test/cat/000.png", "test/dog/000.png"}),
        ({"data/Train/cat": 1, "data/Train/dog": 1, "data/Validation/cat": 1, "data/Validation/dog": 1}, "pre-split",
         "data/", {"train/cat/000.png", "train/dog/000.png", "val/cat/000.png", "val/dog/000.png"}),
    ],
    ids=["no-top", "one-top", "two-wrappers", "train-test", "train-val-test", "split-under-top", "aliases"],
)
def test_layouts_normalise_to_origin_class_file(tmp_path, layout, kind, root, expected):
    zip_path = make_image_zip(tmp_path / "d.zip", layout, size=8)
    plan, images, manifest = run_unzip(zip_path, tmp_path)
    assert tree(images) == expected
    assert manifest["layout"] == kind and manifest["root"] == root
    assert manifest["classes"] == ["cat", "dog"]
    for origin, per_class in manifest["counts"].items():
        for cls, n in per_class.items():
            assert n == sum(1 for f in expected if f.startswith(f"{origin}/{cls}/"))
    assert manifest["files"] == len(expected) == len(plan.entries)


def test_extracted_bytes_equal_the_archive_and_order_is_sorted(tmp_path):
    zip_path = make_image_zip(tmp_path / "d.zip", {"top/b": 3, "top/a": 2}, size=8)
    plan, images, manifest = run_unzip(zip_path, tmp_path)
    with zipfile.ZipFile(zip_path) as zf:
        assert (images / "all/b/002.png").read_bytes() == zf.read("top/b/002.png")
        assert manifest["bytes"] == sum(zf.getinfo(e.info.filename).file_size for e in plan.entries)
    assert [e.target for e in plan.entries] == sorted(e.target for e in plan.entries)


def test_subfolders_inside_a_class_are_kept(tmp_path):
    zip_path = make_image_zip(tmp_path / "d.zip", {"cat/indoor": 1, "cat/outdoor": 1, "dog": 1}, size=8)
    _, images, manifest = run_unzip(zip_path, tmp_path)
    assert tree(images) == {"all/cat/indoor/000.png", "all/cat/outdoor/000.png", "all/dog/000.png"}
    assert manifest["counts"] == {"all": {"cat": 2, "dog": 1}}


def test_previous_images_are_replaced(tmp_path):
    stale = tmp_path / "data" / "images" / "all" / "old" / "stale.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")
    _, images, _ = run_unzip(make_image_zip(tmp_path / "d.zip", {"cat": 1, "dog": 1}, size=8), tmp_path)
    assert tree(images) == {"all/cat/000.png", "all/dog/000.png"}
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["images", "unzip.json"]


def test_same_archive_gives_the_same_manifest(tmp_path):
    zip_path = make_image_zip(tmp_path / "d.zip", {"x/cat": 2, "x/dog": 2}, size=8, extra={"x/notes.txt": b"hi"})
    run_unzip(zip_path, tmp_path / "one")
    run_unzip(zip_path, tmp_path / "two")
    assert (tmp_path / "one/data/unzip.json").read_bytes() == (tmp_path / "two/data/unzip.json").read_bytes()


def test_manifest_digest_changes_when_any_image_byte_does(tmp_path):
    """DVC tracks unzip.json in place of the tree, so equal counts and sizes must not hide new content."""
    digests = []
    for name, first in (("a", b"x" * 64), ("b", b"x" * 63 + b"y")):
        with zipfile.ZipFile(tmp_path / f"{name}.zip", "w") as zf:
            zf.writestr("cat/1.png", first)
            zf.writestr("dog/1.png", b"z" * 64)
        _, _, manifest = run_unzip(tmp_path / f"{name}.zip", tmp_path / name)
        digests.append((manifest["files"], manifest["bytes"], manifest["digest"]))
    assert digests[0][:2] == digests[1][:2] and digests[0][2] != digests[1][2]


def test_junk_and_non_images_are_ignored_and_listed(tmp_path):
    extra = {
        "__MACOSX/cnn/cat/._000.png": b"\x00\x05\x16\x07",
        "cnn/cat/._001.png": b"\x00\x05\x16\x07",
        "cnn/.DS_Store": b"\x00\x00\x00\x01Bud1",
        "cnn/dog/Thumbs.db": b"\xd0\xcf",
        "cnn/desktop.ini": b"[.ShellClassInfo]",
        "cnn/README.txt": b"about the data",
        "cnn/cat/notes.TXT": b"note",
        "cnn/stray.png": image_bytes(make_image(8)),
    }
    zip_path = make_image_zip(tmp_path / "d.zip", {"cnn/cat": 2, "cnn/dog": 1}, size=8, extra=extra)
    _, images, manifest = run_unzip(zip_path, tmp_path)
    assert tree(images) == {"all/cat/000.png", "all/cat/001.png", "all/dog/000.png"}
    reasons = dict(manifest["ignored"])
    assert set(reasons) == set(extra)
    assert reasons["cnn/README.txt"] == reasons["cnn/cat/notes.TXT"] == "not an image file"
    assert reasons["cnn/stray.png"] == "not inside a class folder"
    assert {reasons[k] for k in ("__MACOSX/cnn/cat/._000.png", "cnn/.DS_Store", "cnn/dog/Thumbs.db")} == {"OS junk"}


@pytest.mark.parametrize("ext", [".JPG", ".PNG", ".Jpeg", ".tiff", ".bmp", ".webp", ".gif", ".ppm"])
def test_image_extensions_match_in_any_case(tmp_path, ext):
    fmt = {".JPG": "JPEG", ".PNG": "PNG", ".Jpeg": "JPEG", ".tiff": "TIFF", ".bmp": "BMP", ".webp": "WEBP",
           ".gif": "GIF", ".ppm": "PPM"}[ext]
    zip_path = make_image_zip(tmp_path / "d.zip", {"cat": 1, "dog": 1}, size=8, fmt=fmt, ext=ext)
    _, images, _ = run_unzip(zip_path, tmp_path)
    assert tree(images) == {f"all/cat/000{ext}", f"all/dog/000{ext}"}


@pytest.mark.parametrize(
    "entry",
    ["../evil.png", "cat/../../evil.png", "..\\evil.png", "C:/evil.png", "ABSOLUTE", "SYMLINK"],
)
def test_unsafe_entries_are_refused_before_writing_anything(tmp_path, entry):
    outside = tmp_path / "outside" / "evil.png"
    extra, symlinks = {}, {}
    if entry == "ABSOLUTE":
        entry = str(outside)
    if entry == "SYMLINK":
        symlinks["cat/link.png"] = str(outside)
    else:
        extra[entry] = image_bytes(make_image(8))
    zip_path = make_image_zip(tmp_path / "in" / "d.zip", {"cat": 2, "dog": 2}, size=8, extra=extra, symlinks=symlinks)
    work = tmp_path / "work"
    work.mkdir()
    before = all_files(tmp_path)
    with pytest.raises(ConvbenchError, match="unsafe"):
        run_unzip(zip_path, work)
    assert all_files(tmp_path) == before
    assert not outside.exists()


def test_too_many_files_is_refused(tmp_path):
    zip_path = make_image_zip(tmp_path / "d.zip", {"cat": 3, "dog": 3}, size=8)
    with pytest.raises(ConvbenchError, match=r"data\.max_files = 5"):
        run_unzip(zip_path, tmp_path, max_files=5)
    assert not (tmp_path / "data").exists()
    run_unzip(zip_path, tmp_path, max_files=6)


def test_declared_size_over_the_limit_is_refused(tmp_path):
    zip_path = make_image_zip(tmp_path / "d.zip", {"cat": 2, "dog": 2}, size=8)
    with zipfile.ZipFile(zip_path) as zf:
        declared = sum(i.file_size for i in zf.infolist())
    with pytest.raises(ConvbenchError, match=r"declared uncompressed size.*data\.max_bytes"):
        run_unzip(zip_path, tmp_path, max_bytes=declared - 1)
    assert not (tmp_path / "data").exists()
    run_unzip(zip_path, tmp_path, max_bytes=declared)


def _lie_about_size(zip_path: Path, name: str, fake_size: int) -> None:
    """Rewrite ``name``'s uncompressed size in its local header and its central-directory record."""
    raw = bytearray(zip_path.read_bytes())
    with zipfile.ZipFile(zip_path) as zf:
        local, pos = zf.getinfo(name).header_offset, zf.start_dir
    struct.pack_into("<I", raw, local + 22, fake_size)
    while raw[pos : pos + 4] == b"PK\x01\x02":
        n_name, n_extra, n_comment = struct.unpack_from("<HHH", raw, pos + 28)
        if raw[pos + 46 : pos + 46 + n_name].decode() == name:
            struct.pack_into("<I", raw, pos + 24, fake_size)
        pos += 46 + n_name + n_extra + n_comment
    zip_path.write_bytes(bytes(raw))


def test_an_entry_larger_than_its_header_says_is_refused(tmp_path):
    bomb = b"\x00" * 200_000  # deflates to a few hundred bytes
    zip_path = make_image_zip(tmp_path / "d.zip", {"cat": 1, "dog": 1}, size=8, extra={"cat/bomb.png": bomb})
    _lie_about_size(zip_path, "cat/bomb.png", 100)
    with zipfile.ZipFile(zip_path) as zf:
        assert zf.getinfo("cat/bomb.png").file_size == 100
    with pytest.raises(ConvbenchError, match="cat/bomb.png"):
        run_unzip(zip_path, tmp_path, max_bytes=10_000)
    assert all_files(tmp_path / "data") == set()  # the temporary tree is gone too


def test_a_highly_compressed_image_is_refused_before_extracting(tmp_path):
    zip_path = make_image_zip(tmp_path / "d.zip", {"cnn_dataset/cats": 2, "cnn_dataset/dogs": 2}, size=8)
    append_entry(zip_path, "cnn_dataset/cats/huge.png", bytes(MIB), repeat=64)
    with zipfile.ZipFile(zip_path) as zf:
        info = zf.getinfo("cnn_dataset/cats/huge.png")
    ratio = info.file_size / info.compress_size
    # Under data.max_bytes and data.max_file_bytes: only the ratio rule can catch it.
    assert info.file_size == 64 * MIB and ratio > 100
    with pytest.raises(ConvbenchError, match=(
        rf"d\.zip: entry 'cnn_dataset/cats/huge\.png' declares {64 * MIB:,} bytes from {info.compress_size:,} "
        rf"compressed, a ratio of {ratio:,.0f}:1, over data\.max_ratio = 100 .*raise data\.max_ratio in params\.yaml"
    )) as refused:
        run_unzip(zip_path, tmp_path)
    assert "\n" not in str(refused.value)
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    ("payload", "refused"),
    [
        (image_bytes(Image.new("RGB", (512, 512), (40, 90, 200)), "BMP"), False),
        (bytes(RATIO_MIN_BYTES), False),
        (bytes(RATIO_MIN_BYTES + 1), True),
    ],
    ids=["flat-bmp", "at-the-floor", "past-the-floor"],
)
def test_the_ratio_rule_skips_small_images(tmp_path, payload, refused):
    """A small flat-colour image deflates far past 100:1 and is genuine; past RATIO_MIN_BYTES the rule applies."""
    zip_path = make_image_zip(tmp_path / "d.zip", {"cat": 1, "dog": 1}, size=8, extra={"cat/flat.png": payload})
    with zipfile.ZipFile(zip_path) as zf:
        info = zf.getinfo("cat/flat.png")
    assert info.file_size / info.compress_size > 100
    if refused:
        with pytest.raises(ConvbenchError, match=r"'cat/flat\.png' declares .*over data\.max_ratio"):
            run_unzip(zip_path, tmp_path)
        assert not (tmp_path / "data").exists()
    else:
        _, images, _ = run_unzip(zip_path, tmp_path)
        assert (images / "all/cat/flat.png").read_bytes() == payload


def test_an_image_over_max_file_bytes_is_refused(tmp_path):
    zip_path = make_image_zip(tmp_path / "d.zip", {"cnn/cat": 2, "cnn/dog": 2}, size=8)
    noise = np.random.default_rng(0).bytes(2 * MIB)  # incompressible: the ratio rule cannot catch it
    append_entry(zip_path, "cnn/cat/big.png", noise, compression=zipfile.ZIP_STORED)
    with pytest.raises(ConvbenchError, match=(
        rf"d\.zip: entry 'cnn/cat/big\.png' declares {2 * MIB:,} bytes, over data\.max_file_bytes = {MIB:,} "
        r".*raise data\.max_file_bytes in params\.yaml"
    )):
        run_unzip(zip_path, tmp_path, max_file_bytes=MIB)
    assert not (tmp_path / "data").exists()
    _, images, _ = run_unzip(zip_path, tmp_path, max_file_bytes=2 * MIB)
    assert (images / "all/cat/big.png").read_bytes() == noise


def test_an_entry_from_zero_compressed_bytes_has_an_infinite_ratio():
    info = zipfile.ZipInfo("cat/x.png")
    info.file_size, info.compress_size = 2 * MIB, 0
    limits = Limits(max_files=10, max_bytes=BIG, max_ratio=1e9, max_file_bytes=BIG)
    refused = limits.refusal("d.zip", info, info.file_size, "declares")
    assert refused is not None and "a ratio of inf:1, over data.max_ratio = 1,000,000,000" in str(refused)
    assert limits.entry_cap(info) == RATIO_MIN_BYTES


def _quoted_overlap_zip(path: Path) -> tuple[Path, bytes, int]:
    """A miniature "better zip bomb" (Fifield 2019): two stored entries, one inside the other.

    ``cat/000.png``'s stored data is a complete local header for ``cat/001.png``
    followed by that image, and an extra central record points ``cat/001.png`` at
    that header, so names match, CRCs match and both ratios are 1:1. Returns the
    path, the inner image and its offset.
    """
    inner = image_bytes(make_image(8, seed=1))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("dog/000.png", image_bytes(make_image(8)))
        zf.writestr("cat/000.png", local_header("cat/001.png", inner) + inner)
        outer = zf.getinfo("cat/000.png")
    offset = outer.header_offset + 30 + len(outer.filename) + len(outer.extra)
    add_central_record(path, "cat/000.png", name="cat/001.png", header_offset=offset,
                       compress_size=len(inner), file_size=len(inner), crc=zlib.crc32(inner))
    return path, inner, offset


def test_an_entry_inside_another_entrys_data_is_refused(tmp_path):
    zip_path, inner, offset = _quoted_overlap_zip(tmp_path / "d.zip")
    with zipfile.ZipFile(zip_path) as zf:  # zipfile itself reads the hidden entry without complaint
        assert zf.read("cat/001.png") == inner
        outer = zf.getinfo("cat/000.png")
    end = outer.header_offset + 30 + len("cat/000.png") + outer.compress_size
    with pytest.raises(ConvbenchError, match=(
        rf"^{zip_path}: entry 'cat/001\.png' at offset {offset:,} overlaps entry 'cat/000\.png' "
        rf"\(offsets {outer.header_offset:,} to {end:,}\) \(a zip bomb: .*re-create the archive\)$"
    )) as refused:
        run_unzip(zip_path, tmp_path)
    assert "\n" not in str(refused.value)
    assert not (tmp_path / "data").exists()


def test_two_entries_on_the_same_bytes_are_refused(tmp_path):
    zip_path = make_image_zip(tmp_path / "d.zip", {"cat": 2, "dog": 2}, size=8)
    add_central_record(zip_path, "cat/001.png", name="cat/002.png")
    with zipfile.ZipFile(zip_path) as zf:
        first, copy = zf.getinfo("cat/001.png"), zf.getinfo("cat/002.png")
    assert copy.header_offset == first.header_offset and copy.compress_size == first.compress_size
    with pytest.raises(ConvbenchError, match=(
        rf"entry 'cat/002\.png' at offset {copy.header_offset:,} overlaps entry 'cat/001\.png' .*a zip bomb"
    )):
        run_unzip(zip_path, tmp_path)
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("how", ["many-copies", "one-claims-too-much"])
def test_compressed_sizes_past_the_archive_size_are_refused(tmp_path, how):
    """Fifield's full overlap: every copy a plausible 1:1 stored image, all reading the same bytes."""
    zip_path = make_image_zip(tmp_path / "d.zip", {"cat": 2, "dog": 2}, size=8, compression=zipfile.ZIP_STORED)
    if how == "many-copies":
        for i in range(100):
            add_central_record(zip_path, "cat/000.png", name=f"cat/{i + 100:03d}.png")
    else:
        whole = zip_path.stat().st_size  # a stored entry as big as the archive: it must overlap something
        patch_central_record(zip_path, "dog/001.png", compress_size=whole, file_size=whole)
    size = zip_path.stat().st_size
    with zipfile.ZipFile(zip_path) as zf:
        infos = zf.infolist()
    sums = np.cumsum([i.compress_size for i in infos])
    first = infos[int(np.argmax(sums > size))]
    assert sums[-1] > size and first.compress_size / first.file_size == 1
    with pytest.raises(ConvbenchError, match=(
        rf"compressed sizes add up to [\d,]+ bytes by entry '{first.filename}', more than the archive's {size:,} "
        r"\(a zip bomb"
    )):
        run_unzip(zip_path, tmp_path)
    assert not (tmp_path / "data").exists()


def test_an_entry_without_a_local_header_is_refused(tmp_path):
    zip_path = make_image_zip(tmp_path / "d.zip", {"cat": 2, "dog": 2}, size=8)
    with zipfile.ZipFile(zip_path) as zf:
        middle = zf.getinfo("dog/000.png").header_offset + 45
    add_central_record(zip_path, "dog/000.png", name="dog/002.png", header_offset=middle)
    with pytest.raises(ConvbenchError, match=rf"entry 'dog/002\.png' \(no local header at offset {middle:,}\)"):
        run_unzip(zip_path, tmp_path)
    assert not (tmp_path / "data").exists()


class _Stream(io.RawIOBase):
    """A write-only, unseekable file: zipfile then writes a data descriptor after every entry."""

    def __init__(self) -> None:
        self.buf = io.BytesIO()

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:  # type: ignore[override]
        return self.buf.write(b)


@pytest.mark.parametrize("kind", ["data-descriptors", "prefixed-stub", "long-extra-fields"])
def test_genuine_archives_pass_the_overlap_check(tmp_path, kind):
    """Layouts that move entries' bytes around without sharing them must still extract."""
    zip_path = tmp_path / "d.zip"
    images = {f"{c}/{i:03d}.png": image_bytes(make_image(8, seed=i + 7 * n)) for n, c in enumerate(("cat", "dog"))
              for i in range(3)}
    if kind == "data-descriptors":
        stream = _Stream()
        with zipfile.ZipFile(stream, "w") as zf:
            for name, data in images.items():
                zf.writestr(name, data)
        zip_path.write_bytes(stream.buf.getvalue())
        with zipfile.ZipFile(zip_path) as zf:
            assert all(i.flag_bits & 0x08 for i in zf.infolist())
    elif kind == "prefixed-stub":  # a self-extracting stub before the zip: zipfile shifts every offset
        plain = tmp_path / "plain.zip"
        with zipfile.ZipFile(plain, "w") as zf:
            for name, data in images.items():
                zf.writestr(name, data)
        zip_path.write_bytes(b"#!/bin/sh\nexit 0\n" * 64 + plain.read_bytes())
    else:  # local extra fields the central directory does not repeat (as Info-ZIP writes)
        with zipfile.ZipFile(zip_path, "w") as zf:
            for name, data in images.items():
                info = zipfile.ZipInfo(name)
                info.extra = struct.pack("<HH", 0xCAFE, 200) + bytes(200)
                zf.writestr(info, data)
        patch_extra = bytearray(zip_path.read_bytes())
        with zipfile.ZipFile(zip_path) as zf:
            start = zf.start_dir
        pos = start
        while patch_extra[pos : pos + 4] == b"PK\x01\x02":  # drop the central copies of the extra fields
            n_name, n_extra, n_comment = struct.unpack_from("<HHH", patch_extra, pos + 28)
            del patch_extra[pos + 46 + n_name : pos + 46 + n_name + n_extra]
            struct.pack_into("<H", patch_extra, pos + 30, 0)
            pos += 46 + n_name + n_comment
        struct.pack_into("<I", patch_extra, len(patch_extra) - 22 + 12, pos - start)
        zip_path.write_bytes(bytes(patch_extra))
        with zipfile.ZipFile(zip_path) as zf:
            assert all(i.extra == b"" for i in zf.infolist())
    _, out, manifest = run_unzip(zip_path, tmp_path)
    assert manifest["files"] == 6
    assert {f"all/{name}": (out / "all" / name).read_bytes() for name in images} == {
        f"all/{name}": data for name, data in images.items()
    }


class Unbounded:
    """A zip reader that hands out an entry's real bytes, past whatever its header declared.

    CPython's zipfile stops at the declared size and then fails the CRC check, so
    this stands in for a reader without that check, to exercise the streaming cap.
    """

    def __init__(self, zf: zipfile.ZipFile, real: dict[str, bytes]) -> None:
        self.zf, self.real = zf, real

    def open(self, info: zipfile.ZipInfo):
        return io.BytesIO(self.real[info.filename]) if info.filename in self.real else self.zf.open(info)


@pytest.mark.parametrize(
    ("payload", "compression", "max_file_bytes", "key"),
    [
        (bytes(3 * MIB), zipfile.ZIP_DEFLATED, BIG, "max_ratio"),
        (np.random.default_rng(1).bytes(2 * MIB), zipfile.ZIP_STORED, MIB, "max_file_bytes"),
    ],
    ids=["ratio", "file-bytes"],
)
def test_streaming_cap_refuses_an_image_bigger_than_its_header(tmp_path, payload, compression, max_file_bytes, key):
    zip_path = make_image_zip(tmp_path / "d.zip", {"cat": 1, "dog": 1}, size=8)
    append_entry(zip_path, "cat/liar.png", payload, compression=compression)
    _lie_about_size(zip_path, "cat/liar.png", 100)
    limits = Limits(max_files=100, max_bytes=BIG, max_ratio=100, max_file_bytes=max_file_bytes)
    with zipfile.ZipFile(zip_path) as zf:
        plan = plan_archive(zf, archive="d.zip", limits=limits)  # the header passes the declared checks
        assert "cat/liar.png" in {e.info.filename for e in plan.entries}
        with pytest.raises(ConvbenchError, match=rf"'cat/liar\.png' expanded to [\d,]+ bytes.* over data\.{key} = "):
            extract(Unbounded(zf, {"cat/liar.png": payload}), plan, tmp_path / "data" / "images", limits=limits)
    assert all_files(tmp_path / "data") == set()
    with pytest.raises(ConvbenchError, match="cat/liar.png"):  # the real reader: truncated, then a bad CRC
        run_unzip(zip_path, tmp_path, max_file_bytes=max_file_bytes)
    assert all_files(tmp_path / "data") == set()


@pytest.mark.parametrize(
    ("key", "value"), [("max_ratio", 0), ("max_ratio", 0.5), ("max_file_bytes", 0), ("max_file_bytes", -1)]
)
def test_bad_per_image_limits_are_one_line_config_errors(key, value):
    with pytest.raises(ConfigError, match=rf"^data\.{key}: must") as refused:
        parse_params({"data": {key: value}})
    assert "\n" not in str(refused.value)


def test_streaming_counter_stops_at_the_limit():
    src = io.BytesIO(b"x" * 5000)
    dst = io.BytesIO()
    with pytest.raises(LimitExceeded):
        copy_limited(src, dst, 4999)
    assert copy_limited(io.BytesIO(b"y" * 5000), dst := io.BytesIO(), 5000) == 5000
    assert dst.getvalue() == b"y" * 5000


@pytest.mark.parametrize(
    ("layout", "extra", "empty_dirs", "message"),
    [
        ({"cnn/cat": 3}, {}, (), "at least two class folders.*only 'cat'"),
        ({"cat": 3}, {}, (), "only 'cat'"),
        ({}, {"readme.txt": b"no images"}, (), "found none"),
        ({"cnn/cat": 2, "cnn/dog": 2}, {}, ["cnn/empty"], "cnn/empty/ hold no images"),
        ({"cnn/cat": 2, "cnn/dog": 2}, {"cnn/junk/.DS_Store": b"x", "cnn/junk/a.txt": b"x"}, (),
         "cnn/junk/ hold no images"),
        ({"train/cat": 2, "train/dog": 2, "test/cat": 1, "test/dog": 1, "test/bird": 1}, {}, (), "bird have no train/"),
        ({"train/cat": 1, "train/dog": 1, "val/cat": 1, "valid/dog": 1}, {}, (), "val, valid all mean the val split"),
    ],
    ids=["one-class-top", "one-class", "no-images", "empty-class", "junk-only", "class-missing-in-train", "two-vals"],
)
def test_bad_class_layouts_fail_clearly(tmp_path, layout, extra, empty_dirs, message):
    zip_path = make_image_zip(tmp_path / "d.zip", layout, size=8, extra=extra, empty_dirs=empty_dirs)
    with pytest.raises(ConvbenchError, match=message):
        run_unzip(zip_path, tmp_path)
    assert not (tmp_path / "data").exists()


def test_duplicate_entries_are_refused(tmp_path):
    zip_path = make_image_zip(tmp_path / "d.zip", {"cat": 1, "dog": 1}, size=8)
    with pytest.warns(UserWarning, match="Duplicate"), zipfile.ZipFile(zip_path, "a") as zf:
        zf.writestr("cat/000.png", image_bytes(make_image(8, seed=9)))
    with pytest.raises(ConvbenchError, match="appears twice"):
        run_unzip(zip_path, tmp_path)


@pytest.mark.parametrize("content", [None, b"this is not a zip"])
def test_missing_or_non_zip_archive(tmp_path, content):
    path = tmp_path / "d.zip"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConvbenchError, match="not found" if content is None else "not a readable zip"):
        run_unzip(path, tmp_path)


def test_nested_and_flat_layouts_make_the_same_zip(tmp_path):
    flat = make_image_zip(tmp_path / "flat.zip", {"top/cat": 2, "top/dog": 1}, size=8)
    nested = make_image_zip(tmp_path / "nested.zip", {"top": {"cat": 2, "dog": 1}}, size=8)
    with zipfile.ZipFile(flat) as a, zipfile.ZipFile(nested) as b:
        assert a.namelist() == b.namelist()
        assert all(a.read(n) == b.read(n) for n in a.namelist())
