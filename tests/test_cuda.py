"""The CUDA paths: AMP (fp16 with loss scaling, bf16), channels_last, exact resume, DDP over NCCL.

Marked ``cuda`` and skipped without a CUDA GPU (CI has none): ``bench/gpu_check.sh``
runs them on a GPU machine with ``pytest -m cuda``.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from convbench.data.format import load_cache, load_split
from convbench.models import create_model
from convbench.params import TrainParams
from convbench.paths import Layout
from convbench.training.device import resolve_runtime
from convbench.training.distributed import Dist
from convbench.training.loop import Trainer
from cudatrain import CUDA_TRAIN, cuda_trainer
from synthetic import write_synthetic_project

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (bench/gpu_check.sh runs these)"),
]

HERE = Path(__file__).resolve().parent
@pytest.fixture
def project(tmp_path: Path) -> Path:
    write_synthetic_project(tmp_path, classes=3, per_class=40, size=32)
    return tmp_path


@pytest.mark.parametrize("family", ["vgg", "resnet", "resnext"])
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_amp_trains_on_cuda(project: Path, precision: str, family: str) -> None:
    t = cuda_trainer(project, family, precision=precision)
    assert t.device.type == "cuda" and t.runtime.precision == precision
    assert t.scaler.is_enabled() == (precision == "fp16")  # loss scaling for fp16 only
    result = t.fit()
    losses = result.history["train_loss"]
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]
    assert all(p.device.type == "cuda" for p in t.model.parameters())


def test_channels_last_weights_and_the_same_outputs(project: Path) -> None:
    t = cuda_trainer(project, precision="fp32")
    conv = t.model.conv1.weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    model = t.model.eval()
    x = torch.randn(4, 3, 32, 32, device="cuda")
    with torch.backends.cudnn.flags(allow_tf32=False), torch.inference_mode():
        nhwc = model(x.contiguous(memory_format=torch.channels_last))
        model.to(memory_format=torch.contiguous_format)
        nchw = model(x)
    torch.testing.assert_close(nhwc, nchw, rtol=1e-4, atol=1e-4)


class Interrupt(Exception):
    """Stops a fit after its first epoch, as a killed job would."""


def test_resume_from_a_checkpoint_continues_the_run(project: Path) -> None:
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    straight = cuda_trainer(project, family="resnet", epochs=3)
    straight.fit()

    first = cuda_trainer(project, family="resnet", epochs=3)
    saved = io.BytesIO()

    def stop(row: dict[str, float]) -> None:
        torch.save(first.state_dict(), saved)  # what save_checkpoint writes
        raise Interrupt

    with pytest.raises(Interrupt):
        first.fit(stop)
    saved.seek(0)
    resumed = cuda_trainer(project, family="resnet", epochs=3)
    resumed.load_state_dict(torch.load(saved, weights_only=True))
    resumed.fit()
    assert resumed.epoch == 3 and len(resumed.history["val_loss"]) == 3
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    exact = all(torch.equal(a[k], b[k]) for k in a)
    print(f"resume on CUDA bit-identical: {exact}")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-3, atol=1e-4)
    assert resumed.history["val_loss"] == pytest.approx(straight.history["val_loss"], rel=1e-3)


def test_one_process_ddp_over_nccl(project: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent / "src"), str(HERE)])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=1",
           str(HERE / "cuda_ddp_worker.py"), str(project)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["backend"] == "nccl" and report["wrapper"] == "DistributedDataParallel"
    plain = cuda_trainer(project, family="resnet", epochs=1, precision="fp32")
    plain.fit()
    assert report["val_loss"] == pytest.approx(plain.history["val_loss"][0], rel=1e-2)
