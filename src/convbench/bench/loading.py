"""The cache stage against the notebook's image loading: speed and peak memory, one child process each.

Both read the same staged copy of the image folder (the copy also warms the
page cache, so neither pays for the disk). Each approach runs in its own child
process while the parent samples the memory of the child's whole process tree
(the cache stage decodes in worker processes), as PSS (proportional set size: a
page shared by k processes counts 1/k in each, so forked workers sharing the
parent's heap are not counted twice; see :class:`TreeMemory`). Raw figures are
the peaks of the summed PSS and RSS; the net figure is the peak of the summed
*anonymous* PSS less that of a child that only imports torch: the memory the
work itself allocated. (A child's ``ru_maxrss`` is no use here: Linux carries it
over from the forked copy of this large parent process.)
"""

from __future__ import annotations

import colorsys
import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from PIL import Image

import convbench
from convbench.data.format import ORIGINS
from convbench.data.unzip import is_image_name
from convbench.errors import ConvbenchError

SAMPLE_SECONDS = 0.025
"""RSS sampling interval; children hold their result briefly at the end so the final state is seen."""

MB = 2**20


def synthetic_image_folder(root: Path, classes: int, per_class: int, size: int, seed: int) -> Path:
    """Write ``root/all/<class>/NNNN.jpg`` images (one colour per class plus noise, JPEG quality 75) like CIFAR's."""
    rng = np.random.default_rng(seed)
    for k in range(classes):
        folder = root / "all" / f"class{k}"
        folder.mkdir(parents=True, exist_ok=True)
        colour = np.array(colorsys.hsv_to_rgb(k / classes, 0.8, 0.9)) * 255
        for i in range(per_class):
            pixels = (colour + rng.normal(0, 40, (size, size, 3))).clip(0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{i:04d}.jpg", quality=75)
    return root


def list_folder(images: Path) -> list[tuple[Path, str]]:
    """``(file, class)`` for every image under ``images``, sorted.

    ``images`` is either the unzip stage's tree (``<origin>/<class>/...`` with
    origins all/train/val/test, as data/images) or a plain ``<class>/...`` folder.
    """
    images = Path(images)
    if not images.is_dir():
        raise ConvbenchError(f"{images}: not a folder; pass --images with an image folder (<class>/<files>)")
    roots = [images / origin for origin in ORIGINS if (images / origin).is_dir()] or [images]
    found = [
        (Path(dirpath, name), cls_dir.name)
        for root in roots
        for cls_dir in sorted(p for p in root.iterdir() if p.is_dir())
        for dirpath, _, names in os.walk(cls_dir)
        for name in names
        if is_image_name(name)
    ]
    if not found:
        raise ConvbenchError(f"{images}: no images in class folders; pass --images with an image folder")
    return sorted(found)


def stage_subset(listing: list[tuple[Path, str]], limit: int, dest: Path) -> tuple[Path, Path, list[str]]:
    """Copy at most ``limit`` images, evenly spaced over the sorted listing, to ``dest/images/all/<class>/``.

    Returns the tree's root (the unzip stage's layout), a manifest for
    :func:`~convbench.data.cache.build_cache`, and the classes. The notebook reads
    ``dest/images/all`` with ``ImageFolder``: the same files.
    """
    picked = listing if len(listing) <= limit else [listing[i * len(listing) // limit] for i in range(limit)]
    classes = sorted({cls for _, cls in picked})
    root = dest / "images"
    written = 0
    for i, (path, cls) in enumerate(picked):
        target = root / "all" / cls / f"{i:06d}{path.suffix.lower()}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        written += target.stat().st_size
    manifest = dest / "unzip.json"  # what build_cache checks the tree against, as the unzip stage records it
    manifest.write_text(json.dumps({"classes": classes, "files": len(picked), "bytes": written}))
    return root, manifest, classes


def _proportional(process: psutil.Process) -> tuple[int, int]:
    """(PSS, anonymous PSS) of ``process`` in bytes; USS for both where the OS has no smaps_rollup (macOS).

    Anonymous PSS is heap memory (tensors, arrays, Python objects), shared pages
    split between the processes sharing them. It leaves out mapped files such as
    libtorch's code, whose PSS depends on how many *other* processes on the machine
    have torch loaded, so it is the stable measure of the work's own memory.
    """
    if not Path("/proc/self/smaps_rollup").exists():
        uss = process.memory_full_info().uss
        return uss, uss
    try:
        text = Path(f"/proc/{process.pid}/smaps_rollup").read_text()
    except OSError as exc:  # the process has ended
        raise psutil.NoSuchProcess(process.pid) from exc
    fields = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in text.splitlines() if line.endswith(" kB")}
    return fields["Pss"], fields.get("Pss_Anon", fields["Pss"])


class TreeMemory:
    """Peak memory of a process and its descendants, sampled without disturbing them much.

    Reading PSS costs ~10 ms per torch process (the kernel walks every mapping),
    while RSS is nearly free. So RSS is read every :data:`SAMPLE_SECONDS`, and the
    tree's PSS when its summed RSS has moved by :attr:`PSS_STEP` since the last
    PSS reading, or :attr:`PSS_EVERY` seconds have passed: memory peaks are
    reached while RSS climbs, so the PSS peak is caught at a small fraction of
    the cost (a few % of one core).
    """

    PSS_STEP = 0.02
    PSS_EVERY = 0.5

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak_rss = 0
        self.peak_pss = 0
        self.peak_anon = 0
        self._last_rss = 0
        self._last_time = -math.inf

    def _members(self) -> list[psutil.Process]:
        try:
            return [self.process, *self.process.children(recursive=True)]
        except psutil.Error:
            return []

    def sample(self) -> None:
        rss = pss = anon = 0
        members = self._members()
        for member in members:
            with contextlib.suppress(psutil.Error):  # the process ended between listing and reading
                rss += member.memory_info().rss
        self.peak_rss = max(self.peak_rss, rss)
        now = time.monotonic()
        if abs(rss - self._last_rss) <= self.PSS_STEP * self._last_rss and now - self._last_time < self.PSS_EVERY:
            return
        for member in members:
            with contextlib.suppress(psutil.Error):
                member_pss, member_anon = _proportional(member)
                pss, anon = pss + member_pss, anon + member_anon
        self.peak_pss, self.peak_anon = max(self.peak_pss, pss), max(self.peak_anon, anon)
        self._last_rss, self._last_time = rss, now


def run_child(args: list[str], timeout: float) -> dict[str, Any]:
    """Run ``python -m convbench.bench.child ARGS`` while sampling its tree's memory; its JSON result plus peaks.

    The child runs in its own session so a timeout can stop its whole process group.
    """
    src = str(Path(convbench.__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")])))
    proc = subprocess.Popen(
        [sys.executable, "-m", "convbench.bench.child", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    memory = TreeMemory(proc.pid)
    deadline = time.monotonic() + timeout
    timed_out = False
    while proc.poll() is None:
        memory.sample()
        if time.monotonic() > deadline:
            timed_out = True
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(SAMPLE_SECONDS)
    out, err = proc.communicate()
    if timed_out:
        return {"status": "timeout", "reason": f"stopped after {timeout:.0f} s"}
    lines = out.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = err.strip().splitlines()[-1] if err.strip() else f"exit status {proc.returncode}"
        return {"status": "failed", "reason": tail}
    return json.loads(lines[-1]) | {"status": "ok", "peak_pss_mb": memory.peak_pss / MB,
                                    "peak_anon_mb": memory.peak_anon / MB, "peak_rss_mb": memory.peak_rss / MB}


def _child_or_fail(args: list[str], timeout: float) -> dict[str, Any]:
    result = run_child(args, timeout)
    if result["status"] != "ok":
        raise ConvbenchError(f"benchmark child `{' '.join(args)}` {result['status']}: {result['reason']}")
    return result


def measure_baseline(timeout: float) -> dict[str, Any]:
    """Memory of a child that only imports torch (what every approach pays before doing work).

    ``torchvision_anon_mb`` is what importing torchvision adds, part of the notebook's net figure.
    """
    torch_only = _child_or_fail(["baseline"], timeout)
    with_torchvision = _child_or_fail(["baseline", "torchvision"], timeout)
    return torch_only | {"torchvision_anon_mb": with_torchvision["peak_anon_mb"] - torch_only["peak_anon_mb"]}


def measure_loading(
    root: Path, manifest: Path, image_size: int, baseline: dict[str, Any], timeout: float
) -> dict[str, Any]:
    """Ours (``build_cache``, all cores) and the notebook's loop on the same tree at ``image_size``."""
    ours = _child_or_fail(["ours", str(root), str(manifest), str(image_size)], timeout)
    notebook = _child_or_fail(["notebook", str(root / "all"), str(image_size)], timeout)
    if ours["images"] != notebook["images"]:
        raise ConvbenchError(f"the cache stage read {ours['images']} images but ImageFolder {notebook['images']}")
    for result in (ours, notebook):
        result["images_per_second"] = result["images"] / result["seconds"]
        result["net_mb"] = result["peak_anon_mb"] - baseline["peak_anon_mb"]
    return {
        "image_size": image_size,
        "images": ours["images"],
        "ours": ours,
        "notebook": notebook,
        "speedup": ours["images_per_second"] / notebook["images_per_second"],
        "memory_ratio": ours["net_mb"] / notebook["net_mb"],
        "raw_memory_ratio": ours["peak_pss_mb"] / notebook["peak_pss_mb"],
    }


def decoding_share(file: str, name: str) -> str:
    """Which kind of work a profiled function is: Pillow, file I/O, numpy, convbench or other."""
    if "PIL" in file or "Imaging" in name:
        return "Pillow (JPEG headers, decoding, conversion)"
    if "io.open" in name or "_io." in name or "posix" in name:
        return "file I/O"
    if "numpy" in file:
        return "numpy"
    if "convbench" in file:
        return "convbench"
    return "other"


def profile_decoding(root: Path, image_size: int, limit: int, top: int) -> dict[str, Any]:
    """cProfile of the cache stage's per-image work (one process) on up to ``limit`` images.

    Returns the top functions by self time and the share of each kind of work.
    """
    import cProfile
    import pstats

    from convbench.data.cache import decode_all

    paths = [str(p) for p, _ in list_folder(root)][:limit]
    profiler = cProfile.Profile()
    profiler.runcall(decode_all, paths, image_size, 1)
    stats = pstats.Stats(profiler)
    total = stats.total_tt
    shares: dict[str, float] = {}
    for (file, _, name), (_, _, tt, _, _) in stats.stats.items():
        kind = decoding_share(file, name)
        shares[kind] = shares.get(kind, 0.0) + 100 * tt / total
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:top]
    return {
        "images": len(paths),
        "seconds": total,
        "shares": dict(sorted(shares.items(), key=lambda kv: -kv[1])),
        "top_functions": [
            {"function": f"{Path(file).name}:{line}({name})", "self_seconds": tt, "percent": 100 * tt / total}
            for (file, line, name), (_, _, tt, _, _) in rows
        ],
    }
