"""The machine under test: what it is, how busy it is, and its matrix-multiply peaks.

Peaks are measured, not looked up: ``torch.mm`` of large square matrices in each
precision with the thread count training uses, best of a few runs, at the start
and at the end of the benchmark (the best counts, so a busy moment cannot lower
the peak and inflate utilisation). Utilisation figures divide by these, so they
say how close a model comes to what this machine's BLAS reaches on the easiest
possible workload.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from typing import Any

import torch

from convbench.training.device import Runtime, cpu_supports_bf16, timed

DTYPES: dict[str, torch.dtype] = {"bf16": torch.bfloat16, "fp32": torch.float32}


def load_average() -> list[float] | None:
    """The 1/5/15-minute load averages (None where the OS has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def cpu_counters() -> dict[str, float]:
    """Wall clock, the machine's busy and stolen CPU seconds, and this process's (and its finished children's).

    The difference between two readings tells how many cores *other* processes
    used in between: the noise our figures suffered (see :func:`others_between`).
    """
    import psutil

    machine = psutil.cpu_times()
    own = psutil.Process().cpu_times()
    busy = machine.user + machine.nice + machine.system
    busy += getattr(machine, "irq", 0.0) + getattr(machine, "softirq", 0.0)
    return {
        "wall": time.monotonic(),
        "busy": busy,
        "steal": getattr(machine, "steal", 0.0),
        "own": own.user + own.system + own.children_user + own.children_system,
    }


def others_between(start: dict[str, float], end: dict[str, float]) -> dict[str, float]:
    """Average cores used by other processes, and stolen by the hypervisor, between two :func:`cpu_counters`."""
    wall = max(end["wall"] - start["wall"], 1e-9)
    return {
        "other_cores": max(end["busy"] - start["busy"] - (end["own"] - start["own"]), 0.0) / wall,
        "steal_cores": (end["steal"] - start["steal"]) / wall,
    }


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo, else what :mod:`platform` knows."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    """The CPU's matrix-relevant feature flags (AVX-512 bf16, AMX...), from /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = line.split(":", 1)[1].split()
                    return sorted(f for f in flags if f.startswith(("avx512_bf16", "amx", "avx512f", "avx2", "fma")))
    except OSError:
        pass
    return []


def physical_cores() -> int | None:
    """Physical cores (psutil), which is what matters for BLAS throughput."""
    import psutil

    return psutil.cpu_count(logical=False)


def machine_info(runtime: Runtime) -> dict[str, Any]:
    """Everything a reader needs to compare our figures with theirs."""
    import torchvision

    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "logical_cpus": os.cpu_count(),
        "physical_cores": physical_cores(),
        "memory_gb": round(_total_memory() / 2**30, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "device": runtime.device.type,
        "device_name": cpu_model(),
        "precision": runtime.precision,
        "channels_last": runtime.channels_last,
        "threads": runtime.threads,
        "cpu_native_bf16": cpu_supports_bf16(),
        "argv": sys.argv,
    }
    if runtime.device.type == "cuda":
        props = torch.cuda.get_device_properties(runtime.device)
        info |= {
            "device_name": props.name,
            "cuda_capability": f"{props.major}.{props.minor}",
            "cuda_memory_gb": round(props.total_memory / 2**30, 1),
            "cuda_tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
            "cudnn_tf32_convolution": torch.backends.cudnn.allow_tf32,
        }
    return info


def _total_memory() -> int:
    import psutil

    return psutil.virtual_memory().total


def matmul_peak(device: torch.device, precision: str, size: int, repeats: int) -> dict[str, Any]:
    """Best FLOP/s of ``torch.mm`` on two ``size x size`` matrices in ``precision`` over ``repeats`` runs.

    One untimed run first (thread pool start-up, GPU kernel selection).
    """
    dtype = DTYPES[precision]
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator).to(device=device, dtype=dtype)
    b = torch.randn(size, size, generator=generator).to(device=device, dtype=dtype)
    torch.mm(a, b)
    seconds = min(timed(lambda: torch.mm(a, b), device) for _ in range(repeats))
    return {"flops": 2 * size**3 / seconds, "size": size, "repeats": repeats, "best_seconds": seconds}


def utilisation(flops_per_image: float, images_per_second: float, peaks: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Fraction of each measured peak that ``images_per_second`` at ``flops_per_image`` achieves."""
    return {precision: flops_per_image * images_per_second / peak["flops"] for precision, peak in peaks.items()}
