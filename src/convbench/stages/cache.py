"""Stage ``cache``: decode ``data/images`` once into ``data/cache.pt`` and write ``reports/dataset.md``."""

from __future__ import annotations

import argparse
import time

from convbench.data.cache import build_cache
from convbench.data.dataset_report import write_dataset_report
from convbench.data.format import save_cache
from convbench.errors import run_stage
from convbench.data.params import load_data_params
from convbench.paths import Layout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m convbench.stages.cache", description=__doc__.splitlines()[0])
    parser.parse_args(argv)

    def body() -> None:
        data = load_data_params()
        layout = Layout()
        start = time.perf_counter()
        cache = build_cache(layout.images, layout.unzip_manifest, data.image_size)
        seconds = time.perf_counter() - start
        save_cache(layout.cache, cache)
        write_dataset_report(cache, layout.reports / "dataset.md", layout.reports / "dataset")
        n = len(cache.labels)
        print(
            f"cache: {n:,} images at {data.image_size}px in {seconds:.1f} s ({n / seconds:,.0f} images/s), "
            f"{len(cache.skipped)} skipped -> {layout.cache}"
        )
        for path, reason in cache.skipped[:20]:
            print(f"  skipped {path}: {reason}")

    return run_stage("cache", body)


if __name__ == "__main__":
    raise SystemExit(main())
