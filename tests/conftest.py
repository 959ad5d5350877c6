"""Settings every test shares: no telemetry, no display, quiet progress bars; the reproduced tiny project."""

from __future__ import annotations

from pathlib import Path

import pytest

from dvcproject import build_project


@pytest.fixture(autouse=True)
def _quiet_offline_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never phone home (DVC analytics, MLflow telemetry) and never open a window."""
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("TQDM_DISABLE", "1")


@pytest.fixture(scope="session")
def reproduced_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny DVC project after one full ``dvc repro``, built once; tests use it through ``copy_project``."""
    base = tmp_path_factory.mktemp("reproduced")
    build_project(base)
    return base


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test of the reproduced tiny project is end to end: ``slow`` (``pytest -m "not slow"`` is the inner loop)."""
    for item in items:
        if "reproduced_project" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
