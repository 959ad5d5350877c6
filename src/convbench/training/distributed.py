"""Data-parallel training over several processes with torch.distributed, launched by torchrun.

``train.nproc`` > 1 makes the train stage re-launch itself under ``torchrun``
(``python -m torch.distributed.run``), one process per GPU or per share of the
CPU cores, so the DVC command stays ``python -m convbench.stages.train <family>``.
Each process (rank) trains a DistributedDataParallel copy of the model: NCCL
on CUDA, gloo on CPU. ``train.batch_size`` stays the *global* batch: every step,
rank ``r`` of ``W`` takes its slice of the same global batch, so the shards of
an epoch are disjoint and together are exactly the single-process epoch.

Multi-node: torchrun reads its own ``PET_*`` environment variables. With
``PET_NNODES`` set, they alone configure the job, e.g. static rendezvous with
``PET_NNODES=2 PET_NODE_RANK=<0|1> PET_MASTER_ADDR=node0 PET_MASTER_PORT=29500``
(node rank 0 holds global rank 0, the one that writes the outputs); without it
the stage runs torchrun ``--standalone`` (one machine, a free port).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as td

from convbench.config import ConfigError
from convbench.params import TrainParams


@dataclass(frozen=True)
class Dist:
    """This process's place in the job; the default is the single-process job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 alone logs to MLflow and writes checkpoints and DVC outputs."""
        return self.rank == 0

    def all_sum(self, *values: torch.Tensor) -> list[torch.Tensor]:
        """The sum of each (same-shape, same-device) tensor over all ranks."""
        if not self.enabled:
            return list(values)
        stacked = torch.stack([v.float() for v in values])
        td.all_reduce(stacked)
        return list(stacked.unbind())

    def all_gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order (picklable objects)."""
        if not self.enabled:
            return [obj]
        gathered: list[Any] = [None] * self.world_size
        td.all_gather_object(gathered, obj)
        return gathered

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.enabled:
            return obj
        box = [obj]
        td.broadcast_object_list(box, src=0)
        return box[0]

    def sync_buffers(self, model: torch.nn.Module) -> None:
        """Copy rank 0's buffers (BatchNorm running statistics) to every rank, so evaluation sees one model."""
        if self.enabled:
            for buffer in model.buffers():
                td.broadcast(buffer, src=0)


def in_worker() -> bool:
    """True inside a process started by torchrun (its agent sets ``TORCHELASTIC_RUN_ID``)."""
    return "TORCHELASTIC_RUN_ID" in os.environ


def multi_node() -> bool:
    """True when torchrun's ``PET_NNODES`` asks for more than one node."""
    return os.environ.get("PET_NNODES", "1") != "1"


def hosts_rank_zero() -> bool:
    """True on the node whose first process is global rank 0 (node rank 0 of static rendezvous)."""
    return os.environ.get("PET_NODE_RANK", "0") == "0"


def wanted(nproc: int) -> bool:
    """Whether the stage must (re-)launch itself under torchrun: several processes or several nodes."""
    return (nproc > 1 or multi_node()) and not in_worker()


def from_env() -> Dist:
    """The rank layout torchrun put in the environment (the single-process job outside torchrun)."""
    if not in_worker():
        return Dist()
    env = os.environ
    return Dist(
        rank=int(env["RANK"]),
        world_size=int(env["WORLD_SIZE"]),
        local_rank=int(env["LOCAL_RANK"]),
        local_world_size=int(env["LOCAL_WORLD_SIZE"]),
    )


def shard_batches(order: torch.Tensor, batch_size: int, dist: Dist) -> torch.Tensor:
    """This rank's share of every full global batch of ``order``, one row per step.

    Rank ``r`` takes columns ``r*b .. (r+1)*b`` of each global batch (``b =
    batch_size / world_size``); the incomplete last batch is dropped.
    """
    if batch_size % dist.world_size:
        raise ConfigError(f"train.batch_size: {batch_size} is not divisible by the {dist.world_size} processes")
    steps = len(order) // batch_size
    local = batch_size // dist.world_size
    batches = order[: steps * batch_size].view(steps, batch_size)
    return batches[:, dist.rank * local : (dist.rank + 1) * local]


def cpu_share(processes: int) -> int:
    """Threads per process when ``processes`` share this machine's cores equally."""
    return max(1, (os.cpu_count() or 1) // processes)


def check_launch(params: TrainParams, device: torch.device) -> None:
    """Fail before launching anything when a multi-process job cannot work on ``device``."""
    if device.type == "cuda" and params.nproc > torch.cuda.device_count():
        raise ConfigError(
            f"train.nproc: {params.nproc} processes but {torch.cuda.device_count()} CUDA device(s); use one per GPU"
        )
    if device.type == "mps":
        raise ConfigError("train.nproc: multi-process training runs on CUDA (NCCL) or CPU (gloo), not mps")
    if params.sync_bn and device.type != "cuda":
        raise ConfigError("train.sync_bn: PyTorch's SyncBatchNorm runs on CUDA only; set it false for CPU processes")


def torchrun_command(nproc: int, module: str, args: list[str]) -> list[str]:
    """``python -m torch.distributed.run ... -m module args``: one machine unless ``PET_NNODES`` is set."""
    rendezvous = [] if multi_node() else ["--standalone"]
    return [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}", *rendezvous,
            "-m", module, *args]


def launch(nproc: int, module: str, args: list[str]) -> int:
    """Run ``module`` in ``nproc`` local processes under torchrun; return torchrun's exit status.

    Each CPU process gets an equal share of the cores through ``OMP_NUM_THREADS``
    (two processes each using every core made steps stall on a 2-core CPU).
    """
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(cpu_share(nproc)))
    return subprocess.run(torchrun_command(nproc, module, args), env=env).returncode


def init(device: torch.device, dist: Dist) -> None:
    """Join the process group (NCCL on CUDA, gloo on CPU); a no-op for the single-process job."""
    if dist.enabled and not td.is_initialized():
        td.init_process_group("nccl" if device.type == "cuda" else "gloo")


def shutdown() -> None:
    """Leave the process group, if this process joined one."""
    if td.is_available() and td.is_initialized():
        td.destroy_process_group()
