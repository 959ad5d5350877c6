"""Safe extraction of an image-folder zip into a normalised tree ``<origin>/<class>/<file>``.

A zip comes from anywhere, so every entry is validated before one byte is written:
paths that would leave the target folder (``..``, absolute paths, drive letters),
symlink entries, and archives declaring more files or bytes than ``data.max_files``
/ ``data.max_bytes`` are refused. An archive can stay under those totals and still
hold one bomb (3 GiB of zeros deflate to 3 MB), so each image is also refused when it
declares more than ``data.max_file_bytes`` or a compression ratio over ``data.max_ratio``
(images are already compressed: real ones deflate about 1:1). Entries whose bytes
overlap (each stored, each a plausible 1:1, yet all reading the same shared data: a
1 MiB zip that expands to gigabytes) are refused too, as are compressed sizes adding
up to more than the archive holds. While extracting, bytes actually read are counted
against the same limits, because an entry's declared size is only a claim.

Layouts understood (the class root is found by descending through single wrapper folders):

* ``<class>/...`` or ``<top>/<class>/...``            -> origin ``all``
* ``[<top>/]train/<class>/...``, ``test/...``, ``val/...`` -> origins ``train``/``val``/``test``

Images anywhere below a class folder belong to that class (sub-folders are kept).
OS junk (``__MACOSX/``, ``._*``, ``.DS_Store``, ``Thumbs.db``, ``desktop.ini``),
non-image files and images outside class folders are ignored and listed.
The tree is extracted into a temporary sibling folder and swapped in at the end,
so a refused or failed extraction leaves no half-written ``data/images``.
"""

from __future__ import annotations

import hashlib
import math
import re
import shutil
import stat
import struct
import tempfile
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from tqdm import tqdm

from convbench.data.format import ORIGINS
from convbench.files import write_json
from convbench.errors import ConvbenchError
from convbench.data.params import DataParams

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
)
"""Extensions (lower case) treated as images; matching ignores case."""

JUNK_NAMES: frozenset[str] = frozenset({".ds_store", "thumbs.db", "desktop.ini"})
SPLIT_FOLDERS: dict[str, str] = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
"""Folder names (lower case) that mark a pre-split archive, mapped to their origin."""

CHUNK = 1 << 20
DIR_MODE = 0o755
"""Mode of the extracted tree's root (mkdtemp would leave it private to the owner)."""

RATIO_MIN_BYTES = 1 << 20
"""Entries up to this size skip the ratio rule: a few-KB PNG of one flat colour can
legitimately deflate 100:1 or more, and so small an entry cannot be a bomb anyway."""

LOCAL_HEADER = struct.Struct("<4s22xHH")
"""A zip local file header's fixed 30 bytes: signature, then (after 22 bytes) name and extra lengths."""
LOCAL_SIGNATURE = b"PK\x03\x04"

IGNORED_JUNK = "OS junk"
IGNORED_NOT_IMAGE = "not an image file"
IGNORED_OUTSIDE = "not inside a class folder"


def is_image_name(name: str) -> bool:
    """True when ``name`` has an image extension (any case)."""
    return PurePosixPath(name).suffix.lower() in IMAGE_EXTENSIONS


def _parts(name: str) -> tuple[str, ...]:
    """Path components of a zip entry name; backslashes count as separators (Windows archivers)."""
    return tuple(p for p in name.replace("\\", "/").split("/") if p not in ("", "."))


def unsafe_reason(info: zipfile.ZipInfo) -> str | None:
    """Why extracting ``info`` could write outside the target folder, or ``None`` when it is safe."""
    name = info.filename.replace("\\", "/")
    if stat.S_ISLNK(info.external_attr >> 16):
        return "symlink entry"
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return "absolute path"
    if ".." in name.split("/"):
        return "path leaves the target folder"
    return None


def _is_junk(base: str) -> bool:
    """Finder/Explorer metadata files (AppleDouble ``._*``, ``.DS_Store``, ``Thumbs.db``, ``desktop.ini``)."""
    return base.startswith("._") or base.lower() in JUNK_NAMES


@dataclass(frozen=True)
class Entry:
    """One image to extract: zip member ``info`` goes to ``<origin>/<cls>/<rel>``."""

    info: zipfile.ZipInfo
    origin: str
    cls: str
    rel: str

    @property
    def target(self) -> str:
        return f"{self.origin}/{self.cls}/{self.rel}"


@dataclass(frozen=True)
class UnzipPlan:
    """What an archive holds and where each image goes; built and checked before extracting."""

    archive: str
    layout: str
    root: str
    classes: list[str]
    entries: list[Entry]
    ignored: list[tuple[str, str]]

    @property
    def origins(self) -> list[str]:
        """Origins present, in :data:`ORIGINS` order."""
        present = {e.origin for e in self.entries}
        return [o for o in ORIGINS if o in present]

    def counts(self) -> dict[str, dict[str, int]]:
        """Images per class for each origin (every class listed, zero when absent)."""
        tally = Counter((e.origin, e.cls) for e in self.entries)
        return {o: {c: tally[(o, c)] for c in self.classes} for o in self.origins}

    def digest(self) -> str:
        """SHA-256 of every image's target path, CRC-32 and size (zipfile checks each CRC while extracting).

        DVC tracks ``data/unzip.json`` rather than the 60,000-file tree (hashing that
        tree made every ``dvc status`` take seconds), so the record must change
        whenever any extracted byte would.
        """
        lines = (f"{e.target}\t{e.info.CRC:08x}\t{e.info.file_size}\n" for e in self.entries)
        return hashlib.sha256("".join(lines).encode()).hexdigest()

    def manifest(self, extracted_bytes: int) -> dict[str, object]:
        """The ``data/unzip.json`` record."""
        return {
            "archive": self.archive,
            "layout": self.layout,
            "root": self.root,
            "origins": self.origins,
            "classes": self.classes,
            "counts": self.counts(),
            "files": len(self.entries),
            "bytes": extracted_bytes,
            "digest": self.digest(),
            "ignored": [list(i) for i in self.ignored],
        }


@dataclass(frozen=True)
class Limits:
    """The zip-bomb guards: ``data.max_files``, ``max_bytes``, ``max_ratio``, ``max_file_bytes``."""

    max_files: int
    max_bytes: int
    max_ratio: float
    max_file_bytes: int

    def entry_cap(self, info: zipfile.ZipInfo) -> int:
        """Most bytes ``info`` may expand to: both per-entry rules folded into one streaming limit."""
        return min(self.max_file_bytes, max(RATIO_MIN_BYTES, int(self.max_ratio * info.compress_size)))

    def refusal(self, archive: str, info: zipfile.ZipInfo, size: int, how: str) -> ConvbenchError | None:
        """The error for ``info`` expanding to ``size`` bytes (``how``: "declares"...), or ``None`` within limits."""
        ratio = size / info.compress_size if info.compress_size else math.inf
        if size > RATIO_MIN_BYTES and ratio > self.max_ratio:
            what = f"{size:,} bytes from {info.compress_size:,} compressed, a ratio of {ratio:,.0f}:1"
            key, limit, why = "max_ratio", f"{self.max_ratio:,.10g}", "images are already compressed"
        elif size > self.max_file_bytes:
            what = f"{size:,} bytes"
            key, limit, why = "max_file_bytes", f"{self.max_file_bytes:,}", "no image is that big"
        else:
            return None
        return ConvbenchError(
            f"{archive}: entry {info.filename!r} {how} {what}, over data.{key} = {limit} (a zip bomb: {why}; "
            f"if the data is genuine, raise data.{key} in params.yaml)"
        )


def _too_many(kind: str, found: int, key: str, limit: int, archive: str) -> ConvbenchError:
    return ConvbenchError(
        f"{archive}: {kind} {found:,} is over data.{key} = {limit:,} (a zip bomb, or a bigger dataset: "
        f"raise data.{key} in params.yaml)"
    )


def _check_safe_and_small(infos: list[zipfile.ZipInfo], archive: str, limits: Limits) -> None:
    """Raise on any unsafe entry, or a declared file count or total size over the limits."""
    unsafe = [(i.filename, r) for i in infos if (r := unsafe_reason(i))]
    if unsafe:
        shown = "; ".join(f"{n!r} ({r})" for n, r in unsafe[:3])
        more = f" and {len(unsafe) - 3} more" if len(unsafe) > 3 else ""
        raise ConvbenchError(
            f"{archive}: refusing unsafe entries {shown}{more}; re-create the archive with plain relative paths"
        )
    files = [i for i in infos if not i.is_dir()]
    if len(files) > limits.max_files:
        raise _too_many("file count", len(files), "max_files", limits.max_files, archive)
    declared = sum(i.file_size for i in files)
    if declared > limits.max_bytes:
        raise _too_many("declared uncompressed size (bytes)", declared, "max_bytes", limits.max_bytes, archive)


def _check_entry_sizes(entries: list[Entry], archive: str, limits: Limits) -> None:
    """Raise on the first image declaring more than ``max_file_bytes`` or a ratio over ``max_ratio``.

    Only images are judged: ignored entries are never read, so they cannot bomb.
    """
    for e in entries:
        if error := limits.refusal(archive, e.info, e.info.file_size, "declares"):
            raise error


def _bomb(archive: str, what: str) -> ConvbenchError:
    return ConvbenchError(
        f"{archive}: {what} (a zip bomb: entries sharing their bytes expand them many times over; "
        "re-create the archive)"
    )


def _check_compressed_total(infos: list[zipfile.ZipInfo], archive: str, size: int) -> None:
    """Raise when the entries' compressed sizes add up to more than the archive's ``size``.

    Entries that do not share bytes cannot hold more compressed data than the file
    does; this costs no reads, so it runs before the overlap check.
    """
    total = 0
    for info in infos:
        total += info.compress_size
        if total > size:
            raise _bomb(
                archive,
                f"compressed sizes add up to {total:,} bytes by entry {info.filename!r}, "
                f"more than the archive's {size:,}",
            )


def _check_no_overlap(fp: BinaryIO, infos: list[zipfile.ZipInfo], archive: str) -> None:
    """Raise on the first entry whose bytes overlap another entry's, or whose local header is missing.

    An entry spans its local header (30 bytes plus the name and extra lengths read
    from that header, which may differ from the central directory's) and its
    compressed data. A trailing data descriptor is left out: it is never
    decompressed, so sharing it cannot multiply output. Python 3.11's zipfile does
    not check overlaps, and each overlapping entry looks like a stored 1:1 image, so
    the size and ratio limits pass it. Sorted by offset, each entry needs comparing
    only with the one before (500,000 entries: one sort, and one 30-byte read each
    on the already open ``fp``, in file order).
    """
    prev: zipfile.ZipInfo | None = None
    prev_end = 0
    for info in sorted(infos, key=lambda i: i.header_offset):  # stable: on a tie the later record is named
        start = info.header_offset
        fp.seek(start)
        head = fp.read(LOCAL_HEADER.size)
        if len(head) < LOCAL_HEADER.size or head[:4] != LOCAL_SIGNATURE:
            raise ConvbenchError(
                f"{archive}: cannot read entry {info.filename!r} (no local header at offset {start:,}); "
                "re-create the archive"
            )
        if prev is not None and start < prev_end:
            raise _bomb(
                archive,
                f"entry {info.filename!r} at offset {start:,} overlaps entry {prev.filename!r} "
                f"(offsets {prev.header_offset:,} to {prev_end:,})",
            )
        _, name_len, extra_len = LOCAL_HEADER.unpack(head)
        prev, prev_end = info, start + LOCAL_HEADER.size + name_len + extra_len + info.compress_size


def _check_no_shared_bytes(zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo], archive: str) -> None:
    """Raise when entries share bytes: compressed sizes past the file's size, or overlapping ranges.

    Reads through ``zf``'s own handle (zipfile re-seeks before every read of its
    own) and puts its position back.
    """
    fp = zf.fp
    if fp is None:
        raise ValueError("the zip file is closed")
    where = fp.tell()
    try:
        _check_compressed_total(infos, archive, fp.seek(0, 2))
        _check_no_overlap(fp, infos, archive)
    finally:
        fp.seek(where)


Folder = tuple[str, ...]
Scan = tuple[dict[Folder, list[str]], list[tuple[Folder, zipfile.ZipInfo]], list[tuple[str, str]]]


def _scan(infos: list[zipfile.ZipInfo]) -> Scan:
    """Sort entries into the folder tree (sub-folder names per folder), image files, and ignored files.

    Folders holding only junk still count as folders, so a class folder without
    images is reported rather than silently dropped; ``__MACOSX`` is not a folder.
    """
    ignored: list[tuple[str, str]] = []
    folders: set[Folder] = {()}
    images: list[tuple[Folder, zipfile.ZipInfo]] = []
    for info in infos:
        parts = _parts(info.filename)
        if any(p.lower() == "__macosx" for p in parts):
            if not info.is_dir():
                ignored.append((info.filename, IGNORED_JUNK))
            continue
        dirs = parts if info.is_dir() else parts[:-1]
        folders.update(dirs[:k] for k in range(1, len(dirs) + 1))
        if info.is_dir() or not parts:
            continue
        if _is_junk(parts[-1]):
            ignored.append((info.filename, IGNORED_JUNK))
        elif not is_image_name(parts[-1]):
            ignored.append((info.filename, IGNORED_NOT_IMAGE))
        else:
            images.append((parts, info))
    children: dict[Folder, list[str]] = {f: [] for f in folders}
    for f in sorted(folders):
        if f:
            children[f[:-1]].append(f[-1])
    return children, images, ignored


def _class_folders(children: dict[Folder, list[str]], archive: str) -> tuple[Folder, bool, list[tuple[str, Folder]]]:
    """The class root, whether the archive is pre-split, and ``(origin, folder)`` of every class folder."""
    # Descend through single wrapper folders; a leaf folder is a class, a split name starts the splits.
    root: Folder = ()
    while len(children[root]) == 1:
        child = root + (children[root][0],)
        if not children[child] or child[-1].lower() in SPLIT_FOLDERS:
            break
        root = child
    kids = children[root]
    origin_of = {k: SPLIT_FOLDERS.get(k.lower()) for k in kids}
    presplit = bool(kids) and None not in origin_of.values() and "train" in origin_of.values()
    if not presplit:
        return root, False, [("all", root + (c,)) for c in kids]
    dup = [o for o, n in Counter(origin_of.values()).items() if n > 1]
    if dup:
        names = ", ".join(k for k in kids if origin_of[k] in dup)
        raise ConvbenchError(f"{archive}: folders {names} all mean the {dup[0]} split; keep one of them")
    return root, True, [(str(origin_of[s]), root + (s, c)) for s in kids for c in children[root + (s,)]]


def plan_archive(zf: zipfile.ZipFile, *, archive: str, limits: Limits) -> UnzipPlan:
    """Validate every entry of ``zf`` and decide where each image goes; raises before anything is written."""
    infos = zf.infolist()
    _check_safe_and_small(infos, archive, limits)
    _check_no_shared_bytes(zf, infos, archive)
    children, images, ignored = _scan(infos)
    root, presplit, class_folders = _class_folders(children, archive)

    where = {folder: (origin, folder[-1]) for origin, folder in class_folders}
    depth = len(root) + (2 if presplit else 1)
    entries: list[Entry] = []
    seen: set[str] = set()
    for parts, info in images:
        if parts[:depth] not in where:
            ignored.append((info.filename, IGNORED_OUTSIDE))
            continue
        origin, cls = where[parts[:depth]]
        entry = Entry(info, origin, cls, "/".join(parts[depth:]))
        if entry.target in seen:
            raise ConvbenchError(f"{archive}: {info.filename!r} appears twice; re-create the archive")
        seen.add(entry.target)
        entries.append(entry)
    _check_entry_sizes(entries, archive, limits)

    prefix = "/".join(root) + "/" if root else ""
    used = Counter((e.origin, e.cls) for e in entries)
    empty = ["/".join(folder) + "/" for origin, folder in class_folders if not used[(origin, folder[-1])]]
    if empty:
        raise ConvbenchError(
            f"{archive}: class folder(s) {', '.join(empty[:5])} hold no images "
            f"(extensions: {', '.join(sorted(IMAGE_EXTENSIONS))}); add images or remove the folder"
        )
    classes = sorted({folder[-1] for _, folder in class_folders})
    if len(classes) < 2:
        found = f"only {classes[0]!r}" if classes else "none"
        raise ConvbenchError(
            f"{archive}: need at least two class folders of images under {prefix or 'the zip root'!r}, found {found}; "
            "lay the zip out as <class>/<image> (optionally under one top folder, or under train/ and test/)"
        )
    no_train = sorted(set(classes) - {cls for origin, cls in used if origin == "train"})
    if presplit and no_train:
        raise ConvbenchError(
            f"{archive}: class(es) {', '.join(no_train)} have no train/ folder; add training images for them"
        )
    entries.sort(key=lambda e: (ORIGINS.index(e.origin), e.cls, e.rel))
    return UnzipPlan(
        archive=archive,
        layout="pre-split" if presplit else "classes",
        root=prefix,
        classes=classes,
        entries=entries,
        ignored=sorted(ignored),
    )


class LimitExceeded(ConvbenchError):
    """More bytes came out of an entry than the extraction budget allows; ``read`` says how many."""

    def __init__(self, read: int, limit: int) -> None:
        super().__init__(f"read {read:,} bytes, more than the {limit:,} allowed")
        self.read = read


def copy_limited(src: BinaryIO, dst: BinaryIO, limit: int) -> int:
    """Copy ``src`` to ``dst`` and return the byte count; raise once more than ``limit`` bytes were read."""
    total = 0
    while chunk := src.read(CHUNK):
        total += len(chunk)
        if total > limit:
            raise LimitExceeded(total, limit)
        dst.write(chunk)
    return total


def _extract_entry(zf: zipfile.ZipFile, e: Entry, dst: Path, archive: str, limits: Limits, budget: int) -> int:
    """Stream one image to ``dst`` under ``budget`` and its own cap; return the bytes written.

    The cap applies to bytes actually read, since a header can lie about the size.
    """
    try:
        with zf.open(e.info) as src, open(dst, "wb") as out:
            return copy_limited(src, out, min(budget, limits.entry_cap(e.info)))
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as exc:
        raise ConvbenchError(
            f"{archive}: cannot read entry {e.info.filename!r} ({exc}); re-create the archive"
        ) from None
    except LimitExceeded as exc:
        raise limits.refusal(archive, e.info, exc.read, "expanded to") or ConvbenchError(
            f"{archive}: extracting {e.info.filename!r} went past data.max_bytes = {limits.max_bytes:,} "
            "(a corrupt archive or a zip bomb; raise data.max_bytes if the data is genuine)"
        ) from None


def extract(zf: zipfile.ZipFile, plan: UnzipPlan, target: Path, *, limits: Limits) -> int:
    """Write ``plan``'s images into ``target`` (replacing it) and return the bytes written.

    The real byte counts are enforced against ``limits`` while streaming, whatever
    the headers declared.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    tmp.chmod(DIR_MODE)
    try:
        for folder in sorted({str(PurePosixPath(e.target).parent) for e in plan.entries}):
            (tmp / folder).mkdir(parents=True, exist_ok=True)
        written = 0
        for e in tqdm(plan.entries, desc="unzip", unit="file", disable=None, mininterval=0.5):
            written += _extract_entry(zf, e, tmp / e.target, plan.archive, limits, limits.max_bytes - written)
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
        return written
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def open_zip(archive: Path) -> zipfile.ZipFile:
    """Open ``archive`` or raise a one-line error saying what is wrong with it."""
    archive = Path(archive)
    if not archive.is_file():
        raise ConvbenchError(f"{archive}: archive not found; set data.archive in params.yaml to your image zip")
    try:
        return zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ConvbenchError(f"{archive}: not a readable zip file ({exc}); re-create it as a .zip") from None


def unzip_archive(
    archive: Path,
    images: Path,
    manifest: Path,
    *,
    max_files: int,
    max_bytes: int,
    max_ratio: float = DataParams.max_ratio,
    max_file_bytes: int = DataParams.max_file_bytes,
) -> UnzipPlan:
    """Extract ``archive`` into ``images`` as ``<origin>/<class>/<file>`` and write ``manifest`` (unzip.json).

    Raises :class:`ConvbenchError` for unsafe entries, limits exceeded, entries
    sharing bytes, fewer than two classes or an empty class, before writing anything.
    The per-entry limits default to the :class:`DataParams` defaults, so callers that
    only check totals stay short.
    """
    limits = Limits(max_files=max_files, max_bytes=max_bytes, max_ratio=max_ratio, max_file_bytes=max_file_bytes)
    with open_zip(archive) as zf:
        plan = plan_archive(zf, archive=str(archive), limits=limits)
        written = extract(zf, plan, images, limits=limits)
    write_json(manifest, plan.manifest(written))
    return plan


def format_listing(items: list[str], cap: int = 20) -> list[str]:
    """At most ``cap`` of ``items`` plus an ``... and N more`` line, for printing long lists."""
    shown = items[:cap]
    return shown + ([f"... and {len(items) - cap} more"] if len(items) > cap else [])
