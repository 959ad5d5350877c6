"""Make sure ``data.archive`` exists before unzipping: copy a local CIFAR-10 zip or download it.

Only the default archive (``data/cifar10.zip``) is ever obtained automatically,
because only then do we know what it should contain:

1. it already exists -> nothing to do;
2. ``CONVBENCH_CIFAR10_ZIP`` names a local copy -> copy it (offline machines, CI);
3. otherwise download CIFAR-10 with torchvision and write it in the same class-folder
   layout as the local copy, but lossless: ``cifar10/{train,test}/<class>/NNNN.png``,
   pixels bit for bit those of the official dataset (comparable with the literature).

Only a copy the user provides (``CONVBENCH_CIFAR10_ZIP`` or ``--from``, e.g. the offline
JPEG copy) may be lossy; a download never is.

An explicit ``source`` (``python -m convbench.stages.fetch --from PATH``) is copied to
``data.archive`` whatever its name. Any other missing archive is one error line that
says how to provide it.

:func:`track_archive` then makes the archive a DVC-tracked file (``dvc add``, the
``.dvc`` file staged in git), so DVC's queue, whose temporary copies hold only what git
or DVC track, checks it out from the cache. The archive stays a plain dependency of the
``unzip`` stage, never a stage output: ``dvc exp run`` deletes outputs its lock file has
no hash for, and a user's own zip must never be deleted.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from convbench.files import atomic_path
from convbench.errors import ConvbenchError
from convbench.data.params import DataParams

DEFAULT_ARCHIVE = Path(DataParams.archive)
SOURCE_ENV = "CONVBENCH_CIFAR10_ZIP"

HOW_TO = (
    f"set {SOURCE_ENV}=/path/to/cifar10.zip or run `python -m convbench.stages.fetch --from /path/to/cifar10.zip`"
)


class ArrayDataset(Protocol):
    """What torchvision's CIFAR10 exposes: ``data`` (N, H, W, 3) uint8, ``targets``, ``classes``."""

    data: np.ndarray
    targets: Sequence[int]
    classes: Sequence[str]


def copy_archive(source: Path, dest: Path) -> Path:
    """Copy the zip ``source`` to ``dest`` atomically (a no-op when they are the same file)."""
    source, dest = Path(source), Path(dest)
    if not source.is_file():
        raise ConvbenchError(f"{source}: no such file to copy the dataset from; {HOW_TO}")
    if not zipfile.is_zipfile(source):
        raise ConvbenchError(f"{source}: not a zip file; point at the dataset's .zip")
    if dest.exists() and dest.resolve() == source.resolve():
        return dest
    with atomic_path(dest) as tmp:
        shutil.copyfile(source, tmp)
    return dest


def write_class_zip(dest: Path, splits: Mapping[str, ArrayDataset], top: str = "cifar10") -> Path:
    """Write ``splits`` (e.g. ``{"train": ds, "test": ds}``) as ``top/<split>/<class>/NNNN.png`` PNGs.

    PNG is lossless, so every image decodes to exactly the pixels of ``ds.data``. The PNGs
    are stored in the zip as they are (``ZIP_STORED``): they are already deflate-compressed,
    so deflating them again would cost time on every write and read for next to no gain.
    Files are numbered per class in dataset order; the zip appears at ``dest`` only when complete.
    """
    dest = Path(dest)
    with atomic_path(dest) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
        for split, ds in splits.items():
            seen = [0] * len(ds.classes)
            for pixels, target in zip(ds.data, ds.targets):
                buf = io.BytesIO()
                Image.fromarray(np.asarray(pixels, dtype=np.uint8), "RGB").save(buf, "PNG")
                zf.writestr(f"{top}/{split}/{ds.classes[target]}/{seen[target]:04d}.png", buf.getvalue())
                seen[target] += 1
    return dest


def download_cifar10(dest: Path) -> Path:
    """Download CIFAR-10 with torchvision into a temporary folder and write it as a class-folder zip at ``dest``."""
    from torchvision.datasets import CIFAR10

    with tempfile.TemporaryDirectory(prefix="convbench-cifar10-") as tmp:
        splits = {name: CIFAR10(tmp, train=name == "train", download=True) for name in ("train", "test")}
        return write_class_zip(dest, splits)


def ensure_archive(data: DataParams, source: Path | None = None) -> Path:
    """Return the path of ``data.archive``, obtaining it first when possible (see the module docstring)."""
    archive = Path(data.archive)
    if source is not None:
        return copy_archive(Path(source), archive)
    if archive.is_file():
        return archive
    if archive != DEFAULT_ARCHIVE:
        raise ConvbenchError(
            f"{archive}: archive not found; put your image zip there, point data.archive at it in params.yaml, "
            f"or run `python -m convbench.stages.fetch --from /path/to/dataset.zip`"
        )
    local = os.environ.get(SOURCE_ENV)
    if local:
        return copy_archive(Path(local), archive)
    print(f"fetch: {archive} is missing; downloading CIFAR-10 with torchvision")
    try:
        return download_cifar10(archive)
    except (OSError, RuntimeError) as exc:
        reason = " ".join(str(exc).split())
        raise ConvbenchError(f"{archive}: CIFAR-10 download failed ({reason}); offline, {HOW_TO}") from None


def track_archive(archive: Path) -> str:
    """DVC-track ``archive`` (``dvc add``, then ``git add`` of its ``.dvc`` file) unless it already is; say what was done.

    Run from the project root. An archive under a ``.dvc`` file is left alone, and so is a project that is not a
    git repository (DVC's queue needs one anyway).
    """
    tracker = archive.with_name(archive.name + ".dvc")
    if tracker.is_file():
        return f"{archive} is DVC-tracked ({tracker})"
    if not Path(".git").exists():
        return f"{archive} is not DVC-tracked (not a git repository)"
    # DVC from this interpreter: the one convbench is installed in, whatever PATH says
    for command in ([sys.executable, "-m", "dvc", "add", "--quiet", str(archive)], ["git", "add", str(tracker)]):
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            reason = (done.stderr.strip() or done.stdout.strip()).splitlines()
            raise ConvbenchError(f"`{' '.join(command[-4:])}` failed: {reason[-1] if reason else done.returncode}")
    return (f"dvc add {archive}: DVC caches it, so queued experiments get it; commit {tracker} "
            f"(`git commit {tracker}`) to keep it")
