"""Run under torchrun by ``test_cuda.py``: one epoch through DistributedDataParallel over NCCL.

With one process ``Dist.enabled`` is false, so the worker forces the
multi-process path (process group, DDP wrapper, all-reduced sums, buffer
broadcast) to exercise NCCL on a one-GPU machine. Prints one JSON line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as td

from convbench.training import distributed
from convbench.training.distributed import Dist, from_env
from cudatrain import cuda_trainer


class ForcedDist(Dist):
    @property
    def enabled(self) -> bool:
        return True


def main() -> None:
    env = from_env()
    dist = ForcedDist(env.rank, env.world_size, env.local_rank, env.local_world_size)
    torch.cuda.set_device(dist.local_rank)
    distributed.init(torch.device("cuda", dist.local_rank), dist)
    trainer = cuda_trainer(Path(sys.argv[1]), family="resnet", dist=dist, epochs=1, precision="fp32")
    trainer.fit()
    print(json.dumps({"backend": td.get_backend(), "wrapper": type(trainer.net).__name__,
                      "val_loss": trainer.history["val_loss"][0]}))
    distributed.shutdown()


if __name__ == "__main__":
    main()
