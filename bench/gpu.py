"""``python -m bench.gpu --archive cifar10.zip``: one epoch of a recipe per model, on the GPU.

The second half of ``bench/gpu_check.sh``: the recipe (``course`` by default) over params.yaml, its data prepared by
the pipeline's own functions and its models trained by the real :class:`~convbench.training.loop.Trainer` at the
recipe's settings, so the figures are the pipeline's. It needs no DVC or MLflow, so it runs on a bare GPU image, from
the project root with ``src`` importable (``gpu_check.sh`` sets ``PYTHONPATH``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from convbench.config import to_dict
from convbench.data.cache import build_cache
from convbench.data.format import Cache
from convbench.data.split import describe_split, make_split
from convbench.data.unzip import unzip_archive
from convbench.errors import run_stage
from convbench.families import FAMILIES, FamilyConfig, ResNeXtConfig
from convbench.models import summarize
from convbench.params import Params
from convbench.paths import project_root
from convbench.recipes import check, load_recipe, parse_override
from convbench.training.build import build_untrained
from convbench.training.device import resolve_runtime
from convbench.training.loop import Trainer


def prepare(params: Params, archive: Path, work: Path) -> tuple[Cache, dict[str, torch.Tensor]]:
    """Unzip, cache and split ``archive`` under ``work`` exactly as the data stages would."""
    data, images, manifest = params.data, work / "images", work / "unzip.json"
    start = time.perf_counter()
    unzip_archive(archive, images, manifest, max_files=data.max_files, max_bytes=data.max_bytes,
                  max_ratio=data.max_ratio, max_file_bytes=data.max_file_bytes)
    cache = build_cache(images, manifest, data.image_size)
    split = make_split(cache.labels.numpy(), cache.origin.numpy(), val_fraction=data.val_fraction,
                       test_fraction=data.test_fraction, seed=data.seed, max_per_class=data.max_per_class,
                       stratify=data.stratify, classes=cache.classes)
    print(f"data: {len(cache.labels):,} images at {data.image_size}px in {time.perf_counter() - start:.0f} s; "
          f"{describe_split(split, cache.origin.numpy())}", flush=True)
    return cache, {k: torch.tensor(v, dtype=torch.long) for k, v in split.items()}


def one_epoch(config: FamilyConfig, params: Params, cache: Cache, split: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Train ``config``'s model, built as the train stage builds it (``train.whiten``'s stem included), for the first
    epoch of ``params.train``; speed, accuracy and peak memory."""
    runtime = resolve_runtime(params.train)
    cuda = runtime.device.type == "cuda"
    torch.manual_seed(params.train.seed)
    model = build_untrained(config, params.train.whiten, cache, split)
    size = summarize(model, cache.image_size)
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(runtime.device)
    trainer = Trainer(model, cache, split, params.train, runtime, progress=model.family)
    row = trainer.train_epoch(1)
    val_loss, val_accuracy = trainer.evaluate(split["val"])
    return {
        "family": model.family, "model": to_dict(config), "params": size.params, "macs": size.macs,
        "device": torch.cuda.get_device_name(runtime.device) if cuda else "cpu",
        "precision": runtime.precision, "channels_last": runtime.channels_last,
        "batch_size": trainer.batch_size, "train_images": trainer.steps_per_epoch * trainer.batch_size,
        "train_seconds": row["train_seconds"], "images_per_second": row["images_per_second"],
        "train_loss": row["train_loss"], "val_loss": val_loss, "val_accuracy": val_accuracy,
        "peak_memory_bytes": torch.cuda.max_memory_allocated(runtime.device) if cuda else 0,
    }


def run_check(recipe_name: str, archive: Path, work: Path, settings: dict[str, Any]) -> list[dict[str, Any]]:
    """One epoch of every model in every run of ``recipe_name`` (models shared by runs are trained once)."""
    base = yaml.safe_load((project_root() / "params.yaml").read_text()) or {}
    runs = check(load_recipe(recipe_name), base, {"data.archive": str(archive), **settings})
    cache, split = prepare(runs[0], archive, work)
    results, done = [], []
    for params in runs:
        for config in (params.models[family] for family in FAMILIES):
            if config in done:
                continue
            done.append(config)
            r = one_epoch(config, params, cache, split)
            results.append(r)
            groups = f" {config.cardinality}x{config.base_width}d" if isinstance(config, ResNeXtConfig) else ""
            print(f"{r['family'] + groups:<16} {r['params'] / 1e6:6.2f} M params {r['macs'] / 1e9:6.2f} GMACs | "
                  f"{r['images_per_second']:8,.0f} img/s  {r['train_seconds']:6.1f} s/epoch | "
                  f"val acc {r['val_accuracy']:.4f} | peak {r['peak_memory_bytes'] / 2**30:5.2f} GiB | "
                  f"{r['device']} {r['precision']} batch {r['batch_size']}", flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=Path, required=True, help="the dataset zip (CIFAR-10's by default)")
    parser.add_argument("--work", type=Path, required=True, help="scratch folder for the extracted images")
    parser.add_argument("--recipe", default="course")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("-S", "--set-param", action="append", default=[], metavar="KEY=VALUE",
                        help="override a params key, e.g. -S data.image_size=32 for a quick check")
    args = parser.parse_args(argv)

    def body() -> None:
        results = run_check(args.recipe, args.archive, args.work, dict(map(parse_override, args.set_param)))
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(results, indent=2))

    return run_stage("bench.gpu", body)


if __name__ == "__main__":
    raise SystemExit(main())
