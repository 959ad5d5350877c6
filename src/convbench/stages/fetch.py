"""Stage ``fetch``: make sure ``data.archive`` exists (copy a local CIFAR-10 zip or download it).

    python -m convbench.stages.fetch [--from PATH]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from convbench.data.fetch import ensure_archive
from convbench.errors import run_stage
from convbench.params import load_params


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m convbench.stages.fetch", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--from", dest="source", metavar="PATH", type=Path, help="a local dataset zip to copy to data.archive"
    )
    args = parser.parse_args(argv)

    def body() -> None:
        archive = ensure_archive(load_params().data, args.source)
        print(f"fetch: {archive} ready ({archive.stat().st_size / 2**20:.1f} MiB)")

    return run_stage("fetch", body)


if __name__ == "__main__":
    raise SystemExit(main())
