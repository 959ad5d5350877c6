"""``convbench bench [--quick] [--out reports] [--images DIR]``: measure, check the targets, write the report.

Writes ``<out>/benchmark.json`` (every figure and the machine) and
``<out>/benchmark.md`` (the tables, the targets met or missed, and a profile of
each missed case). ``--quick`` runs tiny models on tiny images for a few steps
to check the plumbing in well under a minute; its figures mean nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from convbench.bench import loading, training
from convbench.bench.machine import cpu_counters, load_average, machine_info, matmul_peak, others_between, utilisation
from convbench.bench.report import write_reports
from convbench.bench.training import Rounds, Workload
from convbench.config import to_dict
from convbench.errors import run_stage
from convbench.evaluation.evaluate import EvalSettings
from convbench.families import FAMILIES, FamilyConfig, model_config
from convbench.params import Params, load_params
from convbench.paths import Layout
from convbench.training.device import Runtime, cpu_supports_bf16, resolve_runtime

TRAIN_SPEEDUP = 3.0
RESNET_UTILISATION = 0.35
CACHE_SPEEDUP = 4.0
CACHE_MEMORY = 1 / 3
QUICK_WIDTHS = (0.0625, 0.125, 0.25, 0.5)
VARIANT_FAMILY = "resnext"
COMPILE_TIMEOUT = 600.0


@dataclass(frozen=True)
class Plan:
    """Sizes, round counts and time limits of one benchmark run (full or quick)."""

    quick: bool
    settings: dict[str, tuple[int, int]]
    """``cifar`` and ``notebook``: (image size, batch size)."""
    rounds: Rounds
    variant_rounds: Rounds
    compile_rounds: Rounds
    variant_batches: tuple[int, ...]
    eval_settings: EvalSettings
    eval_batch_cap: int | None
    peak_sizes: tuple[int, ...]
    peak_repeats: int
    synthetic_folder: tuple[int, int, int]
    """(classes, images per class, side in px) of the generated image folder."""
    profile_steps: int
    profile_top: int
    child_timeout: float


FULL = Plan(
    quick=False,
    settings={"cifar": (32, 128), "notebook": (96, 64)},
    rounds=Rounds(warmup=6, least=3, most=15, budget_seconds=30),
    variant_rounds=Rounds(warmup=6, least=3, most=3, budget_seconds=0),
    compile_rounds=Rounds(warmup=6, least=5, most=10, budget_seconds=20),
    variant_batches=(64, 128, 256),
    eval_settings=EvalSettings(warmup=1, throughput_batches=3, latency_runs=20),
    eval_batch_cap=None,
    peak_sizes=(2048, 4096),
    peak_repeats=3,
    synthetic_folder=(10, 1000, 32),
    profile_steps=3,
    profile_top=12,
    child_timeout=1800,
)

QUICK = Plan(
    quick=True,
    settings={"cifar": (32, 16), "notebook": (48, 8)},
    rounds=Rounds(warmup=1, least=2, most=2, budget_seconds=0),
    variant_rounds=Rounds(warmup=1, least=1, most=1, budget_seconds=0),
    compile_rounds=Rounds(warmup=1, least=2, most=2, budget_seconds=0),
    variant_batches=(8, 16),
    eval_settings=EvalSettings(warmup=1, throughput_batches=1, latency_runs=2),
    eval_batch_cap=32,
    peak_sizes=(256,),
    peak_repeats=2,
    synthetic_folder=(4, 24, 32),
    profile_steps=1,
    profile_top=8,
    child_timeout=300,
)


def quick_section(family: str, config: FamilyConfig) -> dict[str, Any]:
    """``config``'s section with the smallest width that the family accepts (and no larger than its own)."""
    section = to_dict(config)
    for candidate in QUICK_WIDTHS:
        if candidate >= config.width:
            break
        try:
            model_config(family, **(section | {"width": candidate}))
        except ValueError:
            continue
        return section | {"width": candidate}
    return section


class Progress:
    """Timestamped progress lines, and for each phase the load average and the cores other processes used."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.phases: list[dict[str, Any]] = []
        self.counters = self.first = cpu_counters()

    def phase(self, name: str) -> None:
        self.close_phase()
        load = load_average()
        self.phases.append({"phase": name, "load_average": load, "at_seconds": round(self.elapsed, 1)})
        self.say(f"== {name} (load average {load[0] if load else 'n/a'})")

    def close_phase(self) -> None:
        """Record how busy other processes kept the machine during the phase that just ended."""
        now = cpu_counters()
        if self.phases:
            self.phases[-1] |= others_between(self.counters, now)
        self.counters = now

    def noise(self) -> dict[str, float]:
        """Cores used by other processes (and stolen) over the whole run so far."""
        return others_between(self.first, cpu_counters())

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def say(self, text: str) -> None:
        print(f"[{self.elapsed:6.0f} s] {text}", flush=True)


def measure_peaks(runtime: Runtime, plan: Plan, progress: Progress) -> dict[str, dict[str, Any]]:
    """bf16 and fp32 matmul peaks on the training device, best over the plan's sizes (GPUs get larger ones)."""
    sizes = tuple(2 * s for s in plan.peak_sizes) if runtime.device.type == "cuda" else plan.peak_sizes
    peaks = {}
    for precision in ("bf16", "fp32"):
        runs = [matmul_peak(runtime.device, precision, n, plan.peak_repeats) for n in sizes]
        peaks[precision] = max(runs, key=lambda r: r["flops"])
        progress.say(f"matmul peak {precision}: {peaks[precision]['flops'] / 1e9:,.0f} GFLOP/s "
                     f"({peaks[precision]['size']}x{peaks[precision]['size']})")
    return peaks


def add_utilisation(results: dict[str, Any], peaks: dict[str, dict[str, Any]]) -> None:
    """Every throughput's fraction of each peak (done once, at the end, when the best peaks are known)."""
    for per_setting in results["training"].values():
        for r in per_setting.values():
            for side in ("ours", "reference"):
                r[side]["utilisation"] = utilisation(r["train_flops_per_image"], r[side]["images_per_second"], peaks)
    variants = results["resnext_variants"]
    for row in variants["rows"]:
        row["utilisation"] = utilisation(row["train_flops_per_image"], row["images_per_second"], peaks)
    if variants["compile"]["status"] == "ok":
        compiled = variants["compile"]["compiled"]
        compiled["utilisation"] = utilisation(variants["rows"][0]["train_flops_per_image"],
                                              compiled["images_per_second"], peaks)
    for per_setting in results["inference"].values():
        for e in per_setting.values():
            e["utilisation"] = utilisation(e["forward_flops_per_image"], e["images_per_second"], peaks)


def compile_variant(
    section: dict[str, Any], fastest: dict[str, Any], image_size: int, params: Params, runtime: Runtime,
    plan: Plan, timeout: float,
) -> dict[str, Any]:
    """torch.compile of the fastest eager ResNeXt variant, in a child process stopped after ``timeout`` s."""
    base = {"variant": training.variant_label(fastest["precision"], fastest["channels_last"], fastest["batch_size"],
                                              compiled=True)}
    if timeout <= 0:
        return base | {"status": "skipped", "reason": "--compile-timeout 0" + (" (quick mode)" if plan.quick else "")}
    spec = {
        "family": VARIANT_FAMILY, "section": section, "image_size": image_size,
        "batch_size": fastest["batch_size"], "precision": fastest["precision"],
        "channels_last": fastest["channels_last"], "device": str(runtime.device), "threads": runtime.threads,
        "train": to_dict(params.train), "rounds": dataclasses.asdict(plan.compile_rounds),
    }
    result = loading.run_child(["compile", json.dumps(spec)], timeout)
    if result["status"] != "ok":
        return base | {"status": "skipped", "reason": f"torch.compile {result['status']}: {result['reason']}"}
    return base | result


def image_source(images: Path | None, plan: Plan, scratch: Path, seed: int) -> tuple[Path, str]:
    """The folder the cache comparison reads, and a description: --images, else data/images, else synthetic."""
    if images is not None:
        return images, f"--images {images}"
    if not plan.quick and Layout().images.is_dir():
        return Layout().images, f"the project's {Layout().images}"
    classes, per_class, side = plan.synthetic_folder
    folder = loading.synthetic_image_folder(scratch / "synthetic", classes, per_class, side, seed)
    return folder, f"synthetic: {classes} classes x {per_class} JPEGs of {side}x{side} px (quality 75)"


def check_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target with its measured value and whether it is met; ``case`` names what to profile if missed."""
    targets = []
    for family, per_setting in results["training"].items():
        for setting, r in per_setting.items():
            targets.append({
                "target": f"training {family} @ {setting} ({r['image_size']} px, batch {r['batch_size']}): "
                          f"ours >= {TRAIN_SPEEDUP:g}x the notebook step",
                "value": r["speedup"], "threshold": TRAIN_SPEEDUP, "unit": "x", "met": r["speedup"] >= TRAIN_SPEEDUP,
                "case": f"train:{family}:{setting}",
            })
    for setting, r in results["training"]["resnet"].items():
        u = r["ours"]["utilisation"]["bf16"]
        targets.append({
            "target": f"ResNet @ {setting} ({r['image_size']} px, batch {r['batch_size']}): "
                      f">= {RESNET_UTILISATION:.0%} of the bf16 matmul peak",
            "value": u, "threshold": RESNET_UTILISATION, "unit": "fraction", "met": u >= RESNET_UTILISATION,
            "case": f"train:resnet:{setting}",
        })
    for setting, c in results["cache"]["sizes"].items():
        targets.append({
            "target": f"cache @ {c['image_size']} px: >= {CACHE_SPEEDUP:g}x the notebook's images/s",
            "value": c["speedup"], "threshold": CACHE_SPEEDUP, "unit": "x", "met": c["speedup"] >= CACHE_SPEEDUP,
            "case": f"cache:{setting}",
        })
        targets.append({
            "target": f"cache @ {c['image_size']} px: <= 1/3 of the notebook's peak memory (net of `import torch`)",
            "value": c["memory_ratio"], "threshold": CACHE_MEMORY, "unit": "fraction",
            "met": 0 <= c["memory_ratio"] <= CACHE_MEMORY, "case": f"cache:{setting}",
        })
    return targets


def profile_missed(
    targets: list[dict[str, Any]], results: dict[str, Any], sections: dict[str, dict[str, Any]], params: Params,
    runtime: Runtime, plan: Plan, staged: Path, progress: Progress,
) -> dict[str, Any]:
    """A profile of every case behind a missed target (once per case)."""
    profiles: dict[str, Any] = {}
    for case in dict.fromkeys(t["case"] for t in targets if not t["met"]):
        kind, *rest = case.split(":")
        progress.say(f"profiling missed case {case}")
        if kind == "train":
            family, setting = rest
            size, batch = plan.settings[setting]
            trainer = training.variant_trainer(Workload(family, sections[family], size, batch), params.train, runtime,
                                               runtime.precision, runtime.channels_last, compiled=False)
            profiles[case] = training.profile_steps(trainer, plan.profile_steps, plan.rounds.warmup, runtime.device,
                                                    plan.profile_top)
        else:
            size = results["cache"]["sizes"][rest[0]]["image_size"]
            profiles[case] = loading.profile_decoding(staged, size, 2000, plan.profile_top)
    return profiles


def training_phase(sections: dict[str, dict[str, Any]], params: Params, runtime: Runtime, plan: Plan,
                   progress: Progress) -> dict[str, Any]:
    """Ours against the notebook's step for every family and setting."""
    results: dict[str, Any] = {}
    for family in FAMILIES:
        results[family] = {}
        for setting, (size, batch) in plan.settings.items():
            r = training.measure_training(Workload(family, sections[family], size, batch), params.train, runtime,
                                          plan.rounds)
            results[family][setting] = r
            progress.say(f"train {family} {size}px b{batch}: ours {r['ours']['images_per_second']:,.0f} img/s, "
                         f"notebook {r['reference']['images_per_second']:,.0f} img/s -> {r['speedup']:.2f}x")
    return results


def variants_phase(section: dict[str, Any], params: Params, runtime: Runtime, plan: Plan, compile_timeout: float,
                   progress: Progress) -> dict[str, Any]:
    """ResNeXt under every precision, memory format and batch size, then the best one compiled."""
    size = plan.settings["cifar"][0]
    native_bf16 = torch.cuda.is_bf16_supported() if runtime.device.type == "cuda" else cpu_supports_bf16()
    precisions = ("bf16", "fp32") if native_bf16 else ("fp32",)
    default_batch = plan.settings["cifar"][1] if plan.quick else params.train.batch_size
    rows = training.measure_variants(VARIANT_FAMILY, section, size, plan.variant_batches, precisions,
                                     default_batch, params.train, runtime, plan.variant_rounds)
    for row in rows:
        progress.say(f"{VARIANT_FAMILY} {row['variant']}: {row['images_per_second']:,.0f} img/s, "
                     f"{row['relative_to_default']:.2f}x the default measured alongside")
    fastest = max(rows, key=lambda r: r["relative_to_default"])
    progress.say(f"torch.compile of {fastest['variant']} (time limit {compile_timeout:.0f} s)")
    compiled = compile_variant(section, fastest, size, params, runtime, plan, compile_timeout)
    best = fastest["variant"]
    if compiled["status"] == "ok":
        compiled["relative_to_default"] = fastest["relative_to_default"] * compiled["speedup"]
        best = compiled["variant"] if compiled["speedup"] > 1 else best
        progress.say(f"compiled: {compiled['compiled']['images_per_second']:,.0f} img/s vs eager "
                     f"{compiled['eager']['images_per_second']:,.0f} img/s, "
                     f"compile {compiled['compile_seconds']:.0f} s")
    else:
        progress.say(f"compile {compiled['reason']}")
    return {
        "image_size": size,
        "rows": rows,
        "compile": compiled,
        "fastest_eager": fastest["variant"],
        "fastest": best,
        "default": training.variant_label(runtime.precision, runtime.channels_last, default_batch),
    }


def inference_phase(sections: dict[str, dict[str, Any]], params: Params, runtime: Runtime, plan: Plan,
                    progress: Progress) -> dict[str, Any]:
    """Evaluation throughput for every family and setting, at the eval batch size."""
    results: dict[str, Any] = {}
    eval_batch = min(params.train.eval_batch_size, plan.eval_batch_cap or params.train.eval_batch_size)
    for family in FAMILIES:
        results[family] = {}
        for setting, (size, batch) in plan.settings.items():
            r = training.measure_inference(Workload(family, sections[family], size, batch), params.train, runtime,
                                           eval_batch, plan.eval_settings)
            results[family][setting] = r
            progress.say(f"eval {family} {size}px b{eval_batch}: {r['images_per_second']:,.0f} img/s, "
                         f"{r['latency_ms']:.1f} ms at batch 1")
    return results


def cache_phase(folder: Path, description: str, subset: int, plan: Plan, scratch: Path,
                progress: Progress) -> tuple[dict[str, Any], Path]:
    """The cache stage against the notebook's loader at each setting's size; also returns the staged tree."""
    listing = loading.list_folder(folder)
    staged, manifest, classes = loading.stage_subset(listing, subset, scratch / "staged")
    n = min(len(listing), subset)
    results: dict[str, Any] = {
        "source": {"folder": str(folder), "description": description, "images_in_folder": len(listing),
                   "images_measured": n, "classes": len(classes),
                   "subset": f"every {len(listing) / n:.2f}th image of the sorted listing"
                             if n < len(listing) else "all images"},
    }
    progress.say(f"{n:,} of {len(listing):,} images from {description}")
    baseline = results["baseline"] = loading.measure_baseline(plan.child_timeout)
    progress.say(f"`import torch` alone: {baseline['peak_pss_mb']:,.0f} MB PSS, "
                 f"{baseline['peak_anon_mb']:,.0f} MB anonymous")
    results["sizes"] = {}
    for setting, (size, _) in plan.settings.items():
        c = loading.measure_loading(staged, manifest, size, baseline, plan.child_timeout)
        results["sizes"][setting] = c
        progress.say(f"cache {size}px: ours {c['ours']['images_per_second']:,.0f} img/s, "
                     f"{c['ours']['net_mb']:,.0f} MB net; notebook {c['notebook']['images_per_second']:,.0f} "
                     f"img/s, {c['notebook']['net_mb']:,.0f} MB net -> {c['speedup']:.1f}x, "
                     f"{c['memory_ratio']:.2f} of the memory")
    return results, staged


def run_benchmark(params: Params, plan: Plan, out: Path, images: Path | None, subset: int,
                  compile_timeout: float) -> dict[str, Any]:
    """Measure everything, write ``out``/benchmark.json and benchmark.md, return the results."""
    progress = Progress()
    runtime = resolve_runtime(params.train)
    sections = {f: (quick_section(f, params.models[f]) if plan.quick else to_dict(params.models[f])) for f in FAMILIES}
    results: dict[str, Any] = {
        "mode": "quick" if plan.quick else "full",
        "machine": machine_info(runtime),
        "load_average": {"start": load_average()},
        "settings": {name: {"image_size": s, "batch_size": b} for name, (s, b) in plan.settings.items()},
        "models": sections,
        "train_params": to_dict(params.train),
        "targets_definition": {"train_speedup": TRAIN_SPEEDUP, "resnet_bf16_utilisation": RESNET_UTILISATION,
                               "cache_speedup": CACHE_SPEEDUP, "cache_memory_ratio": CACHE_MEMORY},
    }
    progress.say(f"{results['mode']} benchmark on {results['machine']['device_name']} "
                 f"({runtime.device.type}, {runtime.precision}, channels_last={runtime.channels_last}, "
                 f"{runtime.threads} threads)")
    progress.phase("matmul peaks")
    start_peaks = measure_peaks(runtime, plan, progress)
    progress.phase("training: ours vs the notebook step (interleaved)")
    results["training"] = training_phase(sections, params, runtime, plan, progress)
    progress.phase(f"{VARIANT_FAMILY} variants")
    results["resnext_variants"] = variants_phase(sections[VARIANT_FAMILY], params, runtime, plan, compile_timeout,
                                                 progress)
    progress.phase("evaluation throughput")
    results["inference"] = inference_phase(sections, params, runtime, plan, progress)
    progress.phase("cache stage vs the notebook's ImageFolder loop (child processes)")
    with tempfile.TemporaryDirectory(prefix="convbench-bench-") as tmp:
        folder, description = image_source(images, plan, Path(tmp), params.train.seed)
        results["cache"], staged = cache_phase(folder, description, subset, plan, Path(tmp), progress)
        progress.phase("matmul peaks again")
        end_peaks = measure_peaks(runtime, plan, progress)
        results["peak_measurements"] = {"start": start_peaks, "end": end_peaks}
        results["peaks"] = {p: max(start_peaks[p], end_peaks[p], key=lambda m: m["flops"]) for p in start_peaks}
        add_utilisation(results, results["peaks"])
        results["targets"] = check_targets(results)
        progress.phase("profiles of missed targets")
        results["profiles"] = profile_missed(results["targets"], results, sections, params, runtime, plan, staged,
                                             progress)
    progress.close_phase()
    results["load_average"] |= {"end": load_average(), "phases": progress.phases, "run": progress.noise()}
    results["seconds"] = progress.elapsed
    write_reports(results, out)
    met = sum(t["met"] for t in results["targets"])
    progress.say(f"{met} of {len(results['targets'])} targets met -> {out / 'benchmark.md'}, {out / 'benchmark.json'}")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="convbench bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, a few steps: checks the plumbing")
    parser.add_argument("--out", type=Path, default=Path("reports"), help="folder for benchmark.md/.json")
    parser.add_argument("--images", type=Path, help="image folder for the cache comparison "
                        "(default: data/images, else a synthetic folder)")
    parser.add_argument("--subset", type=int, default=10_000,
                        help="measure both loaders on at most this many images (default 10000)")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--compile-timeout", type=float,
                        help="seconds allowed for the torch.compile measurement, 0 to skip "
                             f"(default {COMPILE_TIMEOUT:.0f}, 0 with --quick)")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    timeout = args.compile_timeout if args.compile_timeout is not None else (0 if args.quick else COMPILE_TIMEOUT)
    if args.subset < 1:
        parser.error("--subset must be at least 1")

    def body() -> None:
        run_benchmark(load_params(args.params), plan, args.out, args.images, args.subset, timeout)

    return run_stage("bench", body)


if __name__ == "__main__":
    raise SystemExit(main())
