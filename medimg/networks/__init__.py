"""Networks by name: :func:`build_network` over MONAI's segmentation and classification nets.

Segmentation: ``unet``, ``segresnet``, ``dynunet`` (nnU-Net-like, kernels and strides planned
from patch size and spacing by :func:`plan_unet`, optional deep supervision) and ``swinunetr``.
Classification: ``densenet121``, ``resnet18``, ``resnet50`` and ``efficientnet-b0``. All in 2D
and 3D, randomly initialised; no weights are ever downloaded. Detection: MONAI's RetinaNet
(:mod:`medimg.networks.detection`: :func:`build_detector`, :func:`train_step`, :func:`detect`).
"""

from __future__ import annotations

from medimg.networks.build import build_network, unet_levels
from medimg.networks.config import NetworkConfig, NetworkName, Task, lookup_network
from medimg.networks.detection import (
    DetectionLoss,
    Detections,
    DetectorConfig,
    build_detector,
    detect,
    detection_loss,
    train_step,
)
from medimg.networks.plan import UNetPlan, plan_unet

__all__ = [
    "DetectionLoss",
    "Detections",
    "DetectorConfig",
    "NetworkConfig",
    "NetworkName",
    "Task",
    "UNetPlan",
    "build_detector",
    "build_network",
    "detect",
    "detection_loss",
    "lookup_network",
    "plan_unet",
    "train_step",
    "unet_levels",
]
