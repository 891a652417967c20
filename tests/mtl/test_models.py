"""Backbones, activation swapping, task heads and the multi-task model."""

import numpy as np
import pytest
import timm
import torch
from timm.layers import BatchNormAct2d
from torch import nn

from alloy_mtl.mtl.losses.fds import FDS, FDSCallback
from alloy_mtl.mtl.models import backbones
from alloy_mtl.mtl.models.backbones import (
    ARCHITECTURES,
    DEFAULT_ACTIVATIONS,
    FNNBackbone,
    activation_names,
    create_backbone,
    replace_activations,
)
from alloy_mtl.mtl.models.dropout import SeededDropout
from alloy_mtl.mtl.models.multitask import MultiTaskModel, build_model, make_head
from alloy_mtl.mtl.tasks import parse_tasks

EXPECTED_FEATURES = {
    "resnet18": 512,
    "resnet34": 512,
    "resnet50": 2048,
    "vgg16": 512,  # light variant (global average pooling instead of the 4096-wide ConvMlp)
    "efficientnet_b0": 1280,
    "fnn": 512,
}
# Activation module types that must be gone after the swap (timm's default is ReLU, except EfficientNet).
FOREIGN = {
    "relu": (nn.GELU, nn.SiLU, nn.LeakyReLU),
    "leaky_relu": (nn.ReLU,),
    "gelu": (nn.ReLU,),
    "silu": (nn.ReLU,),
}

TASKS = parse_tasks(
    {
        "alloy": {"kind": "classification", "target": "alloy", "num_outputs": 5},
        "thickness": {"kind": "regression", "target": "thickness_mm"},
    }
)


def _has(module: nn.Module, types: tuple[type, ...]) -> bool:
    return any(isinstance(m, types) for m in module.modules())


@pytest.fixture(scope="module")
def built() -> dict[tuple[str, int], tuple[nn.Module, int]]:
    """Every backbone with its default activation, for 1 and 3 channels, built once."""
    return {
        (arch, chans): create_backbone(
            arch, chans, image_size=32, **({"vgg_pre_logits": False} if arch == "vgg16" else {})
        )
        for arch in ARCHITECTURES
        for chans in (1, 3)
    }


@pytest.mark.parametrize("chans", [1, 3])
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_backbone_maps_batch_to_features_with_table_activation(built, arch: str, chans: int) -> None:
    model, num_features = built[(arch, chans)]
    assert num_features == EXPECTED_FEATURES[arch]
    torch.manual_seed(0)
    with torch.no_grad():
        out = model.eval()(torch.rand(2, chans, 32, 32))
    assert out.shape == (2, num_features)
    assert torch.isfinite(out).all()
    act = DEFAULT_ACTIVATIONS[arch]
    assert activation_names(model) == {act}
    assert not _has(model, FOREIGN[act])


def test_in_chans_reaches_the_first_layer(built) -> None:
    for arch in ("resnet18", "efficientnet_b0", "vgg16"):
        first = next(m for m in built[(arch, 1)][0].modules() if isinstance(m, nn.Conv2d))
        assert first.in_channels == 1
    assert built[("fnn", 3)][0].net[2].in_features == 3 * 16 * 16


def test_non_default_activation_and_gates_kept() -> None:
    model, _ = create_backbone("efficientnet_b0", 3, activation="gelu")
    assert activation_names(model) == {"gelu"}
    assert not _has(model, (nn.SiLU,))
    assert _has(model, (nn.Sigmoid,))  # squeeze-excitation gates are not activations to swap


def test_explicit_swap_when_act_layer_is_ignored(monkeypatch) -> None:
    real = timm.create_model

    def ignoring_act_layer(*args, act_layer=None, **kwargs):
        return real(*args, **kwargs)

    monkeypatch.setattr(backbones.timm, "create_model", ignoring_act_layer)
    model, _ = create_backbone("resnet18", 3, activation="gelu")
    assert activation_names(model) == {"gelu"}
    assert not _has(model, (nn.ReLU,))
    assert sum(isinstance(m, (nn.GELU, timm.layers.activations.GELU)) for m in model.modules()) == 17


def test_replace_activations_reaches_nested_and_fused_modules() -> None:
    module = nn.Sequential(
        nn.Conv2d(1, 2, 1), nn.ReLU(), nn.Sequential(nn.LeakyReLU(), BatchNormAct2d(2)), nn.SiLU()
    )
    assert replace_activations(module, "silu") == 3  # ReLU, LeakyReLU, BatchNormAct2d.act (ReLU); SiLU kept
    assert activation_names(module) == {"silu"}
    assert isinstance(module[2][1].act, nn.SiLU)


def test_fnn_configuration() -> None:
    fnn = FNNBackbone(2, pool_size=4, hidden=(8, 6), activation="gelu")
    assert fnn.num_features == 6
    assert [m.in_features for m in fnn.modules() if isinstance(m, nn.Linear)] == [2 * 4 * 4, 8]
    x = torch.arange(2 * 2 * 8 * 8, dtype=torch.float32).reshape(2, 2, 8, 8)
    pooled = fnn.net[0](x)
    assert torch.allclose(pooled[0, 0, 0, 0], x[0, 0, :2, :2].mean())
    small, num_features = create_backbone("fnn", 1, image_size=8, fnn_pool_size=16, fnn_hidden=[4])
    assert num_features == 4 and small.net[2].in_features == 64


def test_backbone_errors() -> None:
    with pytest.raises(ValueError, match="architecture"):
        create_backbone("resnet9000", 3)
    with pytest.raises(ValueError, match="activation"):
        create_backbone("fnn", 3, activation="tanhshrink")
    with pytest.raises(ValueError, match="in_chans"):
        create_backbone("fnn", 0)
    with pytest.raises(ValueError, match="pretrained"):
        create_backbone("fnn", 3, pretrained=True)
    with pytest.raises(ValueError, match="image_size"):
        create_backbone("vgg16", 3, image_size=16, vgg_pre_logits=False)


def test_heads_have_reference_shape_and_outputs() -> None:
    backbone, num_features = create_backbone("fnn", 3, fnn_pool_size=4, fnn_hidden=[16])
    model = MultiTaskModel(backbone, num_features, TASKS, "leaky_relu")
    head = model.heads["alloy"]
    assert [type(m) for m in head] == [nn.Linear, nn.LeakyReLU, SeededDropout, nn.Linear]  # an nn.Dropout
    assert (head[0].in_features, head[0].out_features, head[2].p) == (16, 512, 0.3)
    assert (head[3].in_features, head[3].out_features) == (512, 5)
    assert model.heads["thickness"][3].out_features == 1
    out = model(torch.rand(4, 3, 8, 8))
    assert out["alloy"].shape == (4, 5) and out["thickness"].shape == (4,)
    # Shared + per-task parameters partition the model's parameters.
    ids = [id(p) for p in model.shared_parameters()]
    for task in model.task_names:
        ids += [id(p) for p in model.task_parameters(task)]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())
    with pytest.raises(KeyError, match="unknown_task"):
        model.task_parameters("unknown_task")


def test_make_head_custom() -> None:
    head = make_head(7, 3, "gelu", hidden=9, dropout=0.1)
    assert (head[0].out_features, head[2].p, head[3].out_features) == (9, 0.1, 3)


def test_build_model_uses_table_activation_in_heads() -> None:
    model = build_model("fnn", 1, 16, TASKS, fnn_hidden=[8])
    assert isinstance(model.heads["alloy"][1], nn.ReLU)
    assert model.encode(torch.rand(2, 1, 16, 16)).shape == (2, 8)


def test_fds_is_wired_through_forward_heads() -> None:
    tasks = parse_tasks(
        {
            "alloy": {"kind": "classification", "num_outputs": 5},
            "thickness": {"kind": "regression", "fds": {"bins": 4, "kernel_size": 3, "start_epoch": 1}},
        }
    )
    train = np.linspace(-1.0, 1.0, 40)
    with pytest.raises(ValueError, match="'thickness', field 'fds'"):
        build_model("fnn", 1, 8, tasks, fnn_hidden=[6], fds_train_targets={"alloy": train})
    torch.manual_seed(0)
    model = build_model("fnn", 1, 8, tasks, fnn_hidden=[6], fds_train_targets={"thickness": train})
    assert isinstance(model.fds["thickness"], FDS) and "alloy" not in model.fds
    x = torch.rand(8, 1, 8, 8)
    targets = {"thickness": torch.linspace(-1, 1, 8), "alloy": torch.zeros(8, dtype=torch.long)}
    model.train()
    model.heads["thickness"][2].p = 0.0
    features = model.encode(x)
    raw = model.heads["thickness"](features).squeeze(-1)
    first = model.forward_heads(features, targets, epoch=0)  # epoch < start_epoch: tracked, not changed
    assert torch.equal(first["thickness"], raw)
    FDSCallback(model).on_epoch_end(None, 0, {})
    assert bool(model.fds["thickness"].ready)
    calibrated = model.forward_heads(features, targets, epoch=1)["thickness"]
    assert not torch.allclose(calibrated, raw)
    model.eval()
    assert torch.equal(model.forward_heads(features, targets, epoch=1)["thickness"], raw)
    # A rebuilt model (no train targets) takes bins and statistics from the state_dict.
    rebuilt = build_model("fnn", 1, 8, tasks, fnn_hidden=[6])
    rebuilt.load_state_dict(model.state_dict())
    assert torch.equal(rebuilt.fds["thickness"].inner_edges, model.fds["thickness"].inner_edges)
    assert torch.equal(rebuilt.fds["thickness"].smoothed_mean, model.fds["thickness"].smoothed_mean)


@pytest.mark.slow
def test_faithful_vgg16_keeps_4096_pre_logits() -> None:
    model, num_features = create_backbone("vgg16", 3)
    assert num_features == 4096
    assert sum(p.numel() for p in model.parameters()) > 100_000_000
    with torch.no_grad():
        assert model.eval()(torch.rand(2, 3, 32, 32)).shape == (2, 4096)
    assert activation_names(model) == {"relu"}


def test_vgg16_batch_norm_follows_every_convolution() -> None:
    plain, _ = create_backbone("vgg16", 3, image_size=32, vgg_pre_logits=False)
    model, num_features = create_backbone(
        "vgg16", 3, image_size=32, vgg_pre_logits=False, vgg_batch_norm=True
    )
    convs = sum(isinstance(m, nn.Conv2d) for m in model.modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == convs == 13
    assert not any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())
    assert num_features == 512
    with torch.no_grad():
        assert model.eval()(torch.rand(2, 3, 32, 32)).shape == (2, 512)
    assert activation_names(model) == {"relu"}
    with pytest.raises(ValueError, match="vgg_batch_norm"):
        create_backbone("vgg16", 3, pretrained=True, vgg_batch_norm=True)
