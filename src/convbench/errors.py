"""The one exception type users see as a single error line instead of a traceback, and the wrapper that prints it."""

from __future__ import annotations

import sys
from collections.abc import Callable


class ConvbenchError(Exception):
    """A problem with the user's input (params, archive, images, environment) they can fix."""


def run_stage(name: str, body: Callable[[], None]) -> int:
    """Run ``body``; a user error prints ``convbench <name>: error: ...`` and returns 2.

    Every command's ``main()`` (stages, tools) ends in this, so library modules
    never need to import the entry points.
    """
    try:
        body()
    except ConvbenchError as exc:
        print(f"convbench {name}: error: {exc}", file=sys.stderr)
        return 2
    return 0
