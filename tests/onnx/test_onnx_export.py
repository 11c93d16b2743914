"""ONNX export (:func:`export_onnx`) and the onnxruntime network: logits within 1e-4 of torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medimg.errors import ConfigError, OutputExistsError
from medimg.inference.onnx import OnnxNetwork, export_onnx, onnx_session
from medimg.networks import NetworkConfig, build_network

NETWORKS = {
    # segmentation: anisotropic windows (DynUNet pools z later), deep supervision exported off
    "unet": NetworkConfig(name="unet", roi_size_vox=(16, 16, 8), base_features=4, out_channels=3),
    "dynunet": NetworkConfig(
        name="dynunet",
        roi_size_vox=(16, 16, 8),
        spacing_mm=(1.0, 1.0, 2.5),
        base_features=4,
        out_channels=3,
        deep_supervision=True,
    ),
    "resnet18": NetworkConfig(
        name="resnet18", roi_size_vox=(16, 16, 16), out_channels=2, width_factor=0.25
    ),
    "densenet121-2d": NetworkConfig(
        name="densenet121",
        spatial_dims=2,
        roi_size_vox=(32, 32),
        out_channels=3,
        width_factor=0.25,
    ),
}


def _exported(name: str, folder: Path) -> tuple[torch.nn.Module, NetworkConfig, Path]:
    cfg = NETWORKS[name]
    torch.manual_seed(0)
    net = build_network(cfg)
    path = export_onnx(
        net, in_channels=1, spatial_dims=cfg.spatial_dims, path=folder / f"{name}.onnx",
        sample_size_vox=cfg.roi_size_vox,
    )  # fmt: skip
    return net, cfg, path


@pytest.mark.parametrize(
    "name",
    [*sorted(set(NETWORKS) - {"densenet121-2d"}),
     pytest.param("densenet121-2d", marks=pytest.mark.slow)],  # 121 layers: ~8 s to check
)  # fmt: skip
def test_window_logits_match_torch(name: str, tmp_path: Path) -> None:
    net, cfg, path = _exported(name, tmp_path)
    assert net.training  # the module itself is left as it was
    onnx_net = OnnxNetwork(
        onnx_session(path), out_channels=cfg.out_channels, dense=cfg.task.value == "segmentation"
    )
    rng = np.random.default_rng(0)
    # a batch of 2 windows, and (dynamic sizes) windows twice as large on every axis
    for size in (cfg.roi_size_vox, tuple(2 * s for s in cfg.roi_size_vox)):
        x = torch.from_numpy(rng.normal(size=(2, 1, *size)).astype(np.float32))
        with torch.no_grad():
            ref = net.eval()(x)
        got = onnx_net(x)
        assert got.dtype == torch.float32
        assert got.shape == ref.shape
        assert float((got - ref).abs().max()) < 1e-4


def test_meta_probe_returns_shape_without_running(tmp_path: Path) -> None:
    path = _exported("unet", tmp_path)[2]
    onnx_net = OnnxNetwork(onnx_session(path), out_channels=3, dense=True)
    out = onnx_net(torch.empty((2, 1, 16, 16, 8), device="meta"))
    assert out.device.type == "meta"
    assert tuple(out.shape) == (2, 3, 16, 16, 8)
    assert next(onnx_net.parameters()).numel() == 0


def test_export_is_atomic_and_refuses_to_overwrite(tmp_path: Path) -> None:
    _, cfg, path = _exported("unet", tmp_path)
    net = build_network(cfg)
    with pytest.raises(OutputExistsError, match=r"unet\.onnx: exists"):
        export_onnx(net, in_channels=1, spatial_dims=3, path=path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["unet.onnx"]  # no temporaries


def test_export_refuses_wrong_channels(tmp_path: Path) -> None:
    net = build_network(NETWORKS["unet"])
    with pytest.raises(ConfigError, match=r"UNet must accept a \(1, 2, 16, 16, 8\) float32 batch"):
        export_onnx(
            net, in_channels=2, spatial_dims=3, path=tmp_path / "x.onnx",
            sample_size_vox=(16, 16, 8),
        )  # fmt: skip
    assert not list(tmp_path.iterdir())
    with pytest.raises(ConfigError, match="spatial_dims must be 2 or 3, got 4"):
        export_onnx(net, in_channels=1, spatial_dims=4, path=tmp_path / "x.onnx")
