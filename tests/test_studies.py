"""Seeds and cardinality at fixed complexity: the statistics on constructed numbers, the auto base width,
and the runs stage's shortcut for an unchanged store."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from torch import nn

from convbench.config import ConfigError
from convbench.evaluation import studies
from convbench.evaluation.studies import Runs, cardinality_groups, cardinality_trend, seed_pair, seed_stats
from convbench.families import model_config
from convbench.models import create_model
from convbench.params import parse_params
from convbench.stages import runs as runs_stage

ROOT = Path(__file__).resolve().parents[1]


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_seed_stats_on_constructed_numbers() -> None:
    st = seed_stats([0.80, 0.82, 0.84])
    assert (st.n, st.low, st.high) == (3, 0.80, 0.84)
    assert st.mean == pytest.approx(0.82) and st.sd == pytest.approx(0.02)
    half = 4.302653 * 0.02 / 3 ** 0.5  # t(0.975, 2 df)
    assert st.ci == pytest.approx((0.82 - half, 0.82 + half))
    one = seed_stats([0.7])
    assert (one.n, one.mean, one.sd, one.ci) == (1, 0.7, None, None)


def test_paired_seed_test_on_constructed_numbers() -> None:
    a = [{"seed": s, "test_accuracy": v} for s, v in zip((0, 1, 2, 9), (0.80, 0.82, 0.84, 0.5))]
    b = [{"seed": s, "test_accuracy": v} for s, v in zip((0, 1, 2), (0.79, 0.80, 0.81))]
    pair = seed_pair(a, b)  # seed 9 has no partner: left out
    assert (pair.seeds, pair.a_ahead, pair.b_ahead) == (3, 3, 0)
    assert pair.mean_difference == pytest.approx(0.02)
    assert pair.p_value == pytest.approx(0.0742, abs=5e-4)  # t = 0.02 / (0.01 / sqrt 3) = 3.46 on 2 df
    assert seed_pair(a[:1], b[:1]).p_value is None  # one shared seed: no test


def test_trend_per_doubling_of_cardinality() -> None:
    params = parse_params({"resnext": {"depth": 11, "cardinality": 4, "base_width": 16, "width": 0.25}})
    config = {k: str(v) for k, v in vars(params.models["resnext"]).items()}

    def run(c: int, d: int, seed: int, acc: float) -> dict:
        return {"run_id": f"{c}{seed}", "family": "resnext", "seed": seed, "start_time": seed, "test_accuracy": acc,
                "model": config | {"cardinality": str(c), "base_width": str(d)}, "model_params": 1.0, "model_macs": 1.0}

    runs = Runs([run(c, d, s, 0.80 + 0.01 * i + 0.001 * s) for i, (c, d) in enumerate(((1, 40), (4, 16), (16, 6)))
                 for s in (0, 1)])
    groups = cardinality_groups(runs, params)
    assert [(g.cardinality, g.base_width, g.accuracy.n) for g in groups] == [(1, 40, 2), (4, 16, 2), (16, 6, 2)]
    trend = cardinality_trend(groups)
    assert trend.slope == pytest.approx(0.005) and trend.points == 6  # 1 point per two doublings
    assert trend.ci[0] > 0


def test_feature_params_are_the_models_parameters_without_the_classifier() -> None:
    for section in ({}, {"depth": 20, "cardinality": 4, "base_width": 32, "width": 0.25},
                    {"layout": "course", "depth": 50, "cardinality": 32, "base_width": 4, "stem": "imagenet"},
                    {"depth": 11, "cardinality": 2, "base_width": 16, "width": 0.125}):
        config = model_config("resnext", **section)
        model = create_model(config, 10)
        assert config.feature_params(config.cardinality, config.base_width) == n_params(model) - n_params(model.fc)


@pytest.mark.parametrize("cardinality", [1, 2, 4, 8])
def test_auto_base_width_keeps_the_parameter_count_within_10_percent(cardinality: int) -> None:
    default = parse_params({"resnext": {"depth": 20, "width": 0.25, "cardinality": 4, "base_width": 32}})
    reference = n_params(create_model(default.models["resnext"], 10))
    auto = model_config("resnext", depth=20, width=0.25, cardinality=cardinality, base_width="auto",
                        complexity_of="4x32d")
    assert isinstance(auto.base_width, int)
    assert abs(n_params(create_model(auto, 10)) / reference - 1) < 0.10
    if cardinality == 4:
        assert auto.base_width == 32


def test_auto_base_width_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"resnext\.complexity_of: '' is not a setting like '4x32d'"):
        model_config("resnext", base_width="auto", complexity_of="")
    with pytest.raises(ConfigError, match=r"resnext\.base_width: 'wide' is not a int or 'auto'"):
        model_config("resnext", base_width="wide")


def test_runs_stage_queries_again_only_when_store_params_or_output_changed(tmp_path, monkeypatch) -> None:
    """A no-op ``dvc repro`` must not pay for MLflow: an unchanged sqlite store is not queried twice."""
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    db = tmp_path / "mlflow.db"
    db.write_bytes(b"store")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    queried: list[str] = []
    monkeypatch.setattr(studies, "collect", lambda uri, params, recorded: queried.append(uri) or Runs([], None))
    out = tmp_path / "reports" / "runs.json"

    def repro() -> int:
        assert runs_stage.main([]) == 0 and out.is_file()
        return len(queried)

    assert repro() == 1
    assert repro() == 1, "unchanged store, params and runs.json: no query"
    db.write_bytes(b"store with a new run")
    assert repro() == 2
    out.unlink()
    assert repro() == 3
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["train"]["epochs"] += 1
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    assert repro() == 4
    assert repro() == 4
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # a server: its version is unknown
    assert repro() == 5
    assert repro() == 6
