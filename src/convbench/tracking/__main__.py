"""``python -m convbench.tracking [sync]``: create the MLflow store and experiment once; send spooled calls."""

from __future__ import annotations

import argparse
import os

from convbench.errors import run_stage
from convbench.tracking.runlog import sync
from convbench.tracking.store import EXPERIMENT, ensure_store, tracking_uri, ui_hint


def main(argv: list[str] | None = None) -> int:
    """``convbench tracking``: create the store once; ``convbench tracking sync``: send spooled calls.

    ``sync`` exits 0 when every spooled run was sent, 1 when something is still
    pending (one line per run saying why).
    """
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    parser = argparse.ArgumentParser(
        prog="convbench tracking",
        description="Create the MLflow store and experiment (once, before parallel runs); with `sync`, send the "
                    "calls a stage buffered in mlflow-spool/ while its tracking server was unreachable.")
    parser.add_argument("command", nargs="?", choices=["sync"], help="send the buffered calls")
    args = parser.parse_args(argv)
    if args.command == "sync":
        return sync()

    def body() -> None:
        experiment_id = ensure_store()
        print(f"MLflow store {tracking_uri()}, experiment {EXPERIMENT!r} (id {experiment_id})")
        print(ui_hint(tracking_uri(), experiment_id))

    return run_stage("tracking", body)


if __name__ == "__main__":
    raise SystemExit(main())
