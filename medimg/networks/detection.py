"""Lesion detection with MONAI's RetinaNet: build from a config, one training step, inference.

The detector is MONAI's (``monai.apps.detection``): a small ResNet-FPN backbone (MONAI's
ResNet, randomly initialised, nothing downloaded), anchors of given shapes on every pyramid
level, the ATSS matcher, the hard-negative sampler, the box coder, score threshold, NMS and a
cap on detections per image, with MONAI's sliding-window inferer for volumes larger than the
window. It runs without torchvision (see :mod:`medimg.networks._detection_parts`).

Notes
-----
Boxes are ``(x0, y0, z0, x1, y1, z1)`` (2D: ``(x0, y0, x1, y1)``) in continuous voxel
coordinates of the network's input grid: axis ``i`` of the box is array axis ``i`` after the
channel (medimg's RAS voxel order, so ``x`` is the first spatial axis), and voxel ``k`` has
its centre at coordinate ``k``, as in the affine. A sphere of radius ``r`` voxels centred on
voxel ``(i, j, k)`` has the box ``(i - r, j - r, k - r, i + r, j + r, k + r)``; a box's
centre is the lesion's voxel position, ``affine @ (centre, 1)`` its world position. Labels
are 0-based foreground classes (``0 .. num_classes - 1``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import numpy as np
from numpy.typing import ArrayLike, NDArray

from medimg.errors import ConfigError

if TYPE_CHECKING:
    import torch

    from medimg.networks._detection_parts import ATSSDetector

__all__ = [
    "DetectionLoss",
    "Detections",
    "DetectorConfig",
    "build_detector",
    "detect",
    "detection_loss",
    "train_step",
]

_CLS = "classification"
_BOX = "box_regression"


@dataclass(frozen=True, kw_only=True)
class DetectorConfig:
    """A RetinaNet detector's architecture, training sampler and inference settings.

    The defaults suit solid nodules of 3-30 mm on a 1.5-3 mm grid (about 1.5-20 voxels):
    pyramid levels at strides 4 and 8 with anchors of 4 and 8 voxels, then 8 and 16. The
    stride-2 level (``returned_layers=(1, 2, 3)``) cost 2.3x the time per step and 4x per
    scan at inference on 64^3 volumes without detecting better in our trial.

    Attributes
    ----------
    spatial_dims : int
        2 or 3.
    in_channels : int
        Image channels.
    num_classes : int
        Foreground classes (no background class).
    base_features : int
        Channels of the first ResNet layer; layer ``i`` has ``base_features * 2**(i-1)``.
    layers : tuple of int
        Basic residual blocks in each ResNet layer used (1 to 4 layers); each layer after
        the first halves the grid.
    returned_layers : tuple of int
        The layers (1-based, increasing) whose outputs form the feature pyramid.
    stem_stride_vox : tuple of int
        Stride of the first convolution per axis (``1`` keeps an axis at full resolution,
        e.g. ``(2, 2, 1)`` for thick slices).
    max_pool : bool
        Halve the grid once more after the stem (MONAI ResNet's max pool).
    fpn_channels : int
        Channels of each pyramid level and of the heads.
    anchor_shapes_vox : tuple of tuple of float
        Anchor sizes per axis, in input voxels, on the finest returned level; each coarser
        level doubles them.
    atss_candidates : int
        ATSS: anchors per level nearest each box that are considered for it.
    center_in_gt : bool
        ATSS: an anchor matches only when its centre is inside the box.
    sampler_anchors_per_image : int
        Hard-negative sampler: anchors per image in the classification loss.
    sampler_positive_fraction : float
        Hard-negative sampler: at most this fraction of them positive.
    sampler_min_negatives : int
        Hard-negative sampler: at least this many negatives.
    sampler_pool_size : float
        Hard-negative sampler: negatives are drawn among the ``pool_size`` times as many
        hardest ones.
    box_coder_weights : tuple of float, optional
        Weights of the box coder's ``2 * spatial_dims`` deltas; all 1.0 when omitted.
    score_threshold : float
        Detections scoring below this are dropped.
    nms_iou : float
        Non-maximum suppression: a box overlapping a better one by more IoU is dropped.
    topk_per_level : int
        Candidates kept per pyramid level before NMS.
    detections_per_image : int
        Most detections returned per image.
    roi_size_vox : tuple of int
        Sliding-window size used by :func:`detect` on larger volumes; each axis a multiple of
        :attr:`size_divisible`.
    sw_overlap : float
        Sliding-window overlap in [0, 1).
    """

    spatial_dims: int = 3
    in_channels: int = 1
    num_classes: int = 1
    base_features: int = 8
    layers: tuple[int, ...] = (1, 1, 1)
    returned_layers: tuple[int, ...] = (2, 3)
    stem_stride_vox: tuple[int, ...] = (2, 2, 2)
    max_pool: bool = False
    fpn_channels: int = 16
    anchor_shapes_vox: tuple[tuple[float, ...], ...] = ((4.0, 4.0, 4.0), (8.0, 8.0, 8.0))
    atss_candidates: int = 4
    center_in_gt: bool = False
    sampler_anchors_per_image: int = 64
    sampler_positive_fraction: float = 0.3
    sampler_min_negatives: int = 16
    sampler_pool_size: float = 20.0
    box_coder_weights: tuple[float, ...] | None = None
    score_threshold: float = 0.02
    nms_iou: float = 0.22
    topk_per_level: int = 1000
    detections_per_image: int = 100
    roi_size_vox: tuple[int, ...] = (64, 64, 64)
    sw_overlap: float = 0.25

    def __post_init__(self) -> None:
        if self.spatial_dims not in (2, 3):
            raise ConfigError(f"spatial_dims must be 2 or 3, got {self.spatial_dims}")
        for name in (
            "in_channels",
            "num_classes",
            "base_features",
            "fpn_channels",
            "atss_candidates",
            "sampler_anchors_per_image",
            "topk_per_level",
            "detections_per_image",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        self._check_backbone()
        self._check_per_axis()
        self._check_fractions()

    def _check_backbone(self) -> None:
        if not 1 <= len(self.layers) <= 4 or any(n < 1 for n in self.layers):
            raise ConfigError(
                f"layers must be 1 to 4 block counts >= 1 (one per ResNet layer), got {self.layers}"
            )
        r = self.returned_layers
        if not r or list(r) != sorted(set(r)) or r[0] < 1 or r[-1] > len(self.layers):
            raise ConfigError(
                f"returned_layers must be increasing layer numbers in 1..{len(self.layers)} "
                f"(len(layers)), got {r}"
            )

    def _check_per_axis(self) -> None:
        n = self.spatial_dims
        if len(self.stem_stride_vox) != n or any(s not in (1, 2) for s in self.stem_stride_vox):
            raise ConfigError(
                f"stem_stride_vox must be {n} values, each 1 or 2, got {self.stem_stride_vox}"
            )
        shapes = self.anchor_shapes_vox
        if not shapes or any(len(s) != n or any(v <= 0 for v in s) for s in shapes):
            raise ConfigError(
                f"anchor_shapes_vox must be one or more shapes of {n} sizes > 0, got {shapes}"
            )
        w = self.box_coder_weights
        if w is not None and (len(w) != 2 * n or any(v <= 0 for v in w)):
            raise ConfigError(f"box_coder_weights must be {2 * n} values > 0, got {w}")
        div = self.size_divisible
        roi = self.roi_size_vox
        if len(roi) != n or any(s < d or s % d for s, d in zip(roi, div, strict=True)):
            raise ConfigError(
                f"roi_size_vox must be {n} positive multiples of {div} (the backbone's total "
                f"stride per axis), got {roi}"
            )

    def _check_fractions(self) -> None:
        if not 0 < self.sampler_positive_fraction <= 1:
            raise ConfigError(
                f"sampler_positive_fraction must be in (0, 1], got {self.sampler_positive_fraction}"
            )
        if self.sampler_min_negatives < 0 or self.sampler_pool_size < 1:
            raise ConfigError(
                f"sampler_min_negatives must be >= 0 and sampler_pool_size >= 1, got "
                f"{self.sampler_min_negatives} and {self.sampler_pool_size}"
            )
        for name in ("score_threshold", "nms_iou"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if not 0 <= self.sw_overlap < 1:
            raise ConfigError(f"sw_overlap must be in [0, 1), got {self.sw_overlap}")

    @property
    def level_strides_vox(self) -> tuple[tuple[int, ...], ...]:
        """Grid stride of each returned pyramid level, per axis, in input voxels."""
        pool = 2 if self.max_pool else 1
        return tuple(
            tuple(s * pool * 2 ** (layer - 1) for s in self.stem_stride_vox)
            for layer in self.returned_layers
        )

    @property
    def size_divisible(self) -> tuple[int, ...]:
        """Input sizes must be multiples of this per axis (the coarsest level's stride)."""
        pool = 2 if self.max_pool else 1
        return tuple(s * pool * 2 ** (len(self.layers) - 1) for s in self.stem_stride_vox)

    @property
    def feature_map_scales(self) -> tuple[int, ...]:
        """Anchor scale of each returned level relative to the finest one."""
        first = self.returned_layers[0]
        return tuple(2 ** (layer - first) for layer in self.returned_layers)


@dataclass(frozen=True)
class Detections:
    """Boxes found in one image, best first.

    Attributes
    ----------
    boxes_vox : (N, 2 * spatial_dims) ndarray of float32
        ``(x0, y0, z0, x1, y1, z1)`` in voxel coordinates of the input grid (module notes).
    scores : (N,) ndarray of float32
        Probability of the box's class, in [0, 1].
    labels : (N,) ndarray of int64
        0-based foreground class.
    """

    boxes_vox: NDArray[np.float32]
    scores: NDArray[np.float32]
    labels: NDArray[np.int64]

    @property
    def centres_vox(self) -> NDArray[np.float32]:
        """Box centres ``(N, spatial_dims)`` in voxel coordinates."""
        d = self.boxes_vox.shape[1] // 2
        return ((self.boxes_vox[:, :d] + self.boxes_vox[:, d:]) / 2).astype(np.float32)


@dataclass(frozen=True)
class DetectionLoss:
    """The two RetinaNet losses of one batch (scalar tensors that keep their graph)."""

    classification: torch.Tensor
    box_regression: torch.Tensor

    @property
    def total(self) -> torch.Tensor:
        """Classification plus box-regression loss."""
        return self.classification + self.box_regression


def build_detector(cfg: DetectorConfig, *, seed: int = 0) -> ATSSDetector:
    """A randomly initialised RetinaNet detector for ``cfg``, on the CPU (weights from ``seed``).

    Parameters
    ----------
    cfg : DetectorConfig
        Architecture and settings.
    seed : int
        Seeds a private generator for the initial weights; the global generators are left as
        they were. The hard-negative sampler draws from torch's global generator during
        training: seed it once with :func:`medimg.training.seeding.seed_everything`.

    Returns
    -------
    ATSSDetector
        A :class:`monai.apps.detection.networks.retinanet_detector.RetinaNetDetector`;
        only its ``network`` holds weights (save and load ``detector.network.state_dict()``).
        Move it with ``detector.to(select_device("auto"))`` (:mod:`medimg.training.device`)
        to use CUDA when available; :func:`detection_loss` and :func:`detect` follow it.
    """
    import torch

    from medimg.networks._detection_parts import assemble

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return assemble(cfg)


def detection_loss(
    detector: ATSSDetector,
    images: torch.Tensor,
    boxes_vox: Sequence[ArrayLike],
    labels: Sequence[ArrayLike],
) -> DetectionLoss:
    """RetinaNet's losses on a batch, in training mode (call ``.total.backward()`` on them).

    Parameters
    ----------
    detector : ATSSDetector
        From :func:`build_detector`.
    images : (B, C, *spatial) tensor
        Intensities scaled to about [0, 1]; sizes a multiple of ``cfg.size_divisible`` (else
        padded).
    boxes_vox : sequence of B arrays of shape (N_i, 2 * spatial_dims)
        Each image's boxes in voxel coordinates of ``images`` (module notes); ``N_i`` may be 0.
    labels : sequence of B arrays of shape (N_i,)
        0-based class of each box.

    Raises
    ------
    ConfigError
        When boxes and labels disagree in number, a box is degenerate or a label out of range.
    """
    if images.ndim != 2 + detector.spatial_dims or images.shape[0] != len(boxes_vox):
        raise ConfigError(
            f"images must be (B, C, *spatial) with B = {len(boxes_vox)} (one per box list), "
            f"got shape {tuple(images.shape)}"
        )
    from medimg.networks._detection_parts import targets_on

    device = next(detector.network.parameters()).device
    targets = targets_on(detector, boxes_vox, labels, device)
    detector.train()
    losses = detector(images.to(device), targets)
    return DetectionLoss(classification=losses[_CLS], box_regression=losses[_BOX])


def train_step(
    detector: ATSSDetector,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    boxes_vox: Sequence[ArrayLike],
    labels: Sequence[ArrayLike],
) -> tuple[float, float]:
    """One optimiser step on a batch; returns (classification, box-regression) loss.

    Parameters are those of :func:`detection_loss`, plus the optimiser over
    ``detector.network.parameters()``.
    """
    import torch

    loss = detection_loss(detector, images, boxes_vox, labels)
    optimizer.zero_grad(set_to_none=True)
    torch.autograd.backward(loss.total)
    optimizer.step()
    return float(loss.classification.detach()), float(loss.box_regression.detach())


def detect(detector: ATSSDetector, image: torch.Tensor) -> Detections:
    """Detect boxes in one image; volumes larger than the window go through a sliding window.

    Parameters
    ----------
    detector : ATSSDetector
        From :func:`build_detector`.
    image : (C, *spatial) tensor
        One image, scaled as in training, any size (padded to ``size_divisible`` inside).

    Returns
    -------
    Detections
        Boxes in voxel coordinates of ``image`` (clipped to it), scores and labels, best first.
    """
    import torch

    if image.ndim != 1 + detector.spatial_dims:
        raise ConfigError(
            f"image must be (C, *spatial) with {detector.spatial_dims} spatial axes, got shape "
            f"{tuple(image.shape)}"
        )
    device = next(detector.network.parameters()).device
    if detector.inferer is None:
        raise ConfigError(
            "the detector has no sliding-window inferer; build it with build_detector(cfg)"
        )
    roi = cast(Sequence[int], detector.inferer.roi_size)
    use_window = any(s > r for s, r in zip(image.shape[1:], roi, strict=True))
    detector.eval()
    with torch.no_grad():
        out = detector(image[None].to(device), use_inferer=use_window)[0]
    order = torch.argsort(out[detector.pred_score_key], descending=True)
    return Detections(
        boxes_vox=out["boxes"][order].float().cpu().numpy(),
        scores=out[detector.pred_score_key][order].float().cpu().numpy(),
        labels=out["labels"][order].long().cpu().numpy(),
    )
