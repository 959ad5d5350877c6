"""``python -m convbench.stages.train <family>``: train one model family (see :mod:`convbench.training.run`).

Reads params.yaml sections ``train``, ``data`` and ``<family>``; reads
data/cache.pt and data/split.json; writes models/<family>.pt,
reports/train/<family>.json and reports/train/<family>_history.csv; resumes
from data/checkpoints/<family>.pt after an interruption.
"""

from __future__ import annotations

import argparse
import os

from convbench.params import FAMILIES, load_params
from convbench.stages import run_stage


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
        from convbench.training.run import check_family, train_family

        check_family(args.family)
        train_family(args.family, load_params())

    return run_stage("train", body)


if __name__ == "__main__":
    raise SystemExit(main())
