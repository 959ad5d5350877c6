"""The benchmark (bench/): a quick run reports every ratio, and the two training steps it compares are like for like."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from bench.loading import list_folder, run_child, stage
from bench.synthetic import synthetic_cache, write_image_folder
from bench.training import NUM_CLASSES, Rounds, contestants, one_batch_data
from convbench.data.cache import build_cache
from convbench.families import FAMILIES, model_config
from convbench.params import TrainParams
from convbench.training.device import Runtime

ROOT = Path(__file__).resolve().parents[1]


def positive(x: float) -> bool:
    return math.isfinite(x) and x > 0


@pytest.mark.slow  # end to end: the benchmark's quick mode
def test_quick_benchmark_reports_ratios_and_no_verdicts(tmp_path: Path) -> None:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    # One thread: two OpenMP threads on two cores shared with other processes can stall for seconds per step.
    params["train"]["threads"] = 1
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--out", "out"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads((tmp_path / "out" / "benchmark.json").read_text())
    markdown = (tmp_path / "out" / "benchmark.md").read_text()

    assert result["mode"] == "quick" and result["machine"]["machine.threads"] == "1"
    assert all(positive(result["peaks"][p]["flops"]) for p in ("bf16", "fp32"))
    assert 0 <= result["noise"]["other_cores"] <= result["machine"]["logical_cpus"]
    for family in FAMILIES:
        for setting, sizes in result["settings"].items():
            t = result["training"][family][setting]
            assert (t["image_size"], t["batch_size"]) == (sizes["image_size"], sizes["batch_size"])
            for side in ("ours", "notebook"):
                assert positive(t[side]["images_per_second"]) and t[side]["rounds"] == 2
                assert math.isfinite(t[side]["last_loss"])
                assert all(positive(u) for u in t[side]["utilisation"].values())
            assert t["speedup"] == pytest.approx(t["ours"]["images_per_second"] / t["notebook"]["images_per_second"])
    for setting, sizes in result["settings"].items():
        c = result["loading"]["sizes"][setting]
        assert c["image_size"] == sizes["image_size"] and c["images"] == 4 * 6  # the quick synthetic folder
        for side in ("ours", "notebook"):
            assert positive(c[side]["images_per_second"]) and positive(c[side]["peak_mb"])
            assert c[side]["net_mb"] == pytest.approx(c[side]["peak_mb"] - result["loading"]["baseline_mb"])
        assert c["speedup"] == pytest.approx(c["ours"]["images_per_second"] / c["notebook"]["images_per_second"])
        assert c["notebook"]["net_mb"] > 0
        assert c["memory_ratio"] == pytest.approx(c["ours"]["net_mb"] / c["notebook"]["net_mb"])
        # the notebook holds float32 images, the cache uint8: four times the bytes
        assert c["notebook"]["tensor_mb"] == pytest.approx(4 * c["ours"]["tensor_mb"])
    assert not {"targets", "profiles"} & set(result)

    for heading in ("## Machine", "## Training step", "## Loading images"):
        assert heading in markdown
    assert "missed" not in markdown and "target" not in markdown.lower()
    for family in FAMILIES:
        assert f"| {family} | {result['settings']['notebook']['image_size']} px |" in markdown


def test_reference_step_matches_ours_in_fp32() -> None:
    """Augmentation off, fp32 NCHW: one step of each from the same weights on the same batch agrees."""
    params = TrainParams(crop_padding=0, flip=False, cutout=0, warmup_fraction=0.0, whiten=0)
    config = model_config("resnet", depth=18, width=0.125, stem="cifar")
    cache, split = one_batch_data(image_size=16, batch_size=8, seed=1)
    # Normalisation is the identity on the 0..1 scale, which is what the notebook feeds its model.
    cache = dataclasses.replace(cache, mean=torch.zeros(3), std=torch.ones(3))
    runtime = Runtime(torch.device("cpu"), "fp32", channels_last=False, threads=torch.get_num_threads())
    rounds = Rounds(warmup=1, least=1, most=2, budget_seconds=0)
    ours, reference = contestants(config, cache, split, params, runtime, rounds)
    initial = {k: v.clone() for k, v in ours.model.state_dict().items()}

    # built as the train stage builds it, for exactly the steps the measurement can take
    assert ours.params.epochs == rounds.warmup + rounds.most == 3 and ours.steps_per_epoch == 1
    assert ours.batch_size == 8
    assert sorted(split["train"].tolist() + split["val"].tolist()) == list(range(len(cache.labels)))
    assert torch.bincount(cache.labels[split["train"]], minlength=NUM_CLASSES).max() == 1  # the classes in turn
    ours_loss = ours.train_epoch(1)["train_loss"]
    reference_loss = reference.train_epoch()["train_loss"]

    assert ours_loss == pytest.approx(reference_loss, rel=1e-5)
    assert ours_loss == pytest.approx(math.log(NUM_CLASSES), rel=0.5)
    ours_state, reference_state = ours.model.state_dict(), reference.model.state_dict()
    assert not torch.equal(ours_state["fc.weight"], initial["fc.weight"])  # the step did update the weights
    for name, value in ours_state.items():
        torch.testing.assert_close(value, reference_state[name], rtol=1e-4, atol=1e-6, msg=name)


def test_a_subset_of_the_unzip_stages_tree_is_staged_for_both_loaders(tmp_path: Path) -> None:
    """``--images data/images``: the origins' class folders are listed; build_cache reads a spread subset."""
    cache = synthetic_cache(classes=2, per_class=6, size=8)
    write_image_folder(cache, tmp_path / "images" / "train")
    listing = list_folder(tmp_path / "images")
    assert len(listing) == 12 and {cls for _, cls in listing} == {"class0", "class1"}
    root, manifest = stage(listing, 4, tmp_path / "staged")
    staged = build_cache(root, manifest, 8, workers=1)
    assert staged.labels.tolist() == [0, 0, 1, 1] and staged.classes == cache.classes
    assert sorted(p.parent.name for p in (root / "all").rglob("*.jpg")) == ["class0", "class0", "class1", "class1"]


@pytest.mark.slow  # starts a Python process that imports torch
def test_a_child_that_only_imports_torch_has_a_measured_footprint() -> None:
    baseline = run_child(["baseline"])
    assert set(baseline) == {"peak_mb"} and 50 < baseline["peak_mb"] < 4096
