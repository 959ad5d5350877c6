"""Multi-process training: torchrun + DDP over gloo on CPU against the single-process run."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from convbench.config import ConfigError
from convbench.paths import Layout
from convbench.training.augment import Normalizer, augment_batch
from convbench.training.distributed import Dist, shard_batches
from synthetic import killer_env, write_params, write_synthetic_project

pytestmark = pytest.mark.slow  # end to end: DVC, torchrun, servers or the benchmark

SRC = Path(__file__).resolve().parents[1] / "src"
# No BatchNorm and no dropout: without SyncBatchNorm (CUDA only) each rank normalises over its own half-batch,
# and each rank draws its own dropout masks, so the runs would differ by design, not by a bug.
PARAMS = {
    "data": {"image_size": 32},
    "train": {"epochs": 3, "batch_size": 16, "eval_batch_size": 64, "lr": 0.02, "warmup_fraction": 0.17,
              "precision": "fp32", "channels_last": "off", "threads": 1, "cutout": 4, "whiten": 0},
    "vgg": {"depth": 11, "config": "A", "batch_norm": False, "width": 0.125},
}


def train(base: Path, nproc: int, sections: dict | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    """The train stage for ``vgg`` in ``base`` with ``train.nproc = nproc``, as DVC runs it."""
    write_params(base, {**PARAMS, **(sections or {}), "train": {**PARAMS["train"], "nproc": nproc}})
    environ = {**os.environ, "PYTHONPATH": str(SRC), "MLFLOW_TRACKING_URI": f"sqlite:///{base / 'mlflow.db'}", **env}
    return subprocess.run([sys.executable, "-m", "convbench.stages.train", "vgg"], cwd=base, env=environ,
                          capture_output=True, text=True, timeout=600)


def weights(base: Path) -> dict[str, torch.Tensor]:
    return torch.load(Layout(base).weights("vgg"), weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, subprocess.CompletedProcess[str]]]:
    """One single-process and one 2-process training of the same tiny project."""
    out = {}
    for name, nproc in (("one", 1), ("two", 2)):
        base = tmp_path_factory.mktemp(name)
        write_synthetic_project(base, classes=3, per_class=40, size=32)
        out[name] = (base, train(base, nproc))
        assert out[name][1].returncode == 0, out[name][1].stderr[-4000:]
    return out


def test_two_gloo_processes_train_the_same_model_as_one(runs: dict) -> None:
    (one, _), (two, _) = runs["one"], runs["two"]
    a, b = weights(one), weights(two)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], rtol=1e-4, atol=1e-5), key
    assert not torch.equal(a["features.0.weight"], torch.zeros_like(a["features.0.weight"]))
    ha, hb = (Layout(base).history("vgg").read_text().splitlines() for base in (one, two))
    assert len(ha) == len(hb) == 1 + PARAMS["train"]["epochs"]
    for line_a, line_b in zip(ha[1:], hb[1:]):  # epoch, losses and accuracies agree; seconds and img/s do not
        for x, y in zip(line_a.split(",")[:6], line_b.split(",")[:6]):
            assert float(x) == pytest.approx(float(y), rel=1e-4, abs=1e-5)


def test_only_rank_zero_logs_and_writes(runs: dict) -> None:
    from mlflow.tracking import MlflowClient

    base, done = runs["two"]
    epochs = PARAMS["train"]["epochs"]
    assert done.stdout.count("vgg epoch 1/") == 1, done.stdout  # one rank prints
    client = MlflowClient(f"sqlite:///{base / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("convbench")
    (run,) = client.search_runs([experiment.experiment_id])  # one MLflow run, not one per rank
    assert run.data.params["runtime.world_size"] == "2"
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "val_loss")) == list(range(1, epochs + 1))
    assert len(client.search_model_versions("name='convbench-vgg'")) == 1
    summary = json.loads(Layout(base).train_summary("vgg").read_text())
    assert summary["mlflow_run_id"] == run.info.run_id and summary["epochs_run"] == epochs
    assert not Layout(base).checkpoint("vgg").exists()


def test_a_killed_distributed_training_resumes_to_the_same_weights(tmp_path: Path) -> None:
    """SIGKILL after epoch 1, re-run: bit-identical to an uninterrupted run, dropout (per-rank generators) included."""
    dropout = {"vgg": {**PARAMS["vgg"], "dropout": 0.3}}
    bases = {name: tmp_path / name for name in ("straight", "killed")}
    for base in bases.values():
        write_synthetic_project(base, classes=3, per_class=40, size=32)
    straight = train(bases["straight"], 2, sections=dropout)
    assert straight.returncode == 0, straight.stderr[-4000:]
    killed = train(bases["killed"], 2, sections=dropout, **killer_env(1))
    assert killed.returncode != 0
    state = torch.load(Layout(bases["killed"]).checkpoint("vgg"), weights_only=True)
    assert state["epoch"] == 1 and len(state["rng"]["torch"]) == 2  # one generator state per rank
    assert not torch.equal(state["rng"]["torch"][0], state["rng"]["torch"][1])
    assert not Layout(bases["killed"]).weights("vgg").exists()
    resumed = train(bases["killed"], 2, sections=dropout)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert "resuming from" in resumed.stderr
    a, b = weights(bases["straight"]), weights(bases["killed"])
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_two_nodes_by_static_rendezvous_train_as_two_local_processes(runs: dict, tmp_path: Path) -> None:
    """Two "nodes" on localhost (torchrun's PET_* variables), one process each, the unchanged stage command."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    nodes = []
    for rank in (0, 1):
        base = tmp_path / f"node{rank}"
        write_synthetic_project(base, classes=3, per_class=40, size=32)
        write_params(base, PARAMS)
        env = {**os.environ, "PYTHONPATH": str(SRC), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
               "PET_NNODES": "2", "PET_NODE_RANK": str(rank), "PET_MASTER_ADDR": "127.0.0.1",
               "PET_MASTER_PORT": str(port)}
        nodes.append(subprocess.Popen([sys.executable, "-m", "convbench.stages.train", "vgg"], cwd=base, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [node.communicate(timeout=300)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs
    assert Layout(tmp_path / "node0").weights("vgg").exists() and not Layout(tmp_path / "node1").models.exists()
    a, b = weights(runs["two"][0]), weights(tmp_path / "node0")
    assert all(torch.allclose(a[k], b[k], rtol=1e-5, atol=1e-6) for k in a)


def test_shards_are_disjoint_and_cover_every_global_batch() -> None:
    order = torch.randperm(50)
    for world in (1, 2, 4):
        shards = [shard_batches(order, 8, Dist(rank=r, world_size=world)) for r in range(world)]
        assert all(s.shape == (6, 8 // world) for s in shards)
        together = torch.cat(shards, dim=1)  # rank order = the global batch's column order
        assert torch.equal(together.flatten(), order[:48])
    with pytest.raises(ConfigError, match="not divisible by the 3 processes"):
        shard_batches(order, 8, Dist(rank=0, world_size=3))


def test_a_rank_augments_its_slice_exactly_as_the_whole_batch() -> None:
    x = torch.randint(0, 256, (8, 3, 12, 12), dtype=torch.uint8)
    norm = Normalizer(torch.full((3,), 0.5), torch.full((3,), 0.25), torch.device("cpu"))
    kw = {"crop_padding": 3, "flip": True, "cutout_size": 4}
    whole = augment_batch(x, norm, torch.Generator().manual_seed(5), **kw)
    halves = [augment_batch(x[o : o + 4], norm, torch.Generator().manual_seed(5), part=(o, 8), **kw) for o in (0, 4)]
    assert torch.equal(torch.cat(halves), whole)
    alone = augment_batch(x[4:], norm, torch.Generator().manual_seed(5), **kw)  # its own draws, not the batch's
    assert not torch.equal(halves[1], alone)


@pytest.mark.parametrize(
    "train_section, message",
    [
        ({"nproc": 3}, "train.batch_size: 16 must be divisible by train.nproc (3)"),
        ({"nproc": 2, "sync_bn": True}, "train.sync_bn: PyTorch's SyncBatchNorm runs on CUDA only"),
        ({"nproc": 0}, "train.nproc: must be at least 1"),
    ],
)
def test_bad_distributed_params_fail_before_launch(tmp_path: Path, train_section: dict, message: str) -> None:
    write_synthetic_project(tmp_path, classes=3, per_class=40, size=32)
    write_params(tmp_path, {**PARAMS, "train": {**PARAMS["train"], "device": "cpu", **train_section}})
    environ = {**os.environ, "PYTHONPATH": str(SRC), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    done = subprocess.run([sys.executable, "-m", "convbench.stages.train", "vgg"], cwd=tmp_path, env=environ,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and message in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert "torch.distributed" not in done.stderr and not Layout(tmp_path).checkpoint("vgg").exists()
