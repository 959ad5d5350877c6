"""``fetch``: make sure ``data.archive`` exists (copy a local CIFAR-10 zip or download it); ``--track`` DVC-tracks it.

    python -m convbench.stages.fetch [--from PATH] [--track]

``./run.sh repro`` runs it with ``--track`` before ``dvc repro``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from convbench.data.fetch import ensure_archive, track_archive
from convbench.errors import run_stage
from convbench.data.params import load_data_params


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m convbench.stages.fetch", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--from", dest="source", metavar="PATH", type=Path, help="a local dataset zip to copy to data.archive"
    )
    parser.add_argument("--track", action="store_true",
                        help="DVC-track the archive (dvc add; git add of its .dvc file) unless it already is")
    args = parser.parse_args(argv)

    def body() -> None:
        archive = ensure_archive(load_data_params(), args.source)
        print(f"fetch: {archive} ready ({archive.stat().st_size / 2**20:.1f} MiB)")
        if args.track:
            print(f"fetch: {track_archive(archive)}")

    return run_stage("fetch", body)


if __name__ == "__main__":
    raise SystemExit(main())
