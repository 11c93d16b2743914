"""The network configuration: :class:`NetworkConfig` and the names :func:`build_network` knows."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from medimg._suggest import did_you_mean
from medimg.errors import ConfigError

__all__ = ["NetworkConfig", "NetworkName", "Task", "lookup_network"]


class Task(str, Enum):
    """What a network's output means."""

    SEGMENTATION = "segmentation"
    CLASSIFICATION = "classification"


class NetworkName(str, Enum):
    """The networks :func:`medimg.networks.build_network` builds (all from MONAI)."""

    UNET = "unet"
    SEGRESNET = "segresnet"
    DYNUNET = "dynunet"
    SWINUNETR = "swinunetr"
    DENSENET121 = "densenet121"
    RESNET18 = "resnet18"
    RESNET50 = "resnet50"
    EFFICIENTNET_B0 = "efficientnet-b0"

    @property
    def task(self) -> Task:
        """Segmentation networks output a map per class; classifiers one logit per class."""
        if self in _SEGMENTATION:
            return Task.SEGMENTATION
        return Task.CLASSIFICATION


_SEGMENTATION = frozenset(
    {NetworkName.UNET, NetworkName.SEGRESNET, NetworkName.DYNUNET, NetworkName.SWINUNETR}
)


def _normalise(name: str) -> str:
    return name.strip().lower().replace("_", "-").replace(" ", "-")


def lookup_network(name: str | NetworkName) -> NetworkName:
    """Turn a user's network name into a :class:`NetworkName`, case and ``_``/``-`` insensitive.

    Raises
    ------
    ConfigError
        When ``name`` is no known network; the message suggests the closest names.

    Examples
    --------
    >>> lookup_network("DynUNet").value
    'dynunet'
    >>> lookup_network("efficientnet_b0").value
    'efficientnet-b0'
    """
    if isinstance(name, NetworkName):
        return name
    key = _normalise(name)
    aliases = {m.value.replace("-", ""): m for m in NetworkName}
    if key.replace("-", "") in aliases:
        return aliases[key.replace("-", "")]
    valid = [m.value for m in NetworkName]
    hint = did_you_mean(key, valid, n=2)
    raise ConfigError(f"network {name!r} is not a known network{hint} (valid: {', '.join(valid)})")


@dataclass(frozen=True, kw_only=True)
class NetworkConfig:
    """Which network to build, and its size.

    Attributes
    ----------
    name : str
        One of :class:`NetworkName` (``"unet"``, ``"segresnet"``, ``"dynunet"``,
        ``"swinunetr"``, ``"densenet121"``, ``"resnet18"``, ``"resnet50"``,
        ``"efficientnet-b0"``); case-insensitive. Stored normalised.
    spatial_dims : int
        2 or 3.
    in_channels : int
        Image channels.
    out_channels : int
        Classes, background included for segmentation (``4`` for background, liver, spleen,
        lesion).
    roi_size_vox : tuple of int
        Patch size the network sees, one value per spatial axis. Sets the depth of the
        segmentation networks (each level halves it) and the kernels/strides of DynUNet.
    spacing_mm : tuple of float, optional
        Voxel size of the training patches. Only DynUNet uses it (anisotropic axes are pooled
        later, as in nnU-Net); isotropic when omitted.
    base_features : int
        Channels of the first level (doubling per level). SwinUNETR needs a multiple of 12.
    deep_supervision : bool
        DynUNet only: in training mode also return lower-resolution outputs for the loss.
    dropout : float
        Dropout probability in [0, 1).
    width_factor : float
        Classifiers only: scales every layer's channels (ResNet's ``widen_factor``, DenseNet's
        initial features and growth rate); 1.0 is the published architecture. EfficientNet-B0
        keeps its own width (1.0 only).
    stem_stride : int
        ResNet only: stride of the first convolution (MONAI's default 1; 2 as in the ImageNet
        ResNet, 4x fewer operations per layer in 2D and 8x in 3D for small inputs).
    """

    name: str
    spatial_dims: int = 3
    in_channels: int = 1
    out_channels: int = 2
    roi_size_vox: tuple[int, ...] = (96, 96, 96)
    spacing_mm: tuple[float, ...] | None = None
    base_features: int = 16
    deep_supervision: bool = False
    dropout: float = 0.0
    width_factor: float = 1.0
    stem_stride: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", lookup_network(self.name).value)
        if self.spatial_dims not in (2, 3):
            raise ConfigError(f"spatial_dims must be 2 or 3, got {self.spatial_dims}")
        for field_name in ("in_channels", "out_channels", "base_features"):
            if getattr(self, field_name) < 1:
                raise ConfigError(f"{field_name} must be >= 1, got {getattr(self, field_name)}")
        self._check_sizes()
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.deep_supervision and self.network is not NetworkName.DYNUNET:
            raise ConfigError(
                f"deep_supervision is only available for 'dynunet', got network {self.name!r}"
            )
        if self.network is NetworkName.SWINUNETR:
            self._check_swin()
        self._check_classifier_options()

    def _check_sizes(self) -> None:
        n = self.spatial_dims
        if len(self.roi_size_vox) != n or any(s < 1 for s in self.roi_size_vox):
            raise ConfigError(
                f"roi_size_vox must be {n} positive integers (spatial_dims={n}), "
                f"got {self.roi_size_vox}"
            )
        if self.spacing_mm is not None and (
            len(self.spacing_mm) != n or any(s <= 0 for s in self.spacing_mm)
        ):
            raise ConfigError(
                f"spacing_mm must be {n} values > 0 (spatial_dims={n}), got {self.spacing_mm}"
            )

    def _check_classifier_options(self) -> None:
        resnet = self.network in (NetworkName.RESNET18, NetworkName.RESNET50)
        if self.width_factor != 1.0 and not (resnet or self.network is NetworkName.DENSENET121):
            raise ConfigError(
                f"width_factor applies to resnet18, resnet50 and densenet121 only, got "
                f"{self.width_factor} for {self.name!r}; leave it at 1.0"
            )
        if not 0 < self.width_factor <= 4:
            raise ConfigError(f"width_factor must be in (0, 4], got {self.width_factor}")
        if (self.stem_stride != 1 and not resnet) or self.stem_stride not in (1, 2):
            raise ConfigError(
                f"stem_stride must be 1, or 2 for resnet18/resnet50, got {self.stem_stride} "
                f"for {self.name!r}"
            )

    def _check_swin(self) -> None:
        # 5 halvings; the bottleneck's instance norm needs more than one voxel.
        if any(s % 32 for s in self.roi_size_vox) or all(s == 32 for s in self.roi_size_vox):
            raise ConfigError(
                f"roi_size_vox must be divisible by 32 and at least 64 on one axis for "
                f"swinunetr, got {self.roi_size_vox}"
            )
        if self.base_features % 12:
            raise ConfigError(
                f"base_features must be a multiple of 12 for swinunetr, got {self.base_features}"
            )

    @property
    def network(self) -> NetworkName:
        """The network as a :class:`NetworkName`."""
        return NetworkName(self.name)

    @property
    def task(self) -> Task:
        """Segmentation or classification."""
        return self.network.task
