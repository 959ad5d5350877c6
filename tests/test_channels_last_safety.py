"""fp32 channels_last on a CPU: a narrow conv must not crash oneDNN's AVX2 kernels (docs/notes-channels-last-crash.md)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from convbench.models import create_model
from convbench.params import TrainParams
from convbench.training.device import MIN_CHANNELS_LAST_WIDTH, narrowest_conv, resolve_runtime

CPU_FP32 = {"device": "cpu", "precision": "fp32", "threads": 1}


def narrow_resnet() -> torch.nn.Module:
    """ResNet-18 at width 0.0625: its 1x1 stride-2 shortcut reads 4 channels."""
    return create_model("resnet", 10, depth=18, stem="pool", width=0.0625)


def test_forced_channels_last_on_the_crashing_model_trains_in_a_subprocess() -> None:
    # Under AVX2-only oneDNN, channels_last here died with "double free or corruption" in the first backward().
    script = textwrap.dedent("""
        import torch
        from torch import nn
        from convbench.models import create_model
        from convbench.params import TrainParams
        from convbench.training.device import resolve_runtime
        torch.manual_seed(0)
        model = create_model("resnet", 10, depth=18, stem="pool", width=0.0625)
        params = TrainParams(device="cpu", precision="fp32", channels_last="on", threads=1)
        runtime = resolve_runtime(params).checked_for(model)
        assert not runtime.channels_last and torch.get_num_threads() == 1
        model = model.to(memory_format=runtime.memory_format)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
        for _ in range(3):
            x = torch.randn(16, 3, 32, 32).contiguous(memory_format=runtime.memory_format)
            loss = nn.functional.cross_entropy(model(x), torch.randint(0, 10, (16,)))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        print("loss", loss.item())
    """)
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert torch.isfinite(torch.tensor(float(done.stdout.split()[-1])))
    assert "channels_last off" in done.stderr and done.stderr.count("\n") == 1, done.stderr


def test_auto_is_nchw_in_fp32_on_a_cpu() -> None:
    runtime = resolve_runtime(TrainParams(**CPU_FP32, channels_last="auto")).checked_for(narrow_resnet())
    assert not runtime.channels_last and runtime.memory_format == torch.contiguous_format


def test_forced_on_falls_back_to_nchw_for_a_narrow_model(capsys: pytest.CaptureFixture[str]) -> None:
    runtime = resolve_runtime(TrainParams(**CPU_FP32, channels_last="on")).checked_for(narrow_resnet())
    assert not runtime.channels_last
    err = capsys.readouterr().err
    assert "4-channel conv" in err and err.count("\n") == 1


def test_forced_on_is_kept_for_a_wide_enough_model(capsys: pytest.CaptureFixture[str]) -> None:
    model = create_model("resnet", 10, depth=18, stem="pool", width=0.125)
    assert narrowest_conv(model) == MIN_CHANNELS_LAST_WIDTH
    assert resolve_runtime(TrainParams(**CPU_FP32, channels_last="on")).checked_for(model).channels_last
    assert resolve_runtime(TrainParams(**CPU_FP32, channels_last="on")).channels_last  # no model: as asked
    assert capsys.readouterr().err == ""


def test_off_stays_off_and_the_check_is_silent(capsys: pytest.CaptureFixture[str]) -> None:
    runtime = resolve_runtime(TrainParams(**CPU_FP32, channels_last="off")).checked_for(narrow_resnet())
    assert not runtime.channels_last and runtime.checked_for(narrow_resnet()) == runtime
    assert capsys.readouterr().err == ""
