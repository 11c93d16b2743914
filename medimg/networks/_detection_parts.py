"""The two pieces medimg supplies so that MONAI's RetinaNet runs without torchvision.

MONAI's :func:`~monai.apps.detection.networks.retinanet_network.resnet_fpn_feature_extractor`
calls torchvision (``_validate_trainable_layers`` and ``IntermediateLayerGetter``), and
:meth:`RetinaNetDetector.compute_anchor_matched_idxs` tests ``isinstance(matcher,
torchvision...Matcher)`` before it looks at the ATSS matcher, which raises MONAI's
``OptionalImportError`` when torchvision is absent. :class:`ResNetFPN` is our own backbone
wrapper (MONAI's ResNet layers and FeaturePyramidNetwork, run in order); :class:`ATSSDetector`
overrides only the matching step, for the ATSS matcher medimg always uses. Everything else
(anchors, ATSS, hard-negative sampler, box coder, losses, NMS, sliding window) is MONAI's.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence

import torch
from monai.apps.detection.networks.retinanet_detector import RetinaNetDetector
from monai.networks.blocks.feature_pyramid_network import FeaturePyramidNetwork
from monai.networks.nets.resnet import ResNet
from torch import Tensor, nn

__all__ = ["ATSSDetector", "ResNetFPN"]

logger = logging.getLogger(__name__)


class ResNetFPN(nn.Module):
    """A MONAI ResNet's stem and first layers, followed by a feature pyramid.

    Parameters
    ----------
    resnet : monai.networks.nets.ResNet
        Built with ``feed_forward=False``; its stem, max pool (unless ``no_max_pool``) and the
        layers up to ``max(returned_layers)`` are kept, the rest is dropped.
    returned_layers : sequence of int
        ResNet layers (1-4) whose outputs enter the pyramid, finest first.
    fpn_channels : int
        Channels of every pyramid level (``out_channels``, read by MONAI's RetinaNet).
    spatial_dims : int
        2 or 3.
    """

    def __init__(
        self,
        resnet: ResNet,
        returned_layers: Sequence[int],
        fpn_channels: int,
        spatial_dims: int,
    ) -> None:
        super().__init__()
        stem: list[nn.Module] = [resnet.conv1, resnet.bn1, resnet.act]
        if not resnet.no_max_pool:
            stem.append(resnet.maxpool)
        self.stem = nn.Sequential(*stem)
        last = max(returned_layers)
        self.layers = nn.ModuleList(getattr(resnet, f"layer{i}") for i in range(1, last + 1))
        self.returned = tuple(returned_layers)
        in_channels = [self._channels(layer) for layer in self.layers]
        self.fpn = FeaturePyramidNetwork(
            spatial_dims=spatial_dims,
            in_channels_list=[in_channels[i - 1] for i in self.returned],
            out_channels=fpn_channels,
        )
        self.out_channels = fpn_channels

    @staticmethod
    def _channels(layer: nn.Module) -> int:
        convs = [m for m in layer.modules() if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d)]
        return int(convs[-1].out_channels)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """Pyramid features ``{"0": finest, "1": ..., ...}`` of an input ``(B, C, *spatial)``."""
        x = self.stem(x)
        features: OrderedDict[str, Tensor] = OrderedDict()
        for index, layer in enumerate(self.layers, start=1):
            x = layer(x)
            if index in self.returned:
                features[str(len(features))] = x
        out: dict[str, Tensor] = self.fpn(features)
        return out


class ATSSDetector(RetinaNetDetector):
    """MONAI's RetinaNet detector, matching anchors with its ATSS matcher only.

    The override replaces MONAI's ``isinstance`` test against torchvision's ``Matcher`` (which
    raises when torchvision is absent) and logs, rather than warns, when no anchor matches a
    box (a warning would fail strict test runs and says nothing a log line would not).
    """

    def compute_anchor_matched_idxs(
        self,
        anchors: list[Tensor],
        targets: list[dict[str, Tensor]],
        num_anchor_locs_per_level: Sequence[int],
    ) -> list[Tensor]:
        """Per image, the index of the box each anchor matches, or -1 (see MONAI's method)."""
        matched: list[Tensor] = []
        for anchors_per_image, targets_per_image in zip(anchors, targets, strict=True):
            boxes = targets_per_image[self.target_box_key]
            if boxes.numel() == 0:
                matched.append(
                    torch.full(
                        (anchors_per_image.size(0),),
                        -1,
                        dtype=torch.int64,
                        device=anchors_per_image.device,
                    )
                )
                continue
            _, idxs = self.proposal_matcher(
                boxes.to(anchors_per_image.device),
                anchors_per_image,
                num_anchor_locs_per_level,
                self.num_anchors_per_loc,
            )
            if int(torch.max(idxs)) < 0:
                logger.warning(
                    "no anchor matched any of %d boxes; check the anchor shapes against the "
                    "box sizes",
                    boxes.shape[0],
                )
            matched.append(idxs)
        return matched
