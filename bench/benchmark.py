"""``python bench/run.py [--quick] [--out reports] [--images DIR]``: how fast convbench trains and loads images.

Writes ``<out>/benchmark.json`` and ``<out>/benchmark.md``: our training step's and the course notebook's images/s
and their ratio, each step's share of the matmul peaks measured in the same run, the cache stage's and the notebook's
image loading speed and memory and their ratios, the machine and the load other processes put on it
(docs/benchmark.md). It reports and does not judge. ``--quick``: tiny models and images, for the plumbing only.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import torch

from bench import loading
from bench.report import write_reports
from bench.synthetic import synthetic_cache, write_image_folder
from bench.training import Rounds, matmul_peak, measure_training
from convbench.config import ConfigError, to_dict
from convbench.errors import run_stage
from convbench.families import FAMILIES, FamilyConfig
from convbench.params import load_params
from convbench.paths import Layout
from convbench.training.device import Runtime, machine_tags, resolve_runtime

QUICK_WIDTHS = (0.0625, 0.125, 0.25, 0.5)


@dataclass(frozen=True)
class Plan:
    """Sizes and round counts of one run (full or quick)."""

    quick: bool
    settings: dict[str, tuple[int, int]]
    """Setting name -> (image size, batch size); both the training and the loading comparison run at each."""
    rounds: Rounds
    peak_sizes: tuple[int, ...]
    peak_repeats: int
    synthetic: tuple[int, int, int]
    """(classes, images per class, side in px) of the generated image folder."""


FULL = Plan(quick=False, settings={"cifar": (32, 128), "notebook": (96, 64)},
            rounds=Rounds(warmup=6, least=3, most=15, budget_seconds=30), peak_sizes=(2048, 4096), peak_repeats=3,
            synthetic=(10, 1000, 32))
QUICK = Plan(quick=True, settings={"cifar": (32, 16), "notebook": (48, 8)},
             rounds=Rounds(warmup=1, least=2, most=2, budget_seconds=0), peak_sizes=(256,), peak_repeats=2,
             synthetic=(4, 6, 32))


def quick_config(config: FamilyConfig) -> FamilyConfig:
    """``config`` at the smallest width its family accepts (and no larger than its own)."""
    for width in QUICK_WIDTHS:
        if width >= config.width:
            break
        try:
            return dataclasses.replace(config, width=width)
        except ConfigError:
            continue
    return config


def cpu_seconds() -> tuple[float, float, float]:
    """(wall clock, busy CPU seconds of the whole machine, of this process and its finished children)."""
    machine, own = psutil.cpu_times(), psutil.Process().cpu_times()
    busy = machine.user + machine.nice + machine.system
    busy += getattr(machine, "irq", 0.0) + getattr(machine, "softirq", 0.0)
    return time.monotonic(), busy, own.user + own.system + own.children_user + own.children_system


def other_cores(start: tuple[float, float, float], end: tuple[float, float, float]) -> float:
    """Average cores that other processes kept busy between two :func:`cpu_seconds` readings."""
    return max(end[1] - start[1] - (end[2] - start[2]), 0.0) / max(end[0] - start[0], 1e-9)


def measure_peaks(runtime: Runtime, plan: Plan) -> dict[str, dict[str, Any]]:
    """bf16 and fp32 matmul peaks on the training device, best over the plan's sizes (doubled on a GPU)."""
    sizes = [2 * n if runtime.device.type == "cuda" else n for n in plan.peak_sizes]
    return {p: max((matmul_peak(runtime.device, p, n, plan.peak_repeats) for n in sizes), key=lambda r: r["flops"])
            for p in ("bf16", "fp32")}


def image_tree(images: Path | None, plan: Plan, subset: int, scratch: Path, seed: int) -> tuple[Path, Path, str]:
    """The staged tree the loaders read, its manifest, and where its images came from.

    ``--images``, else the project's data/images (full runs), else a synthetic folder.
    """
    if images is None and not plan.quick and Layout().images.is_dir():
        images = Layout().images
    if images is not None:
        source = str(images)
    else:
        classes, per_class, side = plan.synthetic
        images = write_image_folder(synthetic_cache(classes, per_class, side, seed), scratch / "synthetic")
        source = f"synthetic: {classes} classes x {per_class} JPEGs of {side}x{side} px"
    listing = loading.list_folder(images)
    root, manifest = loading.stage(listing, subset, scratch / "staged")
    return root, manifest, f"{source}; {min(subset, len(listing)):,} of its {len(listing):,} images"


def run_benchmark(params_path: Path, plan: Plan, out: Path, images: Path | None, subset: int) -> dict[str, Any]:
    """Measure everything, write ``out``/benchmark.json and benchmark.md, return the results."""
    params = load_params(params_path)
    start, load_start = cpu_seconds(), os.getloadavg()
    runtime = resolve_runtime(params.train)
    configs = {f: quick_config(params.models[f]) if plan.quick else params.models[f] for f in FAMILIES}
    print(f"bench: {'quick' if plan.quick else 'full'} run, {runtime.device.type} {runtime.precision} "
          f"channels_last={runtime.channels_last} {runtime.threads} threads", flush=True)
    with tempfile.TemporaryDirectory(prefix="convbench-bench-") as tmp:
        # staged first, so that a wrong --images fails before minutes of training
        root, manifest, source = image_tree(images, plan, subset, Path(tmp), params.train.seed)
        first_peaks = measure_peaks(runtime, plan)
        training: dict[str, dict[str, Any]] = {}
        for family in FAMILIES:
            for setting, (size, batch) in plan.settings.items():
                t = measure_training(configs[family], size, batch, params.train, runtime, plan.rounds)
                training.setdefault(family, {})[setting] = t
                print(f"bench: train {family} {size} px batch {batch}: ours {t['ours']['images_per_second']:,.0f} "
                      f"img/s, notebook {t['notebook']['images_per_second']:,.0f} img/s ({t['speedup']:.2f}x)",
                      flush=True)
        baseline_mb = loading.run_child(["baseline"])["peak_mb"]
        data: dict[str, Any] = {}
        for setting, (size, _) in plan.settings.items():
            c = data[setting] = loading.measure_loading(root, manifest, size, baseline_mb)
            print(f"bench: load {c['images']:,} images at {size} px: {c['speedup']:.2f}x the notebook's images/s, "
                  f"{c['memory_ratio']:.2f} of its net memory", flush=True)
    last_peaks = measure_peaks(runtime, plan)
    peaks = {p: max(first_peaks[p], last_peaks[p], key=lambda r: r["flops"]) for p in first_peaks}
    for t in (t for per_setting in training.values() for t in per_setting.values()):
        for side in ("ours", "notebook"):
            achieved = 3 * t["forward_flops_per_image"] * t[side]["images_per_second"]
            t[side]["utilisation"] = {p: achieved / peak["flops"] for p, peak in peaks.items()}
    results = {
        "mode": "quick" if plan.quick else "full",
        "machine": machine_tags(runtime) | {"torch": torch.__version__, "python": platform.python_version(),
                                            "platform": platform.platform(), "logical_cpus": os.cpu_count()},
        "models": {f: to_dict(c) for f, c in configs.items()},
        "train_params": to_dict(params.train),
        "settings": {name: {"image_size": s, "batch_size": b} for name, (s, b) in plan.settings.items()},
        "peaks": peaks,
        "peak_measurements": {"start": first_peaks, "end": last_peaks},
        "training": training,
        "loading": {"source": source, "baseline_mb": baseline_mb, "sizes": data},
        "noise": {"other_cores": other_cores(start, cpu_seconds()), "load_average": [load_start, os.getloadavg()]},
        "seconds": time.monotonic() - start[0],
    }
    write_reports(results, out)
    print(f"bench: wrote {out / 'benchmark.md'} and {out / 'benchmark.json'}", flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/run.py", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, a few steps: checks the plumbing")
    parser.add_argument("--out", type=Path, default=Path("reports"), help="folder for benchmark.md/.json")
    parser.add_argument("--images", type=Path, help="image folder for the loading comparison "
                        "(default: data/images, else a synthetic folder)")
    parser.add_argument("--subset", type=int, default=10_000,
                        help="load at most this many images of the folder (default 10000)")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    if args.subset < 1:
        parser.error("--subset must be at least 1")

    def body() -> None:
        run_benchmark(args.params, QUICK if args.quick else FULL, args.out, args.images, args.subset)

    return run_stage("bench", body)
