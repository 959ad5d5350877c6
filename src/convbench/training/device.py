"""Where and in which number format training runs.

``train.device``, ``train.precision`` and ``train.channels_last`` default to
``auto`` so one params.yaml is fast on a laptop CPU and on a CUDA GPU: bf16
autocast with channels_last gave 2.4x (ResNet-18) to 4.2x (ResNeXt-29) over
fp32 NCHW on an AVX-512-bf16 CPU, and AMP is the usual 2-3x on CUDA.
:func:`timed` is the one wall clock for speed figures (evaluation and bench), as
CUDA runs asynchronously and must be waited for.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from convbench.errors import ConvbenchError
from convbench.params import TrainParams
from convbench.training.distributed import Dist, cpu_share

_AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}

MIN_CHANNELS_LAST_WIDTH = 8
"""Narrowest conv output width for fp32 channels_last on a CPU: one AVX2 fp32 vector.

With torch 2.14.1 and oneDNN's AVX2 kernels, one thread, the weight gradient
of a channels_last 1x1 stride-2 conv reading 2-7 channels corrupts the heap
(glibc "double free or corruption", SIGSEGV); ResNet-18 at width 0.0625 has one
(4 -> 8). See docs/notes-channels-last-crash.md.
"""


@dataclass(frozen=True)
class Runtime:
    """The resolved ``auto`` settings; ``precision`` is ``"bf16"``, ``"fp16"`` or ``"fp32"``."""

    device: torch.device
    precision: str
    channels_last: bool
    threads: int

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def autocast(self) -> contextlib.AbstractContextManager[None]:
        """Mixed precision for the forward pass (a no-op in fp32)."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=_AMP_DTYPES[self.precision])

    def grad_scaler(self) -> torch.amp.GradScaler:
        """Loss scaling, needed only for fp16 (bf16 has fp32's exponent range)."""
        return torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")

    def checked_for(self, model: nn.Module) -> Runtime:
        """This runtime, or NCHW with a one-line warning where fp32 channels_last on a CPU could crash ``model``.

        oneDNN's AVX2 fp32 kernels crash in the backward pass of narrow
        channels_last convs (:data:`MIN_CHANNELS_LAST_WIDTH`); fp32
        channels_last on a CPU is no speed-up worth that risk.
        """
        width = narrowest_conv(model)
        if not self.channels_last or self.device.type != "cpu" or self.precision != "fp32" or width is None \
                or width >= MIN_CHANNELS_LAST_WIDTH:
            return self
        print(f"convbench: warning: channels_last off: a {width}-channel conv in fp32 on a CPU can crash oneDNN "
              f"(needs >= {MIN_CHANNELS_LAST_WIDTH}); training in NCHW", file=sys.stderr)
        return dataclasses.replace(self, channels_last=False)


def narrowest_conv(model: nn.Module) -> int | None:
    """The fewest output channels of any ``nn.Conv2d`` in ``model`` (its narrowest feature map), None without convs."""
    return min((m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)), default=None)


def cpu_supports_bf16() -> bool:
    """True when oneDNN has fast bf16 kernels on this CPU (AVX-512 bf16 / AMX); else bf16 would be emulated."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def resolve_device(name: str) -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; a forced device must exist."""
    available = {
        "cuda": torch.cuda.is_available(),
        "mps": torch.backends.mps.is_available(),
        "cpu": True,
    }
    if name == "auto":
        return torch.device(next(d for d in ("cuda", "mps", "cpu") if available[d]))
    if not available[name]:
        raise ConvbenchError(f"train.device: {name} is not available on this machine; use auto or cpu")
    return torch.device(name)


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto``: bf16 on bf16-capable CPUs and GPUs, fp16 AMP on older CUDA GPUs, else fp32."""
    if precision == "auto":
        if device.type == "cpu" and cpu_supports_bf16():
            return "bf16"
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise ConvbenchError(f"train.precision: fp16 needs a CUDA device, not {device.type}; use auto, bf16 or fp32")
    if precision == "bf16" and device.type == "cpu" and not cpu_supports_bf16():
        raise ConvbenchError("train.precision: this CPU has no native bf16 (AVX-512 bf16/AMX); use auto or fp32")
    return precision


def resolve_runtime(params: TrainParams, dist: Dist = Dist()) -> Runtime:
    """Resolve device, precision, memory format and thread count; sets torch's thread count.

    In a multi-process job each CUDA rank takes the GPU of its local rank, and
    each CPU rank an equal share of the cores. ``channels_last: auto`` is on for
    CUDA and for bf16 on a CPU with native bf16 only; once the model is built,
    :meth:`Runtime.checked_for` turns a forced ``on`` off where it could crash.
    """
    device = resolve_device(params.device)
    if device.type == "cuda" and dist.enabled:
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
    precision = resolve_precision(params.precision, device)
    if params.channels_last == "auto":
        channels_last = device.type == "cuda" or (device.type == "cpu" and precision == "bf16")
    else:
        channels_last = params.channels_last == "on"
    threads = params.threads or cpu_share(dist.local_world_size)
    torch.set_num_threads(threads)
    return Runtime(device=device, precision=precision, channels_last=channels_last, threads=threads)


def cpu_model_and_flags() -> tuple[str, set[str]]:
    """The CPU's model name and feature flags from ``/proc/cpuinfo`` (Linux), else what ``platform`` knows."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                if flags and model:
                    break
    except OSError:
        pass
    return model, flags


def machine_tags(runtime: Runtime) -> dict[str, str]:
    """What trained or evaluated a model, as MLflow tags: time figures compare only between equal machines.

    The CPU's bf16 support decides ``precision: auto`` (and so about 2x in speed), so it is named with the model.
    """
    model, flags = cpu_model_and_flags()
    tags = {
        "machine.cpu": model,
        "machine.cores": str(os.cpu_count() or 0),
        "machine.threads": str(runtime.threads),
        "machine.cpu_bf16": str(cpu_supports_bf16()).lower(),
        "machine.cpu_amx": str("amx_bf16" in flags).lower(),
        "machine.cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "machine.precision": runtime.precision,
        "machine.memory_format": "channels_last" if runtime.channels_last else "nchw",
        "machine.device": runtime.device.type,
    }
    if runtime.device.type == "cuda":
        tags["machine.gpu"] = torch.cuda.get_device_name(runtime.device)
    return tags


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so wall-clock timings cover it (a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds one call of ``fn`` takes, including the device work it queued."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start
