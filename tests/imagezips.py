"""Tiny image zips for tests: any folder layout, image mode, format and size, plus junk and hostile entries.

Images are a per-class colour (stable across runs, derived from the class folder's
name) plus a little seeded noise, so a small model can learn them and a decoded
pixel can be checked against its source.

    make_image_zip(tmp_path / "d.zip", {"cnn/cat": 3, "cnn/dog": 3}, size=16)
    make_image_zip(tmp_path / "d.zip", {"cnn": {"cat": 3, "dog": 3}}, size=16)   # the same zip, nested
    make_image_zip(path, {"train/a": 4, "test/a": 2, ...}, mode="RGBA", fmt="PNG", ext=".PNG")
    make_image_zip(path, {...}, extra={"__MACOSX/._x.jpg": b"junk"}, symlinks={"a/link.jpg": "/etc/passwd"})
    append_entry(path, "cnn/cat/huge.png", bytes(1 << 20), repeat=64)     # a 64 MiB zip bomb, streamed
    add_central_record(path, "cat/000.png", name="cat/copy.png")         # a second entry on the same bytes
"""

from __future__ import annotations

import io
import stat
import struct
import zipfile
import zlib
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
from PIL import Image

FORMAT_EXT = {"PNG": ".png", "JPEG": ".jpg", "BMP": ".bmp", "GIF": ".gif", "TIFF": ".tif", "WEBP": ".webp"}


def class_colour(name: str) -> tuple[int, int, int]:
    """A stable RGB colour for a class folder name (its last path component)."""
    h = zlib.crc32(name.rsplit("/", 1)[-1].encode())
    return (h & 0xFF, (h >> 8) & 0xFF, (h >> 16) & 0xFF)


def make_image(
    size: int | tuple[int, int] = 16,
    mode: str = "RGB",
    colour: tuple[int, int, int] = (128, 64, 32),
    seed: int = 0,
    noise: int = 24,
) -> Image.Image:
    """An image of ``mode`` (RGB, L, RGBA, LA, P, I;16...) around ``colour`` with seeded noise.

    ``size`` is a side or ``(width, height)``. RGBA/LA get a varying alpha channel;
    P images are quantised from the RGB image.
    """
    w, h = (size, size) if isinstance(size, int) else size
    rng = np.random.default_rng(seed)
    base = np.array(colour, dtype=np.int16)[None, None, :]
    rgb = np.clip(base + rng.integers(-noise, noise + 1, (h, w, 3)), 0, 255).astype(np.uint8)
    img = Image.fromarray(rgb, "RGB")
    if mode == "RGB":
        return img
    if mode == "RGBA":
        alpha = rng.integers(0, 256, (h, w), dtype=np.uint8)
        return Image.fromarray(np.dstack([rgb, alpha]), "RGBA")
    if mode == "LA":
        alpha = rng.integers(0, 256, (h, w), dtype=np.uint8)
        return Image.fromarray(np.dstack([np.asarray(img.convert("L")), alpha]), "LA")
    if mode == "P":
        return img.quantize(colors=16)
    if mode.startswith("I;16"):
        return Image.fromarray(np.asarray(img.convert("L")).astype(np.uint16) * 257)
    return img.convert(mode)


def image_bytes(img: Image.Image, fmt: str = "PNG", **save_args: object) -> bytes:
    """``img`` encoded as ``fmt`` (a Pillow format name)."""
    buf = io.BytesIO()
    img.save(buf, fmt, **save_args)
    return buf.getvalue()


def symlink_info(name: str) -> zipfile.ZipInfo:
    """A zip entry marked as a Unix symlink (the entry's data is the link target)."""
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


FolderLayout = Mapping[str, "int | FolderLayout"]
"""Folder -> image count, or folder -> nested layout (``{"top": {"cat": 3}}`` is ``{"top/cat": 3}``)."""


def flatten_layout(layout: FolderLayout, prefix: str = "") -> dict[str, int]:
    """``layout`` as ``{"folder/sub": count}``."""
    flat: dict[str, int] = {}
    for name, value in layout.items():
        folder = f"{prefix}{name.strip('/')}"
        if isinstance(value, Mapping):
            flat.update(flatten_layout(value, f"{folder}/"))
        else:
            flat[folder] = int(value)
    return flat


def make_image_zip(
    path: Path,
    layout: FolderLayout,
    *,
    size: int | tuple[int, int] = 16,
    mode: str = "RGB",
    fmt: str = "PNG",
    ext: str | None = None,
    extra: Mapping[str, bytes] | None = None,
    empty_dirs: Iterable[str] = (),
    symlinks: Mapping[str, str] | None = None,
    compression: int = zipfile.ZIP_DEFLATED,
    seed: int = 0,
) -> Path:
    """Write a zip holding ``layout[folder]`` images named ``folder/NNN<ext>`` and return ``path``.

    ``layout`` maps folders to image counts, flat (``{"top/cat": 3}``) or nested
    (``{"top": {"cat": 3}}``).

    ``extra`` adds raw entries (junk, corrupt images, text files), ``empty_dirs``
    adds directory entries with nothing in them, ``symlinks`` adds symlink entries
    (name -> target). Directory entries for every folder are written too, as real
    archivers do. The same arguments give the same images.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ext = ext if ext is not None else FORMAT_EXT[fmt.upper()]
    layout = flatten_layout(layout)
    folders = sorted({"/".join(f.split("/")[: i + 1]) for f in layout for i in range(f.count("/") + 1)})
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for folder in [*folders, *empty_dirs]:
            zf.writestr(folder.rstrip("/") + "/", b"")
        for n_folder, (folder, count) in enumerate(sorted(layout.items())):
            for i in range(count):
                img = make_image(size, mode, class_colour(folder), seed=seed * 1_000_003 + n_folder * 1009 + i)
                zf.writestr(f"{folder}/{i:03d}{ext}", image_bytes(img, fmt))
        for name, payload in (extra or {}).items():
            zf.writestr(name, payload)
        for name, target in (symlinks or {}).items():
            zf.writestr(symlink_info(name), target)
    return path


def append_entry(
    path: Path, name: str, chunk: bytes, *, repeat: int = 1, compression: int = zipfile.ZIP_DEFLATED
) -> Path:
    """Append entry ``name`` holding ``chunk`` ``repeat`` times to the zip at ``path`` and return ``path``.

    The entry is streamed chunk by chunk, so a big one (a zip bomb) never sits in memory.
    """
    with zipfile.ZipFile(path, "a", compression=compression) as zf, zf.open(name, "w") as dst:
        for _ in range(repeat):
            dst.write(chunk)
    return path


CENTRAL_SIGNATURE = b"PK\x01\x02"
END_SIGNATURE = b"PK\x05\x06"
CENTRAL_FIELDS = {"crc": 16, "compress_size": 20, "file_size": 24, "header_offset": 42}
"""Offsets of the 4-byte fields a central-directory record's copy may change."""


def _central_records(raw: bytes) -> tuple[int, list[tuple[int, int, str]]]:
    """The end-of-central-directory offset and ``(start, end, name)`` of every central record.

    Only archives without a zip comment or zip64 records (the small ones tests write).
    """
    eocd = len(raw) - 22
    assert raw[eocd : eocd + 4] == END_SIGNATURE, "expected a zip without a comment"
    count, _, start = struct.unpack_from("<HII", raw, eocd + 10)
    records, pos = [], start
    for _ in range(count):
        assert raw[pos : pos + 4] == CENTRAL_SIGNATURE
        n_name, n_extra, n_comment = struct.unpack_from("<HHH", raw, pos + 28)
        end = pos + 46 + n_name + n_extra + n_comment
        records.append((pos, end, raw[pos + 46 : pos + 46 + n_name].decode()))
        pos = end
    return eocd, records


def add_central_record(path: Path, like: str, *, name: str | None = None, **fields: int) -> Path:
    """Append to ``path``'s central directory a copy of entry ``like``'s record and return ``path``.

    ``name`` renames the copy; ``fields`` (``header_offset``, ``compress_size``,
    ``file_size``, ``crc``) change it. No local header or data is written, so the copy
    shares bytes with whatever its ``header_offset`` points at: the zip-bomb trick of
    overlapping entries. With ``name`` only it is a second entry on ``like``'s bytes.
    """
    path = Path(path)
    raw = bytearray(path.read_bytes())
    eocd, records = _central_records(bytes(raw))
    start, end, _ = next(r for r in records if r[2] == like)
    record = bytearray(raw[start:end])
    if name is not None:
        n_name = struct.unpack_from("<H", record, 28)[0]
        record[46 : 46 + n_name] = name.encode()
        struct.pack_into("<H", record, 28, len(name.encode()))
    for field, value in fields.items():
        struct.pack_into("<I", record, CENTRAL_FIELDS[field], value)
    count, size, cd_start = struct.unpack_from("<HII", raw, eocd + 10)
    raw[eocd:eocd] = record
    struct.pack_into("<HHII", raw, eocd + len(record) + 8, count + 1, count + 1, size + len(record), cd_start)
    path.write_bytes(bytes(raw))
    return path


def patch_central_record(path: Path, name: str, **fields: int) -> Path:
    """Rewrite ``fields`` (as in :func:`add_central_record`) of entry ``name``'s central record; return ``path``."""
    path = Path(path)
    raw = bytearray(path.read_bytes())
    _, records = _central_records(bytes(raw))
    start = next(r[0] for r in records if r[2] == name)
    for field, value in fields.items():
        struct.pack_into("<I", raw, start + CENTRAL_FIELDS[field], value)
    path.write_bytes(bytes(raw))
    return path


def local_header(name: str, payload: bytes) -> bytes:
    """The local header zipfile writes for ``name`` stored (uncompressed) with ``payload``."""
    info = zipfile.ZipInfo(name)
    info.compress_type = zipfile.ZIP_STORED
    info.file_size = info.compress_size = len(payload)
    info.CRC = zlib.crc32(payload)
    return info.FileHeader()
