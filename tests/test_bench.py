"""The benchmark: quick mode writes every figure, and the two training steps it compares are like for like."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from convbench.bench.training import NUM_CLASSES, Workload, build_model, in_memory_cache, notebook_loop, our_trainer
from convbench.bench.training import synthetic_images
from convbench.families import FAMILIES
from convbench.params import TrainParams
from convbench.training.device import Runtime

pytestmark = pytest.mark.slow  # end to end: DVC, torchrun, servers or the benchmark

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = ("cifar", "notebook")


def test_quick_benchmark_writes_every_figure(tmp_path: Path) -> None:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    # One thread: two OpenMP threads on two cores shared with other processes can stall for seconds per step.
    params["train"]["threads"] = 1
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--out", "out"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads((tmp_path / "out" / "benchmark.json").read_text())
    markdown = (tmp_path / "out" / "benchmark.md").read_text()

    assert result["mode"] == "quick"
    machine = result["machine"]
    for key in ("cpu", "logical_cpus", "torch", "precision", "channels_last", "threads"):
        assert machine[key] not in (None, ""), key
    assert result["load_average"]["start"] and result["load_average"]["end"]
    assert result["peaks"]["bf16"]["flops"] > 0 and result["peaks"]["fp32"]["flops"] > 0
    for family in FAMILIES:
        for setting in SETTINGS:
            t = result["training"][family][setting]
            assert t["image_size"] == result["settings"][setting]["image_size"]
            for side in ("ours", "reference"):
                assert t[side]["images_per_second"] > 0 and t[side]["rounds"] >= 1
                assert set(t[side]["utilisation"]) == {"bf16", "fp32"}
                assert torch.isfinite(torch.tensor(t[side]["last_loss"]))
            assert t["speedup"] == pytest.approx(t["ours"]["images_per_second"] / t["reference"]["images_per_second"])
            e = result["inference"][family][setting]
            assert e["images_per_second"] > 0 and e["latency_ms"] > 0
    for setting in SETTINGS:
        c = result["cache"]["sizes"][setting]
        assert c["images"] == result["cache"]["source"]["images_measured"] > 0
        for side in ("ours", "notebook"):
            assert c[side]["images_per_second"] > 0 and c[side]["peak_pss_mb"] >= c[side]["peak_anon_mb"] > 0
            baseline = result["cache"]["baseline"]["peak_anon_mb"]
            assert c[side]["net_mb"] == pytest.approx(c[side]["peak_anon_mb"] - baseline)
        assert c["memory_ratio"] == pytest.approx(c["ours"]["net_mb"] / c["notebook"]["net_mb"])
    variants = result["resnext_variants"]
    assert len(variants["rows"]) >= 2 * 2 and variants["fastest"] in {r["variant"] for r in variants["rows"]}
    assert variants["compile"]["status"] == "skipped" and variants["compile"]["reason"]
    assert len(result["targets"]) == 3 * 2 + 2 + 2 * 2
    missed = {t["case"] for t in result["targets"] if not t["met"]}
    assert set(result["profiles"]) == missed

    for heading in ("## Machine", "## Targets", "## Training step", "## ResNeXt alternatives",
                    "## Evaluation throughput", "## Cache stage", "## Profiles of the missed cases"):
        assert heading in markdown
    assert markdown.count("|---|") >= 5
    for family in FAMILIES:
        assert f"| {family} | {result['settings']['notebook']['image_size']} px |" in markdown


def test_reference_step_matches_ours_in_fp32() -> None:
    """Augmentation off, fp32 NCHW: one step of each from the same weights on the same batch agrees."""
    params = TrainParams(batch_size=8, crop_padding=0, flip=False, cutout=0, warmup_fraction=0.0)
    workload = Workload("resnet", {"depth": 18, "width": 0.0625, "stem": "cifar"}, image_size=16, batch_size=8)
    cache = in_memory_cache(*synthetic_images(8, 16, seed=1))
    # Normalisation is the identity on the 0..1 scale, which is what the notebook feeds its model.
    cache = dataclasses.replace(cache, mean=torch.zeros(3), std=torch.ones(3))
    runtime = Runtime(torch.device("cpu"), "fp32", channels_last=False, threads=torch.get_num_threads())
    initial = {k: v.clone() for k, v in build_model(workload, seed=3).state_dict().items()}

    ours = our_trainer(build_model(workload, seed=3), cache, params, runtime)
    reference = notebook_loop(build_model(workload, seed=3), cache, params, runtime.device)
    ours_loss = ours.train_epoch(1)["train_loss"]
    reference_loss = reference.train_epoch()["train_loss"]

    assert ours_loss == pytest.approx(reference_loss, rel=1e-5)
    assert ours_loss == pytest.approx(torch.log(torch.tensor(float(NUM_CLASSES))).item(), rel=0.5)
    ours_state, reference_state = ours.model.state_dict(), reference.model.state_dict()
    assert not torch.equal(ours_state["fc.weight"], initial["fc.weight"])  # the step did update the weights
    for name, value in ours_state.items():
        torch.testing.assert_close(value, reference_state[name], rtol=1e-4, atol=1e-6, msg=name)
