"""Work the benchmark runs in a child process: ``python -m convbench.bench.child COMMAND ARGS``.

A child prints one JSON line (its last stdout line) and keeps its result alive
for :data:`HOLD_SECONDS` so the parent's memory sampler sees its final footprint.

* ``baseline [torchvision]``: only ``import torch`` (and torchvision);
* ``ours IMAGES MANIFEST SIZE``: the cache stage's :func:`~convbench.data.cache.build_cache`;
* ``notebook ROOT SIZE``: the notebook's ImageFolder loop;
* ``compile SPEC_JSON``: ``torch.compile`` against eager (isolated so a slow compile can be stopped).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

HOLD_SECONDS = 0.6


def _timed_build(args: list[str]) -> tuple[Any, dict[str, Any]]:
    command = args[0]
    if command == "baseline":
        import torch

        if args[1:] == ["torchvision"]:
            import torchvision

            return torchvision, {}
        return torch, {}
    if command == "ours":
        from convbench.data.cache import build_cache

        images, manifest, size = Path(args[1]), Path(args[2]), int(args[3])
        start = time.perf_counter()
        cache = build_cache(images, manifest, size)
        return cache, {"seconds": time.perf_counter() - start, "images": len(cache.labels),
                       "bytes": cache.images.numel() * cache.images.element_size()}
    if command == "notebook":
        from convbench.bench.notebook import notebook_image_dataset

        root, size = Path(args[1]), int(args[2])
        start = time.perf_counter()
        dataset = notebook_image_dataset(root, size)
        images = dataset.tensors[0]
        return dataset, {"seconds": time.perf_counter() - start, "images": len(dataset),
                         "bytes": images.numel() * images.element_size()}
    if command == "compile":
        return None, compile_child(json.loads(args[1]))
    raise SystemExit(f"unknown child command {command!r}")


def compile_child(spec: dict[str, Any]) -> dict[str, Any]:
    """Rebuild the workload from ``spec`` and time compiled against eager (see ``compiled_against_eager``).

    Inductor's on-disk caches are off, so the compile time is that of a first compile.
    """
    os.environ["TORCHINDUCTOR_FORCE_DISABLE_CACHES"] = "1"
    import torch

    from convbench.bench.training import Rounds, Workload, compiled_against_eager
    from convbench.params import TrainParams
    from convbench.training.device import Runtime

    torch.set_num_threads(spec["threads"])
    runtime = Runtime(torch.device(spec["device"]), spec["precision"], spec["channels_last"], spec["threads"])
    workload = Workload(spec["family"], spec["section"], spec["image_size"], spec["batch_size"])
    return compiled_against_eager(workload, TrainParams(**spec["train"]), runtime, spec["precision"],
                                  spec["channels_last"], Rounds(**spec["rounds"]))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    held, result = _timed_build(args)
    time.sleep(HOLD_SECONDS)
    print(json.dumps(result))
    del held
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
