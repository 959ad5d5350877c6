"""A stand-in for an MLflow client whose store goes away: the tracking tests' one fault injector."""

from __future__ import annotations

from typing import Any


class FlakyClient:
    """An MlflowClient whose calls fail ("down") or reach the store and then lose the reply ("drop")."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.mode = "up"

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.client, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            if self.mode == "down":
                raise ConnectionError("[Errno 111] Connection refused")
            result = attr(*args, **kwargs)
            if self.mode == "drop":
                raise ConnectionError("[Errno 104] Connection reset by peer")
            return result

        return call
