from __future__ import annotations

import pytest
import torch

from medimg.errors import ConfigError
from medimg.networks import NetworkConfig, Task, build_network, lookup_network, plan_unet

SEG_CASES = [
    # name, roi (2D), roi (3D), base_features
    ("unet", (16, 16), (16, 16, 8), 4),
    ("segresnet", (16, 16), (16, 16, 8), 4),
    ("dynunet", (16, 16), (16, 16, 8), 4),
    ("swinunetr", (64, 32), (64, 32, 32), 12),
]


@pytest.mark.parametrize(("name", "roi2", "roi3", "features"), SEG_CASES)
@pytest.mark.parametrize("dims", [2, 3])
def test_segmentation_forward_keeps_shape(
    name: str, roi2: tuple[int, ...], roi3: tuple[int, ...], features: int, dims: int
) -> None:
    roi = roi2 if dims == 2 else roi3
    cfg = NetworkConfig(
        name=name, spatial_dims=dims, out_channels=3, roi_size_vox=roi, base_features=features
    )
    assert cfg.task is Task.SEGMENTATION
    net = build_network(cfg).eval()
    with torch.no_grad():
        out = net(torch.zeros(1, 1, *roi))
    assert out.shape == (1, 3, *roi)


@pytest.mark.parametrize("name", ["densenet121", "resnet18", "resnet50", "efficientnet-b0"])
@pytest.mark.parametrize("dims", [2, 3])
def test_classification_forward_gives_logits(name: str, dims: int) -> None:
    cfg = NetworkConfig(name=name, spatial_dims=dims, out_channels=3, roi_size_vox=(32,) * dims)
    assert cfg.task is Task.CLASSIFICATION
    net = build_network(cfg).eval()
    size = (32,) * dims  # the classifiers downsample 32x
    with torch.no_grad():
        out = net(torch.zeros(2, 1, *size))
    assert out.shape == (2, 3)


def test_dynunet_deep_supervision_stacks_heads_in_training_only() -> None:
    cfg = NetworkConfig(
        name="DynUNet",
        out_channels=2,
        roi_size_vox=(32, 32, 8),
        spacing_mm=(1.0, 1.0, 3.0),
        base_features=4,
        deep_supervision=True,
    )
    net = build_network(cfg)
    x = torch.zeros(1, 1, 32, 32, 8)
    # plan: 4 levels (see test below) -> deep_supr_num = min(2, 4 - 2) = 2 extra heads
    assert net(x).shape == (1, 3, 2, 32, 32, 8)
    with torch.no_grad():
        assert net.eval()(x).shape == (1, 2, 32, 32, 8)


def test_plan_pools_the_coarse_axis_later() -> None:
    plan = plan_unet((32, 32, 8), (1.0, 1.0, 3.0))
    # z is 3x coarser: level 0 pools x,y only (kernel 1 along z) -> (16,16,8) at (2,2,3) mm;
    # ratio 1.5 <= 2, so all axes pool -> (8,8,4) at (4,4,6); z=4 is the minimum, x,y pool
    # once more -> (4,4,4); nothing can pool further.
    assert plan.strides == ((1, 1, 1), (2, 2, 1), (2, 2, 2), (2, 2, 1))
    assert plan.kernels == ((3, 3, 1), (3, 3, 3), (3, 3, 3), (3, 3, 3))


def test_plan_errors() -> None:
    with pytest.raises(ConfigError, match=r"one value per axis, got \(32, 32\) and \(1.0,\)"):
        plan_unet((32, 32), (1.0,))
    with pytest.raises(ConfigError, match=r"divisible by 2 at every pooling level.*size 9"):
        plan_unet((18, 16), (1.0, 1.0))


def test_unknown_name_suggests() -> None:
    with pytest.raises(
        ConfigError, match=r"network 'segresnt' is not a known.*did you mean 'segresnet'"
    ):
        lookup_network("segresnt")
    with pytest.raises(ConfigError, match=r"'xyz' is not a known network \(valid: unet, "):
        NetworkConfig(name="xyz")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"spatial_dims": 4}, r"spatial_dims must be 2 or 3, got 4"),
        ({"out_channels": 0}, r"out_channels must be >= 1, got 0"),
        ({"roi_size_vox": (16, 16)}, r"roi_size_vox must be 3 positive integers .* got \(16, 16\)"),
        (
            {"spacing_mm": (1.0, 0.0, 1.0)},
            r"spacing_mm must be 3 values > 0 .* got \(1.0, 0.0, 1.0\)",
        ),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\), got 1.0"),
        (
            {"deep_supervision": True},
            r"deep_supervision is only available for 'dynunet', got network 'unet'",
        ),
    ],
)
def test_config_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        NetworkConfig(name="unet", **kwargs)  # type: ignore[arg-type]


def test_swin_and_size_errors() -> None:
    message = r"divisible by 32 and at least 64 on one axis for swinunetr, got"
    with pytest.raises(ConfigError, match=message + r" \(64, 64, 40\)"):
        NetworkConfig(name="swinunetr", roi_size_vox=(64, 64, 40), base_features=12)
    with pytest.raises(ConfigError, match=message + r" \(32, 32, 32\)"):
        NetworkConfig(name="swinunetr", roi_size_vox=(32, 32, 32), base_features=12)
    with pytest.raises(ConfigError, match=r"multiple of 12 for swinunetr, got 16"):
        NetworkConfig(name="swinunetr", roi_size_vox=(64, 32, 32), base_features=16)
    with pytest.raises(ConfigError, match=r"at least 8 voxels on every axis, got \(16, 16, 4\)"):
        build_network(NetworkConfig(name="unet", roi_size_vox=(16, 16, 4)))
    with pytest.raises(ConfigError, match=r"allow one pooling .* got \(4, 4, 4\)"):
        build_network(NetworkConfig(name="dynunet", roi_size_vox=(4, 4, 4)))


def test_classifier_width_and_stem_stride() -> None:
    # ResNet-18 at width 0.25 has channels 16/32/64/128 instead of 64/128/256/512
    base = NetworkConfig(name="resnet18", out_channels=2, roi_size_vox=(28, 28, 28))
    small = NetworkConfig(
        name="resnet18", out_channels=2, roi_size_vox=(28, 28, 28), width_factor=0.25, stem_stride=2
    )
    narrow, wide = build_network(small), build_network(base)
    assert narrow.fc.in_features == 128
    assert wide.fc.in_features == 512
    assert narrow.conv1.stride == (2, 2, 2)
    assert wide.conv1.stride == (1, 1, 1)
    with torch.no_grad():
        assert narrow.eval()(torch.zeros(2, 1, 28, 28, 28)).shape == (2, 2)
    dense = build_network(
        NetworkConfig(name="densenet121", roi_size_vox=(32,) * 3, width_factor=0.5)
    )
    assert dense.class_layers.out.in_features == 512  # 32 + (6+12+24+16)*16 halved by 3 transitions
    with pytest.raises(
        ConfigError,
        match=r"width_factor applies to resnet18, resnet50 and densenet121 only, got 0.5 for 'efficientnet-b0'",
    ):
        NetworkConfig(name="efficientnet-b0", width_factor=0.5)
    with pytest.raises(ConfigError, match=r"width_factor must be in \(0, 4\], got 0.0"):
        NetworkConfig(name="resnet18", width_factor=0.0)
    with pytest.raises(
        ConfigError,
        match=r"stem_stride must be 1, or 2 for resnet18/resnet50, got 2 for 'densenet121'",
    ):
        NetworkConfig(name="densenet121", stem_stride=2)
    with pytest.raises(ConfigError, match=r"stem_stride must be 1, or 2 .* got 3 for 'resnet18'"):
        NetworkConfig(name="resnet18", stem_stride=3)
