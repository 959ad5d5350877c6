"""Loading images: the cache stage against the notebook's ImageFolder loop, in speed and peak memory.

Both read the same staged copy of an image folder (page cache warm for both), each in its own child process
(``python -m bench.loading``) while this process reads the memory of the child's process tree with psutil: PSS (a
page shared by k processes counts 1/k in each, so the cache stage's forked workers are not counted twice), USS where
the OS has no PSS. Net memory is that peak less the peak of a child that only imports what the others import before
working (torch): the memory the work itself allocated.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from convbench.data.format import ORIGINS
from convbench.data.unzip import is_image_name
from convbench.errors import ConvbenchError

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_SECONDS = 0.02
HOLD_SECONDS = 0.5  # a child keeps its result alive this long after the work, so the sampler sees its final footprint
MB = 2**20


def list_folder(images: Path) -> list[tuple[Path, str]]:
    """``(file, class)`` of every image in the unzip stage's tree (``<origin>/<class>/``) or in ``<class>/`` folders."""
    if not images.is_dir():
        raise ConvbenchError(f"{images}: not a folder; pass --images a folder of <class>/<image> files")
    roots = [images / origin for origin in ORIGINS if (images / origin).is_dir()] or [images]
    found = sorted(
        (Path(folder, name), cls.name)
        for root in roots for cls in root.iterdir() if cls.is_dir()
        for folder, _, names in os.walk(cls) for name in names if is_image_name(name)
    )
    if not found:
        raise ConvbenchError(f"{images}: no images in class folders; pass --images a folder of <class>/<image> files")
    return found


def stage(listing: list[tuple[Path, str]], limit: int, dest: Path) -> tuple[Path, Path]:
    """At most ``limit`` images, evenly spaced over ``listing``, copied as the unzip stage lays them out
    (``dest/images/all/<class>/``; the notebook reads ``all/``), and the manifest ``build_cache`` checks."""
    picked = listing if len(listing) <= limit else [listing[i * len(listing) // limit] for i in range(limit)]
    root, written = dest / "images", 0
    for i, (path, cls) in enumerate(picked):
        target = root / "all" / cls / f"{i:06d}{path.suffix.lower()}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        written += target.stat().st_size
    manifest = dest / "unzip.json"
    manifest.write_text(json.dumps({"classes": sorted({c for _, c in picked}), "files": len(picked), "bytes": written}))
    return root, manifest


def tree_memory(process: psutil.Process) -> int:
    """Bytes held by ``process`` and its descendants: summed PSS (USS where the OS has no PSS)."""
    total = 0
    with contextlib.suppress(psutil.Error):  # the child has just ended
        for member in [process, *process.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):  # a worker has just ended
                info = member.memory_full_info()
                total += getattr(info, "pss", info.uss)
    return total


def run_child(args: list[str]) -> dict[str, Any]:
    """Run ``python -m bench.loading ARGS`` from this checkout; its JSON result plus its tree's ``peak_mb``."""
    path = os.pathsep.join(filter(None, [str(ROOT), str(ROOT / "src"), os.environ.get("PYTHONPATH")]))
    proc = subprocess.Popen([sys.executable, "-m", "bench.loading", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": path})
    process, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        peak = max(peak, tree_memory(process))
        time.sleep(SAMPLE_SECONDS)
    out, err = proc.communicate()
    if proc.returncode != 0 or not out.strip():
        reason = err.strip().splitlines()[-1] if err.strip() else f"exit status {proc.returncode}"
        raise ConvbenchError(f"benchmark child `{' '.join(args)}` failed: {reason}")
    return json.loads(out.splitlines()[-1]) | {"peak_mb": peak / MB}


def measure_loading(root: Path, manifest: Path, image_size: int, baseline_mb: float) -> dict[str, Any]:
    """The cache stage (all cores, uint8) and the notebook's loop on the tree at ``root``, at ``image_size``."""
    ours = run_child(["ours", str(root), str(manifest), str(image_size)])
    notebook = run_child(["notebook", str(root / "all"), str(image_size)])
    if ours["images"] != notebook["images"]:
        raise ConvbenchError(f"the cache stage read {ours['images']} images but ImageFolder {notebook['images']}")
    for result in (ours, notebook):
        result |= {"images_per_second": result["images"] / result["seconds"], "net_mb": result["peak_mb"] - baseline_mb}
    speedup = ours["images_per_second"] / notebook["images_per_second"]
    memory_ratio = ours["net_mb"] / notebook["net_mb"]
    print(f"bench: load {ours['images']:,} images at {image_size} px: {speedup:.2f}x the notebook's images/s, "
          f"{memory_ratio:.2f} of its net memory", flush=True)
    return {"image_size": image_size, "images": ours["images"], "ours": ours, "notebook": notebook,
            "speedup": speedup, "memory_ratio": memory_ratio}


def child(args: list[str]) -> dict[str, Any]:
    """One child's work: ``baseline``, ``ours TREE MANIFEST SIZE`` or ``notebook FOLDER SIZE``."""
    command, *rest = args
    if command == "baseline":
        return {}
    start = time.perf_counter()
    if command == "ours":
        from convbench.data.cache import build_cache
        images = build_cache(Path(rest[0]), Path(rest[1]), int(rest[2])).images
    else:
        from bench.notebook import notebook_image_dataset
        images = notebook_image_dataset(Path(rest[0]), int(rest[1])).tensors[0]
    seconds = time.perf_counter() - start
    time.sleep(HOLD_SECONDS)
    return {"seconds": seconds, "images": len(images), "tensor_mb": images.numel() * images.element_size() / MB}


if __name__ == "__main__":
    print(json.dumps(child(sys.argv[1:])))
