"""Build a MONAI network from a :class:`~medimg.networks.config.NetworkConfig`.

Each network is one MONAI class (or factory) and its arguments, :func:`network_spec`, defined
once: :func:`build_network` instantiates it, and a MONAI bundle's ``network_def`` is written
from it (:mod:`medimg.interop`). Every spec passes ``pretrained=False`` (or has no weights to
fetch): medimg never downloads.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

from medimg.errors import ConfigError
from medimg.networks.config import NetworkConfig, NetworkName
from medimg.networks.plan import plan_unet

if TYPE_CHECKING:
    from torch import nn

__all__ = ["NetworkSpec", "build_network", "network_spec", "unet_levels"]

_MAX_FEATURES: Final = {2: 512, 3: 320}


@dataclass(frozen=True)
class NetworkSpec:
    """A MONAI network as its class (or factory) and keyword arguments.

    ``target`` is the dotted path (``"monai.networks.nets.UNet"``); ``kwargs`` the arguments,
    plain Python values (tuples for sequences).
    """

    target: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    def build(self) -> nn.Module:
        """Instantiate ``target(**kwargs)``."""
        module, _, name = self.target.rpartition(".")
        factory: Callable[..., nn.Module] = getattr(importlib.import_module(module), name)
        return factory(**self.kwargs)


def unet_levels(roi_size_vox: tuple[int, ...], *, max_levels: int = 5) -> int:
    """Resolution levels of a plain U-Net on ``roi_size_vox``: halve while every axis stays >= 4.

    Raises
    ------
    ConfigError
        When the patch is too small for two levels (any axis under 8 voxels).

    Examples
    --------
    >>> unet_levels((64, 64, 32))
    4
    """
    smallest = min(roi_size_vox)
    levels = min(max_levels, int(math.log2(smallest / 4)) + 1) if smallest >= 4 else 0
    if levels < 2:
        raise ConfigError(
            f"roi_size_vox must be at least 8 voxels on every axis, got {roi_size_vox}"
        )
    return levels


def _channels(cfg: NetworkConfig, levels: int) -> tuple[int, ...]:
    cap = _MAX_FEATURES[cfg.spatial_dims]
    return tuple(min(cfg.base_features * 2**i, cap) for i in range(levels))


def _unet(cfg: NetworkConfig) -> NetworkSpec:
    levels = unet_levels(cfg.roi_size_vox)
    return _spec(
        "UNet",
        spatial_dims=cfg.spatial_dims,
        in_channels=cfg.in_channels,
        out_channels=cfg.out_channels,
        channels=_channels(cfg, levels),
        strides=(2,) * (levels - 1),
        num_res_units=2,
        norm="instance",
        dropout=cfg.dropout,
    )


def _segresnet(cfg: NetworkConfig) -> NetworkSpec:
    levels = unet_levels(cfg.roi_size_vox, max_levels=4)
    blocks_down = (1, 2, 2, 4)[:levels]
    return _spec(
        "SegResNet",
        spatial_dims=cfg.spatial_dims,
        in_channels=cfg.in_channels,
        out_channels=cfg.out_channels,
        init_filters=cfg.base_features,
        blocks_down=blocks_down,
        blocks_up=(1,) * (levels - 1),
        dropout_prob=cfg.dropout or None,
        norm=("group", {"num_groups": math.gcd(8, cfg.base_features)}),
    )


def _dynunet(cfg: NetworkConfig) -> NetworkSpec:
    spacing = cfg.spacing_mm or (1.0,) * cfg.spatial_dims
    plan = plan_unet(cfg.roi_size_vox, spacing)
    if plan.levels < 2:
        raise ConfigError(
            f"roi_size_vox must allow one pooling (8 voxels on a fine axis), got {cfg.roi_size_vox}"
        )
    return _spec(
        "DynUNet",
        spatial_dims=cfg.spatial_dims,
        in_channels=cfg.in_channels,
        out_channels=cfg.out_channels,
        kernel_size=plan.kernels,
        strides=plan.strides,
        upsample_kernel_size=plan.strides[1:],
        filters=_channels(cfg, plan.levels),
        dropout=cfg.dropout or None,
        norm_name="instance",
        deep_supervision=cfg.deep_supervision,
        deep_supr_num=max(1, min(2, plan.levels - 2)),
        res_block=True,
    )


def _swinunetr(cfg: NetworkConfig) -> NetworkSpec:
    return _spec(
        "SwinUNETR",
        in_channels=cfg.in_channels,
        out_channels=cfg.out_channels,
        feature_size=cfg.base_features,
        spatial_dims=cfg.spatial_dims,
        drop_rate=cfg.dropout,
        use_v2=True,
    )


def _densenet121(cfg: NetworkConfig) -> NetworkSpec:
    return _spec(
        "DenseNet121",
        spatial_dims=cfg.spatial_dims,
        in_channels=cfg.in_channels,
        out_channels=cfg.out_channels,
        init_features=max(1, round(64 * cfg.width_factor)),
        growth_rate=max(1, round(32 * cfg.width_factor)),
        dropout_prob=cfg.dropout,
        pretrained=False,
    )


def _resnet(depth: int) -> Callable[[NetworkConfig], NetworkSpec]:
    def build(cfg: NetworkConfig) -> NetworkSpec:
        return _spec(
            f"resnet{depth}",
            pretrained=False,
            spatial_dims=cfg.spatial_dims,
            n_input_channels=cfg.in_channels,
            num_classes=cfg.out_channels,
            widen_factor=cfg.width_factor,
            conv1_t_stride=cfg.stem_stride,
        )

    return build


def _efficientnet_b0(cfg: NetworkConfig) -> NetworkSpec:
    return _spec(
        "EfficientNetBN",
        model_name="efficientnet-b0",
        pretrained=False,
        spatial_dims=cfg.spatial_dims,
        in_channels=cfg.in_channels,
        num_classes=cfg.out_channels,
    )


def _spec(name: str, **kwargs: Any) -> NetworkSpec:
    return NetworkSpec(f"monai.networks.nets.{name}", kwargs)


_SPECS: Final[Mapping[NetworkName, Callable[[NetworkConfig], NetworkSpec]]] = MappingProxyType(
    {
        NetworkName.UNET: _unet,
        NetworkName.SEGRESNET: _segresnet,
        NetworkName.DYNUNET: _dynunet,
        NetworkName.SWINUNETR: _swinunetr,
        NetworkName.DENSENET121: _densenet121,
        NetworkName.RESNET18: _resnet(18),
        NetworkName.RESNET50: _resnet(50),
        NetworkName.EFFICIENTNET_B0: _efficientnet_b0,
    }
)


def network_spec(cfg: NetworkConfig) -> NetworkSpec:
    """The MONAI class and arguments of the network ``cfg`` names (nothing is built).

    Raises
    ------
    ConfigError
        When the patch is too small for the network's depth (see :func:`unet_levels`).

    Examples
    --------
    >>> spec = network_spec(NetworkConfig(name="unet", roi_size_vox=(32, 32, 16)))
    >>> spec.target, spec.kwargs["channels"], spec.kwargs["strides"]
    ('monai.networks.nets.UNet', (16, 32, 64), (2, 2))
    """
    return _SPECS[cfg.network](cfg)


def build_network(cfg: NetworkConfig) -> nn.Module:
    """Build the MONAI network ``cfg`` names, randomly initialised (no weight download).

    Segmentation networks map ``(B, in_channels, *roi_size_vox)`` to logits
    ``(B, out_channels, *roi_size_vox)``; DynUNet with ``deep_supervision`` returns, in
    training mode only, ``(B, 1 + deep_supr_num, out_channels, *roi_size_vox)`` (the main
    output first; lower-resolution heads upsampled). Classifiers map ``(B, in_channels, ...)``
    to logits ``(B, out_channels)``.

    Parameters
    ----------
    cfg : NetworkConfig
        Name, dimensionality, channels and size.

    Returns
    -------
    torch.nn.Module
        The network, in training mode, on the CPU.

    Raises
    ------
    ConfigError
        When the patch is too small for the network's depth (see :func:`unet_levels`).
    """
    return network_spec(cfg).build()
