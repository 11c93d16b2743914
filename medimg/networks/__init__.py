"""Networks by name: :func:`build_network` over MONAI's segmentation and classification nets.

Segmentation: ``unet``, ``segresnet``, ``dynunet`` (nnU-Net-like, kernels and strides planned
from patch size and spacing by :func:`plan_unet`, optional deep supervision) and ``swinunetr``.
Classification: ``densenet121``, ``resnet18``, ``resnet50`` and ``efficientnet-b0``. All in 2D
and 3D, randomly initialised; no weights are ever downloaded.
"""

from __future__ import annotations

from medimg.networks.build import build_network, unet_levels
from medimg.networks.config import NetworkConfig, NetworkName, Task, lookup_network
from medimg.networks.plan import UNetPlan, plan_unet

__all__ = [
    "NetworkConfig",
    "NetworkName",
    "Task",
    "UNetPlan",
    "build_network",
    "lookup_network",
    "plan_unet",
    "unet_levels",
]
