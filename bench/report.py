"""benchmark.json, and benchmark.md rendered from the same dictionary: every number in its tables is in the JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from convbench.files import atomic_write_bytes, write_json


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(row) + " |" for row in [header, *rows]]
    return "\n".join([lines[0], "|" + "---|" * len(header), *lines[1:]])


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def render_markdown(r: dict[str, Any]) -> str:
    """The report: the machine, then the training and the loading comparison as tables."""
    m, peaks, noise, d = r["machine"], r["peaks"], r["noise"], r["loading"]
    training = []
    for family, per_setting in r["training"].items():
        for t in per_setting.values():
            o, n = t["ours"], t["notebook"]
            training.append([
                family, f"{t['image_size']} px", str(t["batch_size"]), f"{t['forward_flops_per_image'] / 1e6:,.1f}",
                f"{o['images_per_second']:,.0f}", f"{n['images_per_second']:,.0f}", f"**{t['speedup']:.2f}x**",
                _pct(o["utilisation"]["bf16"]), _pct(o["utilisation"]["fp32"]), _pct(n["utilisation"]["fp32"]),
                f"{o['rounds']} ({_pct(o['spread'])} / {_pct(n['spread'])})",
            ])
    loading = []
    for c in d["sizes"].values():
        for side, label in (("ours", "cache stage (all cores, uint8)"), ("notebook", "ImageFolder + ToTensor, stack")):
            x = c[side]
            loading.append([f"{c['image_size']} px", label, f"{x['images_per_second']:,.0f}", f"{x['peak_mb']:,.0f}",
                            f"{x['net_mb']:,.0f}", f"{x['tensor_mb']:,.1f}"])
        loading.append([f"{c['image_size']} px", "**ours / notebook**", f"**{c['speedup']:.2f}x**", "",
                        f"**{c['memory_ratio']:.2f}**", ""])
    loads = " -> ".join(" / ".join(f"{x:.2f}" for x in load) for load in noise["load_average"])
    machine = [
        f"- {m['machine.device']}: **{m.get('machine.gpu', m['machine.cpu'])}**; {m['logical_cpus']} logical CPUs, "
        f"CPU bf16 {m['machine.cpu_bf16']}, AMX {m['machine.cpu_amx']}; torch {m['torch']}, Python {m['python']}",
        f"- convbench's runtime: {m['machine.precision']} autocast, {m['machine.memory_format']}, "
        f"{m['machine.threads']} threads",
        "- matmul peaks (`torch.mm`, the better of the run's start and end): "
        + "; ".join(f"{p} **{peaks[p]['flops'] / 1e9:,.0f} GFLOP/s** ({peaks[p]['size']}^2)" for p in peaks),
        f"- other processes kept **{noise['other_cores']:.2f} cores** busy on average (load average, start -> end: "
        f"{loads}); {r['mode']} run, {r['seconds'] / 60:.1f} min",
    ]
    quick = " **Quick mode: tiny models, the figures mean nothing.**" if r["mode"] == "quick" else ""
    return "\n\n".join([
        "# convbench benchmark",
        "Re-run with `python bench/run.py` (or `convbench bench`) from the project root (docs/benchmark.md); every "
        "figure is also in benchmark.json." + quick,
        "## Machine",
        "\n".join(machine),
        "## Training step: ours against the course notebook's",
        "Same network, initial weights, optimizer settings and batch; one step of each per round, order alternating, "
        "medians over rounds after warm-up steps. Utilisation = 3 x forward FLOPs x images/s / matmul peak. "
        "Spread = (slowest - fastest round) / median.",
        _table(["family", "size", "batch", "fwd MFLOP/img", "ours img/s", "notebook img/s", "ours / notebook",
                "ours % bf16 peak", "ours % fp32 peak", "notebook % fp32 peak", "rounds (spread ours / notebook)"],
               training),
        "## Loading images: the cache stage against the notebook's",
        f"Images: {d['source']}. Each loader ran in its own child process; peak MB is the peak summed PSS of its "
        f"process tree, net MB that less the peak of a child that only imports torch ({d['baseline_mb']:,.0f} MB).",
        _table(["size", "loader", "img/s", "peak MB", "net MB", "dataset tensor MB"], loading),
    ]) + "\n"


def write_reports(results: dict[str, Any], out: Path) -> None:
    """``out``/benchmark.json and ``out``/benchmark.md."""
    write_json(out / "benchmark.json", results)
    atomic_write_bytes(out / "benchmark.md", render_markdown(results).encode())
