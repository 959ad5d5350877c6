"""``python bench/run.py [--quick] [--out reports] [--images DIR]``: how fast convbench trains and loads images.

Our training step and image loading against the course notebook's, with the machine and the load other processes
put on it, into ``<out>/benchmark.json`` and ``benchmark.md`` (docs/benchmark.md). It reports and does not judge.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import platform
import tempfile
import time
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


@dataclasses.dataclass(frozen=True)
class Plan:
    """Sizes and round counts of one run."""

    mode: str  # "full" or "quick"
    settings: dict[str, tuple[int, int]]  # name -> (image size, batch size), for the training and the loading alike
    rounds: Rounds
    peak_sizes: tuple[int, ...]
    peak_repeats: int
    synthetic: tuple[int, int, int]  # (classes, images per class, side in px) of the generated image folder


FULL = Plan("full", {"cifar": (32, 128), "notebook": (96, 64)}, Rounds(warmup=6, least=3, most=15, budget_seconds=30),
            peak_sizes=(2048, 4096), peak_repeats=3, synthetic=(10, 1000, 32))
QUICK = Plan("quick", {"cifar": (32, 16), "notebook": (48, 8)}, Rounds(warmup=1, least=2, most=2, budget_seconds=0),
             peak_sizes=(256,), peak_repeats=2, synthetic=(4, 6, 32))


def quick_config(config: FamilyConfig) -> FamilyConfig:
    """``config`` at the smallest width its family accepts (and no larger than its own)."""
    for width in (w for w in (0.0625, 0.125, 0.25, 0.5) if w < config.width):
        with contextlib.suppress(ConfigError):
            return dataclasses.replace(config, width=width)
    return config


def busy_elsewhere() -> tuple[float, float]:
    """(wall clock, busy CPU seconds of the whole machine less those of this process and its finished children)."""
    machine, own = psutil.cpu_times(), psutil.Process().cpu_times()
    busy = sum(getattr(machine, field, 0.0) for field in ("user", "nice", "system", "irq", "softirq"))
    return time.monotonic(), busy - (own.user + own.system + own.children_user + own.children_system)


def measure_peaks(runtime: Runtime, plan: Plan) -> dict[str, dict[str, Any]]:
    """bf16 and fp32 matmul peaks on the training device, best over the plan's sizes (doubled on a GPU)."""
    sizes = [2 * n if runtime.device.type == "cuda" else n for n in plan.peak_sizes]
    return {p: max((matmul_peak(runtime.device, p, n, plan.peak_repeats) for n in sizes), key=lambda r: r["flops"])
            for p in ("bf16", "fp32")}


def image_tree(images: Path | None, plan: Plan, subset: int, scratch: Path, seed: int) -> tuple[Path, Path, str]:
    """The staged tree the loaders read, its manifest and source: ``images``, data/images (full runs) or synthetic."""
    if images is None and plan.mode == "full" and Layout().images.is_dir():
        images = Layout().images
    if images is None:
        classes, per_class, side = plan.synthetic
        images = write_image_folder(synthetic_cache(classes, per_class, side, seed), scratch / "synthetic")
        source = f"synthetic: {classes} classes x {per_class} JPEGs of {side}x{side} px"
    else:
        source = str(images)
    listing = loading.list_folder(images)
    root, manifest = loading.stage(listing, subset, scratch / "staged")
    return root, manifest, f"{source}; {min(subset, len(listing)):,} of its {len(listing):,} images"


def run_benchmark(params_path: Path, plan: Plan, out: Path, images: Path | None, subset: int) -> None:
    """Measure everything, write ``out``/benchmark.json and benchmark.md."""
    params = load_params(params_path)
    start, load_start = busy_elsewhere(), os.getloadavg()
    runtime = resolve_runtime(params.train)
    configs = {f: quick_config(params.models[f]) if plan.mode == "quick" else params.models[f] for f in FAMILIES}
    print(f"bench: {plan.mode} run, {runtime.device.type} {runtime.precision} "
          f"channels_last={runtime.channels_last} {runtime.threads} threads", flush=True)
    with tempfile.TemporaryDirectory(prefix="convbench-bench-") as tmp:
        # staged first, so that a wrong --images fails before minutes of training
        root, manifest, source = image_tree(images, plan, subset, Path(tmp), params.train.seed)
        first_peaks = measure_peaks(runtime, plan)
        training = {f: {s: measure_training(configs[f], size, batch, params.train, runtime, plan.rounds)
                        for s, (size, batch) in plan.settings.items()} for f in FAMILIES}
        baseline_mb = loading.run_child(["baseline"])["peak_mb"]
        data = {s: loading.measure_loading(root, manifest, size, baseline_mb) for s, (size, _) in plan.settings.items()}
    last_peaks = measure_peaks(runtime, plan)
    peaks = {p: max(first_peaks[p], last_peaks[p], key=lambda r: r["flops"]) for p in first_peaks}
    for t in (t for per_setting in training.values() for t in per_setting.values()):
        for side in ("ours", "notebook"):
            achieved = 3 * t["forward_flops_per_image"] * t[side]["images_per_second"]
            t[side]["utilisation"] = {p: achieved / peak["flops"] for p, peak in peaks.items()}
    end = busy_elsewhere()
    write_reports({
        "mode": plan.mode,
        "machine": machine_tags(runtime) | {"torch": torch.__version__, "python": platform.python_version(),
                                            "platform": platform.platform(), "logical_cpus": os.cpu_count()},
        "models": {f: to_dict(c) for f, c in configs.items()},
        "train_params": to_dict(params.train),
        "settings": {name: {"image_size": s, "batch_size": b} for name, (s, b) in plan.settings.items()},
        "peaks": peaks,
        "peak_measurements": {"start": first_peaks, "end": last_peaks},
        "training": training,
        "loading": {"source": source, "baseline_mb": baseline_mb, "sizes": data},
        "noise": {"other_cores": max(end[1] - start[1], 0.0) / (end[0] - start[0]),
                  "load_average": [load_start, os.getloadavg()]},
        "seconds": end[0] - start[0],
    }, out)
    print(f"bench: wrote {out / 'benchmark.md'} and {out / 'benchmark.json'}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/run.py", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, a few steps: checks the plumbing")
    parser.add_argument("--out", type=Path, default=Path("reports"), help="folder for benchmark.md/.json")
    parser.add_argument("--images", type=Path, help="image folder to load (default: data/images, else a synthetic one)")
    parser.add_argument("--subset", type=int, default=10_000, help="at most this many of its images (default 10000)")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    if args.subset < 1:
        parser.error("--subset must be at least 1")
    plan = QUICK if args.quick else FULL
    return run_stage("bench", lambda: run_benchmark(args.params, plan, args.out, args.images, args.subset))
