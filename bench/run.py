"""``python bench/run.py [--quick] [--out reports] [--images DIR]``: the benchmark (:mod:`bench.benchmark`).

This checkout's ``bench`` and ``src`` go first on the import path, so the benchmark
measures the code beside it, installed or not. ``convbench bench`` runs this file.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from bench.benchmark import main  # noqa: E402 - needs the path above

if __name__ == "__main__":
    raise SystemExit(main())
