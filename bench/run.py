"""``python bench/run.py [--quick] [--out reports] [--images DIR]``: convbench's speed benchmark.

A thin wrapper so the benchmark runs from a checkout without installing the
package; the code lives in :mod:`convbench.bench` (also ``convbench bench``).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from convbench.bench.run import main  # noqa: E402 - needs the path above

__all__ = ["main"]

if __name__ == "__main__":
    raise SystemExit(main())
