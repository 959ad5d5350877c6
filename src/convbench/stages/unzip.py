"""Stage ``unzip``: obtain ``data.archive`` if needed and extract it safely into ``data/images``.

Writes ``data/images/<origin>/<class>/<file>`` and ``data/unzip.json``.
"""

from __future__ import annotations

import argparse

from convbench.data.fetch import ensure_archive
from convbench.data.unzip import format_listing, unzip_archive
from convbench.errors import run_stage
from convbench.data.params import load_data_params
from convbench.paths import Layout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m convbench.stages.unzip", description=__doc__.splitlines()[0])
    parser.parse_args(argv)

    def body() -> None:
        data = load_data_params()
        layout = Layout()
        archive = ensure_archive(data)
        plan = unzip_archive(
            archive, layout.images, layout.unzip_manifest, max_files=data.max_files, max_bytes=data.max_bytes,
            max_ratio=data.max_ratio, max_file_bytes=data.max_file_bytes,
        )
        counts = plan.counts()
        per_origin = ", ".join(f"{o} {sum(counts[o].values()):,}" for o in plan.origins)
        print(
            f"unzip: {len(plan.entries):,} images in {len(plan.classes)} classes ({per_origin}); "
            f"layout {plan.layout}, class root {plan.root or '(zip root)'!r} -> {layout.images}"
        )
        if plan.ignored:
            print(f"unzip: ignored {len(plan.ignored)} entries:")
            for line in format_listing([f"{name} ({why})" for name, why in plan.ignored]):
                print(f"  {line}")

    return run_stage("unzip", body)


if __name__ == "__main__":
    raise SystemExit(main())
