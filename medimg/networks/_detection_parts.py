"""How :mod:`medimg.networks.detection` assembles MONAI's RetinaNet without torchvision.

MONAI's :func:`~monai.apps.detection.networks.retinanet_network.resnet_fpn_feature_extractor`
calls torchvision (``_validate_trainable_layers`` and ``IntermediateLayerGetter``), and
:meth:`RetinaNetDetector.compute_anchor_matched_idxs` tests ``isinstance(matcher,
torchvision...Matcher)`` before it looks at the ATSS matcher, which raises MONAI's
``OptionalImportError`` when torchvision is absent. :class:`ResNetFPN` is our own backbone
wrapper (MONAI's ResNet layers and FeaturePyramidNetwork, run in order); :class:`ATSSDetector`
overrides only the matching step, for the ATSS matcher medimg always uses. Everything else
(anchors, ATSS, hard-negative sampler, box coder, losses, NMS, sliding window) is MONAI's,
put together by :func:`assemble`; :func:`targets_on` checks and converts training targets.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import torch
from monai.apps.detection.networks.retinanet_detector import RetinaNetDetector
from monai.apps.detection.networks.retinanet_network import RetinaNet
from monai.apps.detection.utils.anchor_utils import AnchorGeneratorWithAnchorShape
from monai.networks.blocks.feature_pyramid_network import FeaturePyramidNetwork
from monai.networks.nets.resnet import ResNet
from numpy.typing import ArrayLike
from torch import Tensor, nn

from medimg.errors import ConfigError
from medimg.networks.detection import DetectorConfig

__all__ = ["ATSSDetector", "ResNetFPN", "assemble", "targets_on"]

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


def assemble(cfg: DetectorConfig) -> ATSSDetector:
    """MONAI's RetinaNet detector for ``cfg`` (weights from torch's current generator)."""
    n_layers = len(cfg.layers)
    resnet = ResNet(
        block="basic",
        layers=[*cfg.layers, *([1] * (4 - n_layers))],
        block_inplanes=[cfg.base_features * 2**i for i in range(4)],
        spatial_dims=cfg.spatial_dims,
        n_input_channels=cfg.in_channels,
        conv1_t_size=3,
        conv1_t_stride=cfg.stem_stride_vox,  # type: ignore[arg-type]  # MONAI types a 1-tuple
        no_max_pool=not cfg.max_pool,
        feed_forward=False,
    )
    backbone = ResNetFPN(resnet, cfg.returned_layers, cfg.fpn_channels, cfg.spatial_dims)
    anchors = AnchorGeneratorWithAnchorShape(
        feature_map_scales=cfg.feature_map_scales,
        base_anchor_shapes=cfg.anchor_shapes_vox,
    )
    network = RetinaNet(
        spatial_dims=cfg.spatial_dims,
        num_classes=cfg.num_classes,
        num_anchors=len(cfg.anchor_shapes_vox),
        feature_extractor=backbone,
        size_divisible=cfg.size_divisible,
    )
    detector = ATSSDetector(network=network, anchor_generator=anchors)
    detector.set_atss_matcher(num_candidates=cfg.atss_candidates, center_in_gt=cfg.center_in_gt)
    detector.set_hard_negative_sampler(
        batch_size_per_image=cfg.sampler_anchors_per_image,
        positive_fraction=cfg.sampler_positive_fraction,
        min_neg=cfg.sampler_min_negatives,
        pool_size=cfg.sampler_pool_size,
    )
    weights = cfg.box_coder_weights or (1.0,) * (2 * cfg.spatial_dims)
    detector.set_box_coder_weights(weights)  # type: ignore[arg-type]  # MONAI types a 1-tuple
    detector.set_box_selector_parameters(
        score_thresh=cfg.score_threshold,
        topk_candidates_per_level=cfg.topk_per_level,
        nms_thresh=cfg.nms_iou,
        detections_per_img=cfg.detections_per_image,
    )
    detector.set_sliding_window_inferer(
        roi_size=cfg.roi_size_vox, overlap=cfg.sw_overlap, mode="constant"
    )
    return detector


def targets_on(
    detector: ATSSDetector,
    boxes_vox: Sequence[ArrayLike],
    labels: Sequence[ArrayLike],
    device: torch.device,
) -> list[dict[str, torch.Tensor]]:
    """MONAI's training targets from per-image boxes and labels, checked, on ``device``."""
    width = 2 * int(detector.spatial_dims)
    targets = []
    for index, (boxes, lab) in enumerate(zip(boxes_vox, labels, strict=True)):
        b = torch.as_tensor(np.asarray(boxes, dtype=np.float32).reshape(-1, width))
        lab_t = torch.as_tensor(np.asarray(lab, dtype=np.int64).reshape(-1))
        if b.shape[0] != lab_t.shape[0]:
            raise ConfigError(
                f"image {index} has {b.shape[0]} boxes but {lab_t.shape[0]} labels; give one "
                "label per box"
            )
        if b.shape[0] and not bool(torch.all(b[:, width // 2 :] > b[:, : width // 2])):
            raise ConfigError(
                f"image {index}: every box must have x1 > x0, y1 > y0 (and z1 > z0), got "
                f"{b.tolist()}"
            )
        if lab_t.numel() and (int(lab_t.min()) < 0 or int(lab_t.max()) >= detector.num_classes):
            raise ConfigError(
                f"image {index}: labels must be in 0..{detector.num_classes - 1}, got "
                f"{lab_t.tolist()}"
            )
        targets.append({"boxes": b.to(device), "labels": lab_t.to(device)})
    return targets
