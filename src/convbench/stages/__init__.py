"""DVC stage entry points: each module is a thin ``main()`` that reads params.yaml and calls a pure function.

Run one as ``python -m convbench.stages.<name> [args]``; :func:`run_stage` turns a
:class:`~convbench.errors.ConvbenchError` into one error line and exit status 2.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from convbench.errors import ConvbenchError


def run_stage(name: str, body: Callable[[], None]) -> int:
    """Run ``body``; a user error prints ``convbench <name>: error: ...`` and returns 2."""
    try:
        body()
    except ConvbenchError as exc:
        print(f"convbench {name}: error: {exc}", file=sys.stderr)
        return 2
    return 0
