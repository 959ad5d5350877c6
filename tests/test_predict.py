"""``convbench predict``: cache-identical preprocessing, top-k output, and parity with the logged MLflow model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from convbench.data.format import load_cache
from convbench.errors import ConvbenchError
from convbench.evaluation.predict import classify, family_of_model, main, preprocess
from synthetic import write_params, write_synthetic_project


def save_png(image: torch.Tensor, path: Path) -> Path:
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(path)
    return path


def test_preprocess_matches_the_cache_normalisation(tmp_path: Path) -> None:
    cache = write_synthetic_project(tmp_path, classes=2, per_class=3, size=16)
    paths = [save_png(cache.images[i], tmp_path / f"{i}.png") for i in (0, 4)]
    x = preprocess(paths, 16, cache.mean.tolist(), cache.std.tolist())
    mean, std = cache.mean.double().view(1, 3, 1, 1), cache.std.double().view(1, 3, 1, 1)
    expected = (cache.images[[0, 4]].double() / 255 - mean) / std
    assert x.dtype == torch.float32 and x.shape == (2, 3, 16, 16)
    assert torch.allclose(x.double(), expected, atol=1e-5)
    big = tmp_path / "big.png"  # a non-square RGBA file goes through the cache's resize and RGB conversion
    Image.new("RGBA", (40, 24), (255, 0, 0, 255)).save(big)
    red = preprocess([big], 16, [0.0, 0.0, 0.0], [1.0, 1.0, 1.0])
    assert red.shape == (1, 3, 16, 16) and torch.allclose(red[0, :, 0, 0], torch.tensor([1.0, 0.0, 0.0]))


def test_classify_ranks_top_k_and_checks_shapes(tmp_path: Path) -> None:
    cache = write_synthetic_project(tmp_path, classes=3, per_class=2, size=8)
    path = save_png(cache.images[0], tmp_path / "a.png")
    meta = {"classes": ["a", "b", "c"], "mean": [0.5] * 3, "std": [0.25] * 3, "image_size": 8}
    logits = torch.log(torch.tensor([[0.2, 0.7, 0.1]]))
    (result,) = classify([path], lambda x: logits, meta, top_k=2)
    assert [name for name, _ in result.top] == ["b", "a"]
    assert result.top[0][1] == pytest.approx(0.7)
    assert len(classify([path], lambda x: logits, meta, top_k=10)[0].top) == 3
    with pytest.raises(ConvbenchError, match="do not match"):
        classify([path], lambda x: torch.zeros(1, 5), meta, top_k=1)


def test_family_from_model_uri() -> None:
    assert family_of_model("models:/convbench-resnet@current", None) == "resnet"
    assert family_of_model("models:/convbench-vgg/3", None) == "vgg"
    assert family_of_model("models:/convbench-resnet@current", "vgg") == "vgg"
    assert family_of_model(None, None) == "resnext"


def test_missing_weights_and_unreadable_images_are_one_line_errors(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["x.png", "--family", "resnet"]) == 2
    assert "dvc repro train@resnet" in capsys.readouterr().err
    with pytest.raises(ConvbenchError, match="cannot read image"):
        preprocess([tmp_path / "missing.png"], 8, [0.5] * 3, [0.25] * 3)


def test_predict_matches_the_logged_mlflow_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    import mlflow

    from convbench.evaluation.predict import weights_predictor
    from convbench.stages.train import main as train

    threads = torch.get_num_threads()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    write_synthetic_project(tmp_path, classes=3, per_class=20, size=16)
    write_params(tmp_path, {"data": {"image_size": 16},
                            "train": {"epochs": 1, "batch_size": 16, "warmup_fraction": 0.25, "lr": 0.05,
                                      "precision": "fp32", "channels_last": "off", "threads": 1},
                            "resnet": {"depth": 18, "width": 0.125}})
    try:
        assert train(["resnet"]) == 0
    finally:
        torch.set_num_threads(threads)
    cache = load_cache(tmp_path / "data" / "cache.pt")
    paths = [save_png(cache.images[i], tmp_path / f"img{i}.png") for i in (1, 25, 50)]

    capsys.readouterr()
    assert main([*map(str, paths), "--family", "resnet", "--top-k", "1"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 3 and printed[0].startswith(f"{paths[0]}: class")

    logits_of, meta = weights_predictor(tmp_path / "models" / "resnet.pt")
    ours = classify(paths, logits_of, meta, top_k=3)
    x = preprocess(paths, meta["image_size"], meta["mean"], meta["std"])
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    served = mlflow.pyfunc.load_model("models:/convbench-resnet@current").predict(x.numpy())
    served_probs = torch.as_tensor(np.asarray(served)).softmax(dim=1).numpy()
    for prediction, probs in zip(ours, served_probs):
        np.testing.assert_allclose(prediction.probabilities, probs, atol=1e-5)
        assert prediction.top[0][0] == meta["classes"][int(np.argmax(probs))]
    assert [line.split(": ")[1].split(" ")[0] for line in printed] == [p.top[0][0] for p in ours]

    assert main([*map(str, paths), "--model-uri", "models:/convbench-resnet@current", "--top-k", "1"]) == 0
    via_registry = capsys.readouterr().out.splitlines()
    assert [line.split(" ")[1] for line in via_registry] == [line.split(" ")[1] for line in printed]
