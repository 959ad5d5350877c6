"""``python -m convbench.stages.runs``: the finished MLflow runs the report compares -> ``reports/runs.json``.

The committed ``runs.json`` is also the studies' record: runs it lists that this
store never held (a fresh clone, another machine) are kept, flagged, so adding one
budget elsewhere does not drop the others (:func:`convbench.evaluation.studies.collect`).

Marked ``always_changed`` in dvc.yaml: it runs on every ``dvc repro``; its bytes
change only when the set of comparable runs changed, so new seeds or cardinalities
from queued experiments re-run the report, and nothing else re-runs when they did
not. A no-op ``dvc repro`` must stay fast, so when a sqlite store, the params,
this query's code and ``runs.json`` are all as they were last time (recorded in
``data/runs.stamp``), the stage stops before importing MLflow.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import convbench
from convbench.config import to_dict
from convbench.errors import run_stage
from convbench.params import Params, load_params
from convbench.paths import Layout

QUERY_CODE = ("evaluation/studies.py", "tracking/queries.py", "stages/runs.py")
"""The modules that decide what runs.json holds, relative to the package."""


def store_version(uri: str) -> str | None:
    """A token that changes whenever a sqlite store's files do, or None where that cannot be told cheaply (servers).

    The ``runs`` stage compares it to skip importing MLflow and querying an unchanged store.
    """
    if not uri.startswith("sqlite:///"):
        return None
    path = Path(uri.removeprefix("sqlite:///"))
    if not path.is_file():
        return None
    stats = [(f.name, f.stat()) for f in (path, Path(f"{path}-wal"), Path(f"{path}-journal")) if f.is_file()]
    return ";".join(f"{name}:{st.st_mtime_ns}:{st.st_size}" for name, st in stats)


def stamp_of(uri: str, store: str | None, params: Params, runs_json: Path) -> str | None:
    """What ``runs_json`` was computed from: the store and its version, params, query code, its own bytes.

    None where the store's version is unknown (a server): then the stage always queries.
    """
    if store is None or not runs_json.is_file():
        return None
    package = Path(convbench.__file__).parent
    code = [(package / m).stat().st_mtime_ns for m in QUERY_CODE]
    digest = hashlib.sha256(runs_json.read_bytes()).hexdigest()
    return json.dumps([uri, store, to_dict(params), code, digest], sort_keys=True, default=str)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="convbench runs", description=__doc__.splitlines()[0])
    parser.parse_args(argv)

    def body() -> None:
        from convbench.tracking.store import tracking_uri

        layout = Layout()
        params, uri = load_params(), tracking_uri()
        path, stamp = layout.reports / "runs.json", layout.data / "runs.stamp"
        store = store_version(uri)
        known = stamp_of(uri, store, params, path)
        if known is not None and stamp.is_file() and stamp.read_text() == known:
            print(f"runs: the MLflow store is unchanged since the last query -> {path} kept")
            return
        from convbench.files import atomic_write_bytes
        from convbench.evaluation.studies import collect, encode_runs, load_runs, recorded_only

        runs = collect(uri, params, load_runs(path))  # a missing file records nothing
        atomic_write_bytes(path, encode_runs(runs))
        note = f" ({runs.error})" if runs.error else ""
        kept = len(recorded_only(runs))
        record = f", {kept} more from the committed record that this store never held" if kept else ""
        print(f"runs: {len(runs.runs) - kept} comparable finished run(s) in MLflow{note}{record} -> {path}")
        known = stamp_of(uri, store, params, path)
        if known is not None:
            atomic_write_bytes(stamp, known.encode())
        else:
            stamp.unlink(missing_ok=True)

    return run_stage("runs", body)


if __name__ == "__main__":
    raise SystemExit(main())
