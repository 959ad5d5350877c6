"""reports/benchmark.json and reports/benchmark.md from the benchmark's results.

The Markdown is rendered from the same dictionary that is written as JSON, so
every number in the tables can be found (unrounded) in the JSON.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from convbench.files import atomic_write_bytes, write_json

NOISY_CORES = 0.1
"""Other processes using more than this many cores on average make the run noisy."""


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows] + [""]


def _n(x: float, digits: int = 0) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:,.{digits}f}"


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def _load(load: list[float] | None) -> str:
    return "n/a" if not load else " / ".join(f"{x:.2f}" for x in load)


def machine_section(r: dict[str, Any]) -> list[str]:
    m, load, peaks = r["machine"], r["load_average"], r["peaks"]
    others = load["run"]["other_cores"]
    busiest = max(load["phases"], key=lambda p: p.get("other_cores", 0.0))
    lines = [
        "## Machine",
        "",
        f"- {m['device']}: **{m['device_name']}**, {m['physical_cores']} physical cores / "
        f"{m['logical_cpus']} logical CPUs, "
        f"{m['memory_gb']} GB RAM; flags {', '.join(m['cpu_flags']) or 'n/a'}",
        f"- torch {m['torch']}, torchvision {m['torchvision']}, Python {m['python']}, {m['platform']}",
        f"- our runtime (`resolve_runtime`): **{m['precision']}** autocast, channels_last={m['channels_last']}, "
        f"{m['threads']} threads; CPU native bf16: {m['cpu_native_bf16']}",
        f"- load average (1/5/15 min, our own work included): start {_load(load['start'])}, end {_load(load['end'])}",
        f"- **other processes used {others:.2f} of the {m['logical_cpus']} CPUs on average during the run** (busiest "
        f"phase: {busiest.get('other_cores', 0.0):.2f} during \"{busiest['phase']}\"; hypervisor steal "
        f"{load['run']['steal_cores']:.2f})"
        + (": figures are noisy, re-run on a quiet machine" if others > NOISY_CORES else ": a quiet machine"),
        f"- matmul peaks measured in this run (`torch.mm` of square matrices, best of {peaks['fp32']['repeats']} "
        "runs at the start and again at the end; the higher counts): "
        + "; ".join(f"{p} **{_n(peaks[p]['flops'] / 1e9)} GFLOP/s** ({peaks[p]['size']}^2; start "
                    f"{_n(r['peak_measurements']['start'][p]['flops'] / 1e9)}, end "
                    f"{_n(r['peak_measurements']['end'][p]['flops'] / 1e9)})" for p in ("bf16", "fp32")),
        f"- mode: {r['mode']}; total run time {r['seconds'] / 60:.1f} min",
        "",
    ]
    return lines


def peak_ratio(r: dict[str, Any]) -> float:
    return r["peaks"]["bf16"]["flops"] / r["peaks"]["fp32"]["flops"]


def training_section(r: dict[str, Any]) -> list[str]:
    rows = []
    for family, per_setting in r["training"].items():
        for setting, t in per_setting.items():
            o, ref = t["ours"], t["reference"]
            rows.append([
                family, f"{t['image_size']} px", str(t["batch_size"]), _n(t["forward_flops_per_image"] / 1e6, 1),
                _n(o["images_per_second"]), _n(ref["images_per_second"]), f"**{t['speedup']:.2f}x**",
                _pct(o["utilisation"]["bf16"]), _pct(o["utilisation"]["fp32"]), _pct(ref["utilisation"]["fp32"]),
                f"{o['rounds']} ({_pct(o['spread'])} / {_pct(ref['spread'])})",
            ])
    header = ["family", "size", "batch", "fwd MFLOP/img", "ours img/s", "notebook img/s", "speed-up",
              "ours % bf16 peak", "ours % fp32 peak", "notebook % fp32 peak", "rounds (spread ours / notebook)"]
    return [
        "## Training step: ours against the course notebook's",
        "",
        "Ours is `Trainer.train_epoch` on a one-batch split (uint8 gather, normalise + crop + flip on the device, "
        f"{r['machine']['precision']} autocast, channels_last={r['machine']['channels_last']}, SGD). "
        "The notebook's step: "
        "float32 NCHW `TensorDataset` with one-hot labels, shuffling `DataLoader` (num_workers=0), "
        "`labels.argmax(dim=1)`, fp32, no augmentation, `nn.CrossEntropyLoss`, `.item()` every batch. Same "
        "architecture and initial weights, same optimizer settings, same batch; one step of each per round, "
        "order alternating, medians over rounds after warm-up steps (until a step is no longer faster than the one "
        "before). Utilisation = 3 x forward FLOPs x images/s / measured matmul peak. Spread = (slowest - fastest "
        "round) / median.",
        "",
        f"On this machine the bf16 matmul peak is {peak_ratio(r):.1f}x the fp32 one: that is all that bf16 alone can "
        "give a compute-bound step; beyond it a speed-up needs a higher fraction of the peak than the notebook's "
        "step reaches in fp32.",
        "",
        *_table(header, rows),
    ]


def variants_section(r: dict[str, Any]) -> list[str]:
    v = r["resnext_variants"]
    rows = [[row["variant"], f"{row['relative_to_default']:.2f}x", _n(row["images_per_second"]), _n(row["step_ms"]),
             _pct(row["utilisation"]["bf16"]), _pct(row["utilisation"]["fp32"])]
            for row in sorted(v["rows"], key=lambda x: -x["relative_to_default"])]
    c = v["compile"]
    if c["status"] == "ok":
        compiled = c["compiled"]
        rows.append([c["variant"], f"{c['relative_to_default']:.2f}x", _n(compiled["images_per_second"]),
                     _n(compiled["step_ms"]), _pct(compiled["utilisation"]["bf16"]),
                     _pct(compiled["utilisation"]["fp32"])])
        compile_line = (f"torch.compile ({c['variant']}): {_n(compiled['images_per_second'])} img/s against "
                        f"{_n(c['eager']['images_per_second'])} img/s eager measured interleaved in the same child "
                        f"process ({c['speedup']:.2f}x); compile time {c['compile_seconds']:.0f} s "
                        f"(first step {c['first_step_seconds']:.0f} s).")
    else:
        compile_line = f"torch.compile ({c['variant']}): skipped - {c['reason']}."
    return [
        f"## ResNeXt alternatives ({v['image_size']} px)",
        "",
        "Grouped convolutions are a weak spot of CPU kernels, so our ResNeXt step was measured under each precision, "
        f"memory format and batch size. Each variant ran interleaved with the default ({v['default']}), and is ranked "
        "by its speed relative to that default measured alongside (robust to the machine's load changing between "
        "variants); img/s are medians of rounds. The best eager variant was then compiled (in a child process, "
        "against the same variant in eager mode).",
        "",
        *_table(["variant", "vs default", "img/s", "ms/step", "% bf16 peak", "% fp32 peak"], rows),
        compile_line,
        "",
        f"Fastest: **{v['fastest']}**; the default params give {v['default']}.",
        "",
    ]


def inference_section(r: dict[str, Any]) -> list[str]:
    rows = []
    for family, per_setting in r["inference"].items():
        for _, e in per_setting.items():
            rows.append([family, f"{e['image_size']} px", str(e["batch_size"]), _n(e["images_per_second"]),
                         _n(e["latency_ms"], 2), _pct(e["utilisation"]["bf16"]), _pct(e["utilisation"]["fp32"])])
    return [
        "## Evaluation throughput",
        "",
        "As the evaluate stage measures it (`measure_speed`: eval mode, `inference_mode`, our runtime settings, "
        "normalisation included), untrained weights of the same architecture.",
        "",
        *_table(["family", "size", "batch", "img/s", "batch-1 latency ms", "% bf16 peak", "% fp32 peak"], rows),
    ]


def cache_section(r: dict[str, Any]) -> list[str]:
    c = r["cache"]
    s, base = c["source"], c["baseline"]
    rows = []
    for _, x in c["sizes"].items():
        for name, label in (("ours", "ours: `build_cache` (all cores, uint8)"),
                            ("notebook", "notebook: ImageFolder + Resize + ToTensor, stack")):
            y = x[name]
            rows.append([f"{x['image_size']} px", label, _n(y["images_per_second"]), _n(y["peak_pss_mb"]),
                         _n(y["peak_rss_mb"]), _n(y["peak_anon_mb"]), _n(y["net_mb"]), _n(y["bytes"] / 2**20, 1)])
        rows.append([f"{x['image_size']} px", "**ours / notebook**", f"**{x['speedup']:.1f}x**", "", "", "",
                     f"**{x['memory_ratio']:.2f}**", ""])
    return [
        "## Cache stage against the notebook's image loading",
        "",
        f"Source: {s['description']}; {s['images_measured']:,} of {s['images_in_folder']:,} images "
        f"({s['subset']}), {s['classes']} classes, copied to a scratch folder that both read "
        "(page cache warm for both). "
        "Each approach ran in its own child process; memory is the peak over the child's process tree (the cache "
        "stage decodes in worker processes) of the summed PSS, RSS and anonymous PSS (heap: tensors, arrays), "
        "sampled while it ran. Net = peak anonymous PSS minus that of a child that only imports torch "
        f"({_n(base['peak_anon_mb'])} MB anonymous, {_n(base['peak_pss_mb'])} MB PSS, "
        f"{_n(base['peak_rss_mb'])} MB RSS): "
        "the memory the work itself allocated; the target compares net figures. The notebook's net includes "
        f"importing torchvision ({_n(base['torchvision_anon_mb'])} MB anonymous). The notebook's extra statistics "
        "pass over the ImageFolder is not timed (it would double its time).",
        "",
        *_table(["size", "approach", "img/s", "peak PSS MB", "peak RSS MB (tree sum)", "peak anon PSS MB",
                 "net MB", "dataset tensor MB"], rows),
    ]


def targets_section(r: dict[str, Any]) -> list[str]:
    rows = []
    for t in r["targets"]:
        value = f"{t['value']:.2f}x" if t["unit"] == "x" else f"{t['value']:.2f}"
        rows.append([t["target"], value, "met" if t["met"] else "**missed**"])
    met = sum(t["met"] for t in r["targets"])
    return ["## Targets", "", f"{met} of {len(r['targets'])} met.", "", *_table(["target", "measured", "result"], rows)]


def profiles_section(r: dict[str, Any]) -> list[str]:
    lines = ["## Profiles of the missed cases", ""]
    if not r["profiles"]:
        return lines + ["No target was missed.", ""]
    for case, p in r["profiles"].items():
        lines += [f"### {case}", ""]
        if "top_ops" in p:
            _, family, setting = case.split(":")
            t = r["training"][family][setting]
            precision = r["machine"]["precision"]
            lines += [
                f"Ours runs at {_pct(t['ours']['utilisation'][precision])} of the {precision} peak, "
                "the notebook's step "
                f"at {_pct(t['reference']['utilisation']['fp32'])} of the fp32 peak; the peaks differ by "
                f"{peak_ratio(r):.1f}x, hence the {t['speedup']:.2f}x speed-up.",
                "",
                f"torch.profiler over {p['steps']} step(s) of our step: {_n(p['self_ms_per_step'])} ms self "
                f"{p['time_kind']} time per step. {p['summary']}",
                "",
                "Share by kind: " + ", ".join(f"{k} {v:.0f} %" for k, v in p["categories"].items()),
                "",
                *_table(["op", "kind", f"self {p['time_kind']} ms/step", "%", "calls/step"],
                        [[f"`{o['op']}`", o["category"], _n(o["self_ms_per_step"], 1), f"{o['percent']:.1f}",
                          _n(o["calls_per_step"], 1)] for o in p["top_ops"]]),
            ]
        else:
            lines += [
                f"cProfile of the cache stage's decoding in one process, {p['images']:,} images in "
                f"{p['seconds']:.2f} s "
                f"({p['images'] / p['seconds']:,.0f} img/s on one core, profiler overhead included): "
                + ", ".join(f"{k} {v:.0f} %" for k, v in p["shares"].items())
                + f". The largest share is {next(iter(p['shares']))}; on {r['machine']['logical_cpus']} CPUs the "
                f"parallel stage can add at most {r['machine']['logical_cpus']}x to this per-core speed.",
                "",
                *_table(["function", "self s", "%"],
                        [[f"`{f['function']}`", f"{f['self_seconds']:.3f}", f"{f['percent']:.1f}"]
                         for f in p["top_functions"]]),
            ]
    return lines


def render_markdown(r: dict[str, Any]) -> str:
    """The whole report as Markdown."""
    lines = [
        "# convbench benchmark",
        "",
        "Re-run with `python bench/run.py` (or `convbench bench`) from the project root; "
        "every figure is also in benchmark.json." + (" **Quick mode: tiny models, figures mean nothing.**"
                                                        if r["mode"] == "quick" else ""),
        "",
    ]
    for section in (machine_section, targets_section, training_section, variants_section, inference_section,
                    cache_section, profiles_section):
        lines += section(r)
    return "\n".join(lines)


def write_reports(results: dict[str, Any], out: Path) -> None:
    """``out``/benchmark.json and ``out``/benchmark.md."""
    write_json(out / "benchmark.json", results)
    atomic_write_bytes(out / "benchmark.md", render_markdown(results).encode())
