"""Per-epoch checkpoints that let a killed training stage resume exactly where it stopped.

The checkpoint (``data/checkpoints/<family>.pt``, not a DVC output so DVC does
not delete it before re-running the stage) holds the trainer state plus a
fingerprint of everything the run depends on. A checkpoint whose fingerprint
does not match the current params and data is discarded, never half-reused.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import torch

from convbench.data.format import atomic_torch_save



def fingerprint(settings: dict[str, Any], cache: Path, split: Path) -> str:
    """A hash of the resolved params sections, the split file's bytes and the cache's size and mtime.

    The cache can be gigabytes, so it is identified by size and modification
    time (DVC rewrites it whenever it changes) instead of being hashed.
    """
    stat = Path(cache).stat()
    payload = {
        "settings": settings,
        "split_sha256": hashlib.sha256(Path(split).read_bytes()).hexdigest(),
        "cache": [stat.st_size, stat.st_mtime_ns],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def save_checkpoint(path: Path, state: dict[str, Any], fingerprint: str, run_id: str | None) -> None:
    """Write the trainer state atomically, so a kill mid-write leaves the previous epoch's checkpoint."""
    atomic_torch_save({**state, "fingerprint": fingerprint, "mlflow_run_id": run_id}, path)


def load_checkpoint(path: Path, fingerprint: str) -> dict[str, Any] | None:
    """The checkpoint at ``path`` if it matches ``fingerprint``; otherwise delete it, say why, return None."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        matches = state.get("fingerprint") == fingerprint
    except Exception as exc:  # a foreign or truncated file: any failure means "do not resume"
        print(f"discarding unreadable checkpoint {path}: {exc}", file=sys.stderr)
        path.unlink()
        return None
    if not matches:
        print(f"discarding checkpoint {path}: params or data changed since it was written", file=sys.stderr)
        path.unlink()
        return None
    print(f"resuming from {path} after epoch {state['epoch']}", file=sys.stderr)
    return state
