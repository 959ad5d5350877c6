"""Our VGG / ResNet / ResNeXt against torchvision (as an oracle) and the papers' numbers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision.models as tvm
from torch import nn

from convbench.config import ConfigError
from convbench.models import FAMILIES, create_model, list_models, model_config, summarize
from convbench.models.resnet import Bottleneck


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def meta_params(build) -> int:
    """Parameter count of a model built on the meta device (no memory, no init cost)."""
    with torch.device("meta"):
        return n_params(build())


# Every model runs at width 0.125 so the forward/backward test stays cheap (depth,
# blocks, grouping and head are unchanged), except where 0.125 is impossible:
# resnext50_32x4d would leave each of its 32 groups half a channel.
SMALL_WIDTH = {"resnext50_32x4d": 0.25}


@pytest.mark.parametrize("name", list_models())
def test_forward_backward_every_model(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, 7, width=SMALL_WIDTH.get(name, 0.125))
    for size in (32, 96):
        model.zero_grad()
        out = model(torch.randn(2, 3, size, size))
        assert out.shape == (2, 7)
        assert torch.isfinite(out).all()
        out.logsumexp(1).sum().backward()
        missing = [n for n, p in model.named_parameters() if p.grad is None]
        assert not missing, f"no gradient reaches {missing[:5]}"
        assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_list_models_covers_families_and_shortcuts() -> None:
    names = list_models()
    assert set(FAMILIES) <= set(names)
    for name in ("resnet18", "resnet152", "resnext50_32x4d", "resnext29_16x64d", "vgg11_bn", "vgg16c_bn", "vgg19"):
        assert name in names
    assert len(names) == len(set(names))


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_channels_last_and_bf16_autocast(family: str) -> None:
    model = create_model(family, 5, width=0.25).to(memory_format=torch.channels_last)
    x = torch.randn(4, 3, 32, 32).to(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    assert out.shape == (4, 5) and out.dtype == torch.bfloat16
    out.float().sum().backward()
    assert torch.isfinite(out.float()).all()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize(
    "name", ["resnet18", "resnet34", "resnet50", "resnext50_32x4d", "resnext101_32x8d", "vgg16", "vgg16_bn"]
)
def test_param_counts_match_torchvision(name: str) -> None:
    ours = meta_params(lambda: create_model(name, 1000))
    oracle = meta_params(lambda: getattr(tvm, name)(weights=None))
    assert ours == oracle


@pytest.mark.parametrize("name, expected", [("resnext29_8x64d", 34_426_698), ("resnext29_16x64d", 68_155_210)])
def test_resnext29_param_counts_match_the_paper(name: str, expected: int) -> None:
    assert meta_params(lambda: create_model(name, 10)) == expected


def test_paper_layout_depth_50_is_torchvision_resnext50_32x4d() -> None:
    """The default ``layout: paper`` at depth 50 (the course notebook's smaller network is ``layout: course``)."""
    ours = meta_params(
        lambda: create_model("resnext", num_classes=3, depth=50, cardinality=32, base_width=4, stem="imagenet",
                             width=1.0)
    )
    assert ours == meta_params(lambda: tvm.resnext50_32x4d(weights=None, num_classes=3))


def test_torchvision_resnext50_weights_give_the_same_outputs() -> None:
    torch.manual_seed(0)
    oracle = tvm.resnext50_32x4d(weights=None, num_classes=10)
    for m in oracle.modules():  # non-trivial BN statistics and affine terms
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.0)
            m.bias.data.uniform_(-0.1, 0.1)
    ours = create_model("resnext50_32x4d", 10)
    ours.load_state_dict(oracle.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = oracle.eval()(x)
        got = ours.eval()(x)
    assert torch.allclose(got, expected, atol=1e-4, rtol=1e-4)


def test_grouped_block_equals_split_transform_merge() -> None:
    """Fig. 3(c) (grouped conv) equals Fig. 3(a) (C separate 1x1-3x3-1x1 branches summed), BN in eval mode."""
    torch.manual_seed(0)
    cardinality, d = 4, 4
    block = Bottleneck(64, 16, groups=cardinality, base_width=16).eval()  # 16 * 16 // 64 * 4 = 16 = C x d
    assert block.conv2.groups == cardinality and block.conv2.out_channels == cardinality * d
    for bn in (block.bn1, block.bn2, block.bn3):
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.2, 0.2)
    x = torch.randn(2, 64, 8, 8)

    def bn(layer: nn.BatchNorm2d, t: torch.Tensor, s: slice) -> torch.Tensor:
        return F.batch_norm(
            t, layer.running_mean[s], layer.running_var[s], layer.weight[s], layer.bias[s], False, 0.0, layer.eps
        )

    with torch.no_grad():
        total = 0
        for k in range(cardinality):
            s = slice(k * d, (k + 1) * d)
            h = F.relu(bn(block.bn1, F.conv2d(x, block.conv1.weight[s]), s))
            h = F.relu(bn(block.bn2, F.conv2d(h, block.conv2.weight[s], padding=1), s))
            total = total + F.conv2d(h, block.conv3.weight[:, s])
        merged = F.relu(bn(block.bn3, total, slice(None)) + x)
        assert torch.allclose(block(x), merged, atol=1e-5)


@pytest.mark.parametrize("name, paper_gmacs", [("resnet50", 4.1), ("resnext50_32x4d", 4.2)])
def test_macs_match_the_paper(name: str, paper_gmacs: float) -> None:
    summary = summarize(create_model(name, 1000), 224)
    assert abs(summary.macs / 1e9 - paper_gmacs) / paper_gmacs < 0.03
    assert summary.params == n_params(create_model(name, 1000))


def test_summary_names_stages_and_restores_training_mode() -> None:
    model = create_model("resnet", 10, width=0.25, stem="cifar")
    summary = summarize(model, 32)
    assert model.training
    assert [name for name, _ in summary.stages] == ["stem", "layer1", "layer2", "layer3", "layer4", "avgpool", "fc"]
    assert dict(summary.stages)["stem"] == (1, 16, 32, 32)  # cifar stem keeps 32 px
    assert dict(summary.stages)["layer4"] == (1, 128, 4, 4)
    assert summary.stages[-1][1] == (1, 10)
    imagenet = dict(summarize(create_model("resnet18", 10, width=0.25), 64).stages)
    assert imagenet["stem"] == (1, 16, 16, 16)  # 7x7/2 conv and 3x3/2 pool
    pooled = summarize(create_model("resnet", 10, width=0.25, stem="pool"), 32)
    assert dict(pooled.stages)["stem"] == (1, 16, 16, 16)  # 3x3/1 conv and 2x2/2 pool: stages start at 16 px
    assert dict(pooled.stages)["layer4"] == (1, 128, 2, 2)
    assert pooled.params == summary.params and 0.24 < pooled.macs / summary.macs < 0.26  # same weights, a quarter
    vgg = summarize(create_model("vgg", 10, width=0.25), 32)
    assert [name for name, _ in vgg.stages][:5] == [f"block{i}" for i in range(1, 6)]
    assert dict(vgg.stages)["block5"] == (1, 128, 1, 1)
    assert vgg.macs > 0


def test_vgg_refuses_images_its_five_poolings_cannot_halve() -> None:
    model = create_model("vgg", 10, width=0.125)
    assert model.min_image_size == 32
    with pytest.raises(ConfigError, match="data.image_size: VGG needs images of at least 32 px, got 16"):
        summarize(model, 16)
    assert summarize(create_model("resnet", 10, width=0.125), 16).params > 0  # no such limit for ResNet


def test_resnext29_shape() -> None:
    model = create_model("resnext29_8x64d", 10, width=0.25)
    stages = dict(summarize(model, 32).stages)
    assert [stages[f"layer{i}"][1] for i in (1, 2, 3)] == [64, 128, 256]  # 256/512/1024 at width 1
    assert "layer4" not in stages
    grouped = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert len(grouped) == 9 and {m.groups for m in grouped} == {8}
    assert [m.out_channels for m in grouped[::3]] == [128, 256, 512]  # 8 x 64d x 0.25, doubling per stage


def test_vgg_config_c_has_1x1_convs_where_the_paper_says() -> None:
    model = create_model("vgg16c", 10, width=0.125)
    blocks, current = [], []
    for m in model.features:
        if isinstance(m, nn.Conv2d):
            current.append(m.kernel_size[0])
        elif isinstance(m, nn.MaxPool2d):
            blocks.append(current)
            current = []
    assert blocks == [[3, 3], [3, 3], [3, 3, 1], [3, 3, 1], [3, 3, 1]]
    d_kernels = {m.kernel_size for m in create_model("vgg16", 10, width=0.125).modules() if isinstance(m, nn.Conv2d)}
    assert d_kernels == {(3, 3)}
    assert model_config("vgg", depth=16, config="C").config == "C"
    assert model_config("vgg", depth=16).config == "D"
    assert model_config("vgg", depth=11).config == "A"


def test_vgg_classic_head_costs_the_4096_layers() -> None:
    classic = meta_params(lambda: create_model("vgg", 10, head="classic", width=1.0))
    compact = meta_params(lambda: create_model("vgg", 10, width=1.0))
    head = (512 * 7 * 7 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * 10 + 10)
    assert classic - compact == head - (512 * 10 + 10)
    assert classic - compact > 119_000_000
    small = create_model("vgg", 10, head="classic", width=0.125)
    assert small(torch.randn(2, 3, 32, 32)).shape == (2, 10)  # 1x1 map upsampled to 7x7


def test_width_scales_channels() -> None:
    full = meta_params(lambda: create_model("resnet", 10, width=1.0))
    half = meta_params(lambda: create_model("resnet", 10, width=0.5))
    assert 0.2 < half / full < 0.3  # conv params scale with width squared
    assert create_model("resnext", 10, depth=29, cardinality=8, base_width=64, width=0.5).layer1[0].conv2.out_channels == 256


def test_zero_init_residual_and_branch_dropout() -> None:
    model = create_model("resnet", 10, width=0.25, zero_init_residual=True)
    assert all((b.bn2.weight == 0).all() for b in model.layer1)
    model = create_model("resnext", 10, width=0.125, dropout=0.5)
    x = torch.randn(2, 3, 32, 32)
    assert not torch.equal(model(x), model(x))  # dropout active in training
    model.eval()
    assert torch.equal(model(x), model(x))


def test_shortcuts_accept_overrides_but_not_of_their_defining_keys() -> None:
    model = create_model("resnet18", 10, stem="cifar", width=0.125)
    assert isinstance(model.maxpool, nn.Identity) and model.family == "resnet"
    with pytest.raises(ConfigError, match="resnet18 fixes depth=18"):
        create_model("resnet18", 10, depth=50)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: create_model("densenet", 10), r"unknown model 'densenet'; valid names: resnet, resnext, vgg, resnet101"),
        (lambda: model_config("densenet"), r"unknown model family 'densenet'; valid families: vgg, resnet, resnext"),
        (
            lambda: model_config("resnet", cardinality=8),
            r"resnet: unknown key\(s\) cardinality; valid keys: depth, dropout, layout, stem, width, zero_init_residual",
        ),
        (
            lambda: model_config("resnext", depth=50, cardinality=32, base_width=4, width=0.125),
            r"resnext\.cardinality: 32 groups do not divide the first stage's grouped width of 16 channels.*width >= 0\.25",
        ),
        (lambda: model_config("resnext", cardinality=0), r"resnext\.cardinality: must be at least 1"),
        (lambda: model_config("resnet", depth=17), r"resnet\.depth: 17 is not a ResNet depth; choose one of 18, 34"),
        (lambda: model_config("resnext", depth=34), r"resnext\.depth: 34 is not a ResNeXt depth; choose one of 11, 20, 29, 50"),
        (lambda: model_config("vgg", depth=16, config="A"), r"vgg\.config: A has 11 layers.*use C or D"),
        (lambda: model_config("vgg", depth=12), r"vgg\.depth: 12 is not a VGG depth"),
        (lambda: model_config("vgg", head="big"), r"vgg\.head: 'big' is not one of 'compact', 'classic'"),
        (lambda: model_config("resnet", width=0), r"resnet\.width: must be a positive"),
        (lambda: model_config("resnet", width="wide"), r"resnet\.width: expected a number"),
        (lambda: model_config("vgg", dropout=1.0), r"vgg\.dropout: must be in \[0, 1\)"),
        (lambda: create_model("resnet", 0), r"num_classes: must be a positive integer"),
    ],
)
def test_config_errors_are_helpful(call, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        call()


@pytest.mark.parametrize("depth, blocks", [(11, 1), (20, 2), (29, 3)])
def test_cifar_resnext_depth_is_9n_plus_2(depth: int, blocks: int) -> None:
    model = create_model("resnext", 10, depth=depth, cardinality=4, base_width=16, width=0.25)
    grouped = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert len(grouped) == 3 * blocks and {m.groups for m in grouped} == {4}
    weighted = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    projections = [m for name, m in model.named_modules() if name.endswith("downsample.0")]
    assert len(projections) == 3  # one projection shortcut per stage; the paper's depth does not count them
    assert len(weighted) - len(projections) == depth
