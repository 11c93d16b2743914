"""3D box IoU and mean average precision of detections, in world millimetres.

Rules
-----
Per class, the detections of all scans are taken in descending score order (tied scores keep
their input order) and matched greedily, COCO-style: each detection to the unmatched included
lesion of its scan and class with the highest 3D IoU ``>=`` the threshold (a lesion's IoU box is
:meth:`~medimg.evaluation.detection.Lesion.iou_box`); a detection that matches no included
lesion but overlaps an *excluded* one at the threshold is ignored (COCO's "ignore"); every other
detection is a false positive. AP is the area under the precision-recall curve with precision
made non-increasing (its upper envelope), summed at every recall step ("all points", the PASCAL
VOC 2010+ definition); ``recall_points=101`` instead averages the envelope at 101 evenly spaced
recalls, as COCO does. mAP is the mean AP over the classes that have at least one included
lesion; a class with no included lesion has no AP.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from medimg.errors import ConfigError
from medimg.evaluation.detection import ScanFindings, WorldBox

__all__ = ["AveragePrecision", "box_iou", "mean_average_precision"]


def _corners(boxes: Sequence[WorldBox]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    lo = np.asarray([b.min_mm for b in boxes], dtype=np.float64).reshape(-1, 3)
    hi = np.asarray([b.max_mm for b in boxes], dtype=np.float64).reshape(-1, 3)
    return lo, hi


def _iou_matrix(a: Sequence[WorldBox], b: Sequence[WorldBox]) -> NDArray[np.float64]:
    alo, ahi = _corners(a)
    blo, bhi = _corners(b)
    side = np.minimum(ahi[:, None], bhi[None]) - np.maximum(alo[:, None], blo[None])
    inter = np.clip(side, 0, None).prod(axis=-1)
    union = (ahi - alo).prod(-1)[:, None] + (bhi - blo).prod(-1)[None] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
    return np.asarray(iou, dtype=np.float64)


def box_iou(a: WorldBox, b: WorldBox) -> float:
    """Intersection over union of two boxes (0 when the union has no volume).

    Examples
    --------
    >>> box_iou(WorldBox((0, 0, 0), (2, 2, 2)), WorldBox((1, 0, 0), (3, 2, 2)))  # 4 / 12
    0.3333333333333333
    """
    return float(_iou_matrix([a], [b])[0, 0])


@dataclass(frozen=True, kw_only=True)
class AveragePrecision:
    """AP per class at one IoU threshold, and their mean (module notes give the rules).

    ``per_label`` and ``n_lesions`` are keyed by class index; ``interpolation`` is
    ``"all points"`` or ``"101 points"``.
    """

    iou_threshold: float
    interpolation: str
    per_label: dict[int, float] = field(default_factory=dict)
    n_lesions: dict[int, int] = field(default_factory=dict)
    mean_ap: float = float("nan")


def _match_scan(
    scan: ScanFindings, label: int, iou_threshold: float
) -> tuple[list[float], list[bool]]:
    dets = sorted(
        (d for d in scan.detections if d.label == label), key=lambda d: -d.score
    )  # sorted() is stable: tied scores keep input order
    lesions = [les for les in scan.lesions if les.label == label]
    included = [les for les in lesions if not les.excluded]
    excluded = [les for les in lesions if les.excluded]
    iou_in = _iou_matrix([d.box for d in dets], [les.iou_box() for les in included])
    iou_ex = _iou_matrix([d.box for d in dets], [les.iou_box() for les in excluded])
    free = np.ones(len(included), dtype=bool)
    scores: list[float] = []
    is_tp: list[bool] = []
    for i, det in enumerate(dets):
        candidates = np.where(free & (iou_in[i] >= iou_threshold), iou_in[i], -1.0)
        if candidates.size and candidates.max() >= 0:
            free[int(candidates.argmax())] = False
            scores.append(det.score)
            is_tp.append(True)
        elif not (iou_ex[i] >= iou_threshold).any():
            scores.append(det.score)
            is_tp.append(False)
    return scores, is_tp


def _ap(scores: list[float], is_tp: list[bool], n_gt: int, recall_points: int | None) -> float:
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    tp = np.asarray(is_tp, dtype=bool)[order]
    cum_tp = np.cumsum(tp)
    precision = cum_tp / np.arange(1, tp.size + 1)
    recall = cum_tp / n_gt
    envelope = np.maximum.accumulate(precision[::-1])[::-1] if tp.size else precision
    if recall_points is None:
        steps = np.diff(np.concatenate([[0.0], recall]))
        return float((steps * envelope).sum())
    grid = np.linspace(0.0, 1.0, recall_points)
    at = np.searchsorted(recall, grid, side="left")
    padded = np.concatenate([envelope, [0.0]])
    return float(padded[at].mean())


def mean_average_precision(
    scans: Sequence[ScanFindings],
    *,
    iou_threshold: float = 0.1,
    recall_points: int | None = None,
) -> AveragePrecision:
    """AP per class and mAP at ``iou_threshold`` over all scans (module notes give the rules).

    Parameters
    ----------
    scans : sequence of ScanFindings
        Every evaluated scan.
    iou_threshold : float
        Minimum 3D IoU, in (0, 1], for a detection to match a lesion.
    recall_points : int or None
        None integrates at every recall step (VOC 2010+); 101 samples as COCO does.

    Raises
    ------
    ConfigError
        When ``iou_threshold`` or ``recall_points`` is out of range.

    Examples
    --------
    >>> from medimg.evaluation.detection import Detection, Lesion
    >>> les = Lesion.from_box(WorldBox((0, 0, 0), (4, 4, 4)))
    >>> det = Detection.from_box(WorldBox((1, 0, 0), (5, 4, 4)), score=0.8)  # IoU 0.6
    >>> scan = ScanFindings(scan_id="a", lesions=(les,), detections=(det,))
    >>> mean_average_precision([scan]).mean_ap
    1.0
    """
    if not (math.isfinite(iou_threshold) and 0 < iou_threshold <= 1):
        raise ConfigError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
    if recall_points is not None and recall_points < 2:
        raise ConfigError(f"recall_points must be None or >= 2, got {recall_points}")
    labels = sorted({les.label for s in scans for les in s.lesions if not les.excluded})
    per_label: dict[int, float] = {}
    counts: dict[int, int] = {}
    for label in labels:
        scores: list[float] = []
        is_tp: list[bool] = []
        for scan in scans:
            s, t = _match_scan(scan, label, iou_threshold)
            scores += s
            is_tp += t
        counts[label] = sum(
            1 for s in scans for les in s.lesions if les.label == label and not les.excluded
        )
        per_label[label] = _ap(scores, is_tp, counts[label], recall_points)
    mean = float(np.mean(list(per_label.values()))) if per_label else float("nan")
    return AveragePrecision(
        iou_threshold=float(iou_threshold),
        interpolation="all points" if recall_points is None else f"{recall_points} points",
        per_label=per_label,
        n_lesions=counts,
        mean_ap=mean,
    )
