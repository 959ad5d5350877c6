"""The shared figures module: a training's curves are drawn without pyplot and written atomically."""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib
import pytest
from PIL import Image

from convbench.figures import learning_curves
from convbench.training.loop import HISTORY_COLUMNS


def test_training_curves_need_no_pyplot_and_leave_no_temporary_file(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    def switch_backend(*args: object, **kwargs: object) -> None:
        raise AssertionError("the process's matplotlib backend must not change")

    monkeypatch.setattr(matplotlib, "use", switch_backend)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)  # importing pyplot now fails
    history = {name: [float(epoch + k) for epoch in (1, 2, 3)] for k, name in enumerate(HISTORY_COLUMNS)}
    history["epoch"] = [1.0, 2.0, 3.0]
    path = tmp_path / "resnet_curves.png"
    learning_curves({"resnet": history}, {"resnet": 2}, path)
    with Image.open(path) as img:
        assert img.format == "PNG" and img.width > 100
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
