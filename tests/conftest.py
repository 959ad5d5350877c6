"""Settings every test shares: no telemetry, no display, quiet progress bars."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _quiet_offline_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never phone home (DVC analytics, MLflow telemetry) and never open a window."""
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("TQDM_DISABLE", "1")
