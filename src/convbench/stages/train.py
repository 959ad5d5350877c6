"""``python -m convbench.stages.train <family>``: train one model family (see :mod:`convbench.training.run`).

Reads params.yaml sections ``train``, ``data`` and ``<family>``; reads
data/cache.pt and data/split.json; writes models/<family>.pt,
reports/train/<family>.json and reports/train/<family>_history.csv; resumes
from data/checkpoints/<family>.pt after an interruption. With ``train.nproc``
above 1 it re-runs itself under torchrun, one process per rank (see
:mod:`convbench.training.distributed`).
"""

from __future__ import annotations

import argparse
import os

from convbench.errors import ConvbenchError, run_stage
from convbench.families import FAMILIES
from convbench.params import load_params


def main(argv: list[str] | None = None) -> int:
    """Parse the family argument, then train it; a bad param or family exits 2 with one error line."""
    parser = argparse.ArgumentParser(prog="convbench train", description=__doc__.splitlines()[0])
    parser.add_argument("family", help=f"model family: {', '.join(FAMILIES)}")
    args = parser.parse_args(argv)

    def body() -> None:
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        # Idle OpenMP threads sleep instead of spinning (read when torch loads, so set before
        # importing it): on a shared CPU, spinning made epochs 10-20x slower.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        from convbench.tracking.store import ensure_store
        from convbench.training import distributed
        from convbench.training.device import resolve_device
        from convbench.training.run import check_family, train_family

        check_family(args.family)
        params = load_params()
        if distributed.wanted(params.train.nproc):
            distributed.check_launch(params.train, resolve_device(params.train.device))
            if distributed.hosts_rank_zero():  # rank 0 logs: fail fast on a dead server, create the store once
                ensure_store()
            status = distributed.launch(params.train.nproc, "convbench.stages.train", [args.family])
            if status:
                raise ConvbenchError(f"torchrun: a training process failed (exit {status}); its error is above")
            return
        train_family(args.family, params)

    return run_stage("train", body)


if __name__ == "__main__":
    raise SystemExit(main())
