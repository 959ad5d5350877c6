"""The course notebook's comparison: its models, its split and its recipe (``convbench recipe course``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torchvision.models as tvm
import yaml
from sklearn.model_selection import train_test_split
from torch import nn
from torchvision.datasets import ImageFolder

from bench.gpu import main as gpu_bench
from convbench.config import ConfigError
from convbench.data.cache import build_cache
from convbench.data.split import make_split
from convbench.data.unzip import unzip_archive
from convbench.models import create_model, summarize
from convbench.models.resnet import CourseBottleneck
from convbench.models.whiten import whiten_stem
from convbench.params import parse_params
from convbench.recipes import check, commands, compose, load_recipe, parse_override
from imagezips import class_colour, image_bytes, make_image, make_image_zip
from notebook import NOTEBOOK_RESNET18_PARAMS, NOTEBOOK_RESNEXT_PARAMS

ROOT = Path(__file__).resolve().parents[1]

# Parameter counts of the course notebook's own classes for its 3 classes, computed once from its definitions
# (ResNeXt(3, cardinality, base_width) and ResNet18(3)).


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def course_resnext(cardinality: int, dropout: float = 0.0) -> nn.Module:
    return create_model(
        "resnext", 3, layout="course", depth=50, cardinality=cardinality, base_width=4, stem="imagenet", width=1.0,
        dropout=dropout
    )


@pytest.mark.parametrize("cardinality, dropout", [(32, 0.0), (64, 0.1)])
def test_course_resnext_matches_the_notebook(cardinality: int, dropout: float) -> None:
    model = course_resnext(cardinality, dropout)
    assert n_params(model) == NOTEBOOK_RESNEXT_PARAMS[cardinality]
    stages = [model.layer1, model.layer2, model.layer3, model.layer4]
    assert [len(s) for s in stages] == [3, 4, 6, 3]
    assert [s[-1].conv3.out_channels for s in stages] == [64, 128, 256, 512]  # no x4 expansion
    for block in (b for s in stages for b in s):
        assert isinstance(block, CourseBottleneck)
        assert block.conv2.groups == cardinality and block.conv2.in_channels == cardinality * 4  # D in every stage
    assert model.layer1[0].downsample is None  # 64 -> 64 at stride 1 needs no projection
    assert model.conv1.kernel_size == (7, 7) and isinstance(model.maxpool, nn.MaxPool2d)
    assert model(torch.randn(2, 3, 96, 96)).shape == (2, 3)


def test_course_resnext_is_about_a_tenth_of_resnext50() -> None:
    with torch.device("meta"):
        paper = n_params(tvm.resnext50_32x4d(weights=None, num_classes=3))
    assert 0.04 < NOTEBOOK_RESNEXT_PARAMS[32] / paper < 0.06


def test_course_resnet18_matches_the_notebook_and_torchvision() -> None:
    model = create_model("resnet", 3, layout="course", depth=18, stem="imagenet", width=1.0, dropout=0.5)
    assert n_params(model) == NOTEBOOK_RESNET18_PARAMS
    oracle = tvm.resnet18(weights=None, num_classes=3)
    assert n_params(oracle) == NOTEBOOK_RESNET18_PARAMS
    model.load_state_dict(oracle.state_dict())  # same names and shapes: the same network
    model.eval(), oracle.eval()
    x = torch.randn(2, 3, 96, 96)
    torch.testing.assert_close(model(x), oracle(x))


def _inputs_of(module: nn.Module, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    seen: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda m, args, out: seen.append(args[0].clone()))
    model(x)
    handle.remove()
    return seen[0]


@pytest.mark.parametrize(
    "family, section",
    [
        ("resnext", {"layout": "course", "depth": 50, "cardinality": 32, "base_width": 4, "stem": "imagenet",
                     "width": 1.0}),
        ("resnet", {"layout": "course", "depth": 18, "stem": "imagenet", "width": 1.0}),
    ],
)
def test_course_dropout_sits_after_the_first_relu_and_before_the_classifier(
    family: str, section: dict
) -> None:
    model = create_model(family, 3, dropout=0.5, **section)
    block = model.layer2[1]
    assert block.dropout.p == 0.5 and model.head_dropout.p == 0.5
    x = torch.randn(2, 3, 64, 64)
    model.eval()  # dropout off: conv2 sees relu(bn1(conv1(x))), fc sees the pooled features
    inner = _inputs_of(block.conv1, model, x)
    torch.testing.assert_close(_inputs_of(block.conv2, model, x), block.relu(block.bn1(block.conv1(inner))))
    model.train()  # dropout on: the zeros it makes reach conv2 and fc
    torch.manual_seed(0)
    assert (_inputs_of(block.conv2, model, x) == 0).float().mean() > 0.3
    torch.manual_seed(0)
    assert (_inputs_of(model.fc, model, x) == 0).float().mean() > 0.3


def test_paper_layouts_keep_no_classifier_dropout() -> None:
    assert create_model("resnet", 3, width=0.125, dropout=0.3).head_dropout.p == 0.0
    assert create_model("resnext", 3, width=0.25, dropout=0.3).head_dropout.p == 0.0


def test_course_models_size_at_96px() -> None:
    """The figures the README quotes: the course's models at 96 px (3 classes)."""
    resnext = summarize(course_resnext(64, 0.1), 96)
    resnet = summarize(create_model("resnet", 3, layout="course", depth=18, stem="imagenet", width=1.0,
                                         dropout=0.5), 96)
    vgg = summarize(create_model("vgg", 3, depth=16, config="C", width=1.0), 96)
    assert resnext.params == NOTEBOOK_RESNEXT_PARAMS[64] and resnet.params == NOTEBOOK_RESNET18_PARAMS
    # VGG-16-C at 96 px: 2.14 GMACs (config D would be 2.82), 6x ResNet-18 and 11x the improved ResNeXt
    assert 2.0e9 < vgg.macs < 2.3e9 and 3.0e8 < resnet.macs < 3.6e8 and 1.7e8 < resnext.macs < 2.0e8


# -- the split -------------------------------------------------------------------------------------


def test_unstratified_split_equals_the_notebooks_sklearn_split(tmp_path: Path) -> None:
    odd_names = {  # file names whose sort order differs from their creation order
        f"cnn_dataset/dogs/{name}": image_bytes(make_image(16, colour=class_colour("dogs"), seed=i))
        for i, name in enumerate(["b10.png", "B2.png", "a 1.jpeg", "9.png", "z.PNG"])
    }
    archive = make_image_zip(
        tmp_path / "course.zip", {"cnn_dataset": {"food": 23, "dogs": 17, "vehicles": 31}}, extra=odd_names
    )
    images, manifest = tmp_path / "images", tmp_path / "unzip.json"
    unzip_archive(archive, images, manifest, max_files=1000, max_bytes=2**30)
    cache = build_cache(images, manifest, 16, workers=1)
    split = make_split(
        cache.labels.numpy(), cache.origin.numpy(), val_fraction=0.15, test_fraction=0.15, seed=42, stratify=False
    )

    with zipfile.ZipFile(archive) as zf:
        zf.extractall(tmp_path / "notebook")
    dataset = ImageFolder(str(tmp_path / "notebook" / "cnn_dataset"))  # the notebook's image order
    assert [Path(p).name for p, _ in dataset.samples] == [Path(f).name for f in cache.files]
    assert [label for _, label in dataset.samples] == cache.labels.tolist()
    indices = list(range(len(dataset)))
    train, temp = train_test_split(indices, test_size=0.30, random_state=42)
    val, test = train_test_split(temp, test_size=0.50, random_state=42)
    assert split == {"train": sorted(train), "val": sorted(val), "test": sorted(test)}


def test_stratified_stays_the_default() -> None:
    assert parse_params({}).data.stratify is True
    assert yaml.safe_load((ROOT / "params.yaml").read_text())["data"]["stratify"] is True


# -- the recipe ------------------------------------------------------------------------------------


def course_runs() -> list:
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    recipe = load_recipe("course", ROOT)
    return check(recipe, base, {})


def test_course_recipe_composes_the_notebooks_settings() -> None:
    first, improved = course_runs()
    data, train = first.data, first.train
    assert (data.image_size, data.stratify, data.val_fraction, data.test_fraction, data.seed) == (96, False, 0.15, 0.15, 42)
    assert (train.batch_size, train.lr, train.momentum, train.nesterov, train.weight_decay) == (64, 0.1, 0.9, False, 5e-4)
    assert (train.schedule, train.warmup_fraction, train.epochs, train.patience) == ("cosine", 0.0, 20, 5)
    assert (train.label_smoothing, train.crop_padding, train.flip, train.cutout) == (0.0, 0, False, 0)
    # data location and machine settings stay the reader's
    assert data.archive == yaml.safe_load((ROOT / "params.yaml").read_text())["data"]["archive"]
    for run, (cardinality, dropout) in zip((first, improved), ((32, 0.0), (64, 0.1))):
        resnext = run.models["resnext"]
        assert (resnext.layout, resnext.cardinality, resnext.dropout) == ("course", cardinality, dropout)
        assert n_params(create_model(resnext, 3)) == NOTEBOOK_RESNEXT_PARAMS[cardinality]
        assert n_params(create_model(run.models["resnet"], 3)) == NOTEBOOK_RESNET18_PARAMS
        vgg = create_model(run.models["vgg"], 3)
        assert [m.kernel_size for m in vgg.modules() if isinstance(m, nn.Conv2d)].count((1, 1)) == 3  # config C
    assert improved.data == first.data and improved.train == first.train
    assert improved.models["vgg"] == first.models["vgg"] and improved.models["resnet"] == first.models["resnet"]


def test_default_models_cost_the_same_per_image_in_cpu_friendly_shapes() -> None:
    """params.yaml's three models: forward MACs within 25 % of each other, channels multiples of 16, ResNeXt C >= 4."""
    params = parse_params(yaml.safe_load((ROOT / "params.yaml").read_text()))
    models = {family: create_model(config, 10) for family, config in params.models.items()}
    if params.train.whiten:  # what trains: the whitened stem's MACs count
        for model in models.values():
            whiten_stem(model, params.train.whiten)
    macs = {family: summarize(model, params.data.image_size).macs for family, model in models.items()}
    assert max(macs.values()) <= 1.25 * min(macs.values()), macs
    for family, model in models.items():
        convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
        assert all(c.out_channels % 16 == 0 for c in convs), family
        assert all(c.in_channels % 16 == 0 for c in convs[1:]), family  # the first sees the image (or its whitening)
    grouped = [c for c in models["resnext"].modules() if isinstance(c, nn.Conv2d) and c.groups > 1]
    assert grouped and all(c.groups >= 4 and c.kernel_size == (3, 3) for c in grouped)


def test_long_recipe_is_the_default_comparison_trained_three_times_longer() -> None:
    """conf/recipes/long.yaml changes only the schedule's length: same data, models, evaluation and recipe otherwise."""
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    default = parse_params(base)
    (run,) = check(load_recipe("long", ROOT), base, {})
    assert run.train.epochs == 3 * default.train.epochs
    assert replace(run.train, epochs=default.train.epochs) == default.train
    assert (run.data, run.evaluate, run.models) == (default.data, default.evaluate, default.models)


def test_recipe_commands_are_plain_dvc_experiments() -> None:
    recipe = load_recipe("course", ROOT)
    cmds = commands(recipe, {"data.archive": "cnn_dataset.zip"}, queue=True)
    assert len(cmds) == 2 and all(c[:4] == ["dvc", "exp", "run", "--queue"] for c in cmds)
    assert "data.stratify=false" in cmds[0] and "resnext.cardinality=32" in cmds[0]
    assert cmds[1][-2:] == ["-S", "data.archive=cnn_dataset.zip"]  # the reader's keys come last and win
    assert "resnext.cardinality=64" in cmds[1] and "resnext.dropout=0.1" in cmds[1]


def test_recipe_errors_are_one_line() -> None:
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    recipe = load_recipe("course", ROOT)
    with pytest.raises(ConfigError, match=r"run 1: resnext\.layout: 'wide' is not one of"):
        check(recipe, base, {"resnext.layout": "wide"})
    with pytest.raises(ConfigError, match="known recipes: budget, cardinality, course, long"):
        load_recipe("nope", ROOT)
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_override("data.archive")
    assert parse_override("train.flip=false") == ("train.flip", False)
    assert compose(base, recipe, 1, {"train.epochs": 1})["train"]["epochs"] == 1


# -- the GPU check ---------------------------------------------------------------------------------


def test_gpu_check_says_one_line_and_exits_0_without_cuda() -> None:
    env = {**os.environ, "PYTHON": sys.executable, "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh")], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["gpu_check: no CUDA device here (torch.cuda.is_available() is false): "
                                        "nothing to check"]


def test_gpu_epoch_bench_trains_every_course_model_for_one_epoch(tmp_path: Path) -> None:
    """The script's second half, on a tiny course zip on the CPU: four models (both ResNeXt runs), one epoch each."""
    archive = make_image_zip(tmp_path / "course.zip", {"cnn_dataset": {"dogs": 12, "food": 12, "vehicles": 12}}, size=32)
    out = tmp_path / "gpu_epoch.json"
    settings = ["-S", "data.image_size=32", "-S", "train.device=cpu", "-S", "train.precision=fp32", "-S", "train.threads=1"]
    assert gpu_bench(["--archive", str(archive), "--work", str(tmp_path / "work"), "--out", str(out), *settings]) == 0
    rows = json.loads(out.read_text())
    assert [r["family"] for r in rows] == ["vgg", "resnet", "resnext", "resnext"]
    assert [r["params"] for r in rows[1:]] == [NOTEBOOK_RESNET18_PARAMS, *NOTEBOOK_RESNEXT_PARAMS.values()]
    assert all(r["images_per_second"] > 0 and r["batch_size"] == 25 for r in rows)  # 25 training images < batch 64


def test_gpu_epoch_bench_trains_the_network_the_train_stage_trains(tmp_path: Path) -> None:
    """With ``--recipe long`` (params.yaml's models, ``train.whiten: 3``) each model gets the whitened stem's MACs."""
    archive = make_image_zip(tmp_path / "cifar.zip", {"train": {"cat": 12, "dog": 12}, "test": {"cat": 4, "dog": 4}},
                             size=32)
    out = tmp_path / "gpu_epoch.json"
    settings = ["-S", "train.device=cpu", "-S", "train.precision=fp32", "-S", "train.threads=1"]
    assert gpu_bench(["--archive", str(archive), "--work", str(tmp_path / "work"), "--out", str(out),
                      "--recipe", "long", *settings]) == 0
    params = parse_params(yaml.safe_load((ROOT / "params.yaml").read_text()))
    assert params.train.whiten
    expected = {}
    for family, config in params.models.items():
        model = create_model(config, 2)
        whiten_stem(model, params.train.whiten)
        expected[family] = summarize(model, params.data.image_size).macs
    assert {r["family"]: r["macs"] for r in json.loads(out.read_text())} == expected
