"""``python -m convbench.stages.runs``: the finished MLflow runs the report compares -> ``reports/runs.json``.

Marked ``always_changed`` in dvc.yaml: it runs on every ``dvc repro`` (a second or
two); its bytes change only when the set of comparable runs changed, so new seeds
or cardinalities from queued experiments re-run the report, and nothing else
re-runs when they did not.
"""

from __future__ import annotations

import argparse

from convbench.data.format import atomic_write_bytes
from convbench.errors import run_stage
from convbench.evaluation.studies import collect, encode_runs
from convbench.params import load_params
from convbench.paths import Layout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="convbench runs", description=__doc__.splitlines()[0])
    parser.parse_args(argv)

    def body() -> None:
        from convbench.tracking.store import tracking_uri

        layout = Layout()
        runs = collect(tracking_uri(), load_params())
        path = layout.reports / "runs.json"
        atomic_write_bytes(path, encode_runs(runs))
        note = f" ({runs.error})" if runs.error else ""
        print(f"runs: {len(runs.runs)} comparable finished run(s) in MLflow{note} -> {path}")

    return run_stage("runs", body)


if __name__ == "__main__":
    raise SystemExit(main())
