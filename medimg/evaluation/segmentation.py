"""Segmentation metrics in physical units: Dice, HD95 (mm), surface Dice at a tolerance, volumes.

Conventions
-----------
* Arrays are label maps ``(X, Y[, Z])`` on one grid; ``spacing_mm`` gives the voxel size along
  each array axis, so anisotropic grids are measured in millimetres, not voxels.
* Surfaces are the boundary voxels of a mask (the mask minus its erosion with a face-connected
  structuring element; a mask touching the grid edge has a boundary there), distances are
  between voxel centres (Euclidean distance transform with ``sampling=spacing_mm``), as in
  MONAI's ``compute_hausdorff_distance`` and ``compute_surface_dice``.
* HD95 is the larger of the two directed 95th percentiles (linear interpolation), as in MONAI.
* Empty masks (following the "perfect agreement on absence" reading of Metrics Reloaded):
  both empty gives Dice 1, surface Dice 1, HD95 0 mm; exactly one empty gives Dice 0, surface
  Dice 0 and HD95 equal to the grid diagonal in mm (the worst distance possible on that grid,
  finite so means stay defined; MONAI returns inf or NaN there). Every score records
  ``reference_empty``/``prediction_empty`` so a summary can exclude those cases instead.
* Lesion-wise counts (3D maps): each label's connected components (26-connectivity) are its
  lesions; a reference lesion is detected when a predicted component overlaps it by one voxel
  or more, and a predicted component overlapping none is a false positive
  (:func:`~medimg.evaluation.lesions.lesion_scores`). They let segmentation output be compared
  with a detector on the same lesions (sensitivity at the false positives per scan it makes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from medimg.errors import ConfigError, GeometryError

if TYPE_CHECKING:
    from medimg.evaluation.lesions import LesionScores

__all__ = [
    "CaseScores",
    "LabelScores",
    "dice",
    "hausdorff95_mm",
    "score_case",
    "surface_dice",
    "volume_ml",
]

Mask = NDArray[np.bool_]


def _check(a: Mask, b: Mask, spacing_mm: Sequence[float]) -> None:
    if a.shape != b.shape:
        raise GeometryError(f"masks must have the same shape, got {a.shape} and {b.shape}")
    if len(spacing_mm) != a.ndim or any(s <= 0 for s in spacing_mm):
        raise ConfigError(
            f"spacing_mm must have one value > 0 per axis of shape {a.shape}, "
            f"got {tuple(spacing_mm)}"
        )


def dice(prediction: Mask, reference: Mask) -> float:
    """Dice similarity coefficient ``2|P∩R| / (|P|+|R|)``; 1.0 when both are empty.

    Examples
    --------
    >>> a = np.zeros((4, 4), bool); a[:2] = True
    >>> dice(a, np.roll(a, 1, axis=0))  # 8 voxels each, 4 shared: 2*4/16
    0.5
    """
    if prediction.shape != reference.shape:
        raise GeometryError(
            f"masks must have the same shape, got {prediction.shape} and {reference.shape}"
        )
    total = int(prediction.sum()) + int(reference.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(prediction, reference).sum()) / total


def volume_ml(mask: Mask, spacing_mm: Sequence[float]) -> float:
    """Volume of a mask in millilitres: voxels times voxel volume (mm³) / 1000.

    Examples
    --------
    >>> volume_ml(np.ones((3, 3, 3), bool), (1.0, 1.0, 2.5))  # 27 * 2.5 mm³
    0.0675
    """
    return voxels_ml(int(mask.sum()), spacing_mm)


def voxels_ml(count: int, spacing_mm: Sequence[float]) -> float:
    """Volume of ``count`` voxels in millilitres: count times voxel volume (mm³) / 1000.

    Examples
    --------
    >>> voxels_ml(27, (1.0, 1.0, 2.5))
    0.0675
    """
    return float(count) * float(np.prod(spacing_mm)) / 1000.0


def _surface(mask: Mask) -> Mask:
    from scipy.ndimage import binary_erosion, generate_binary_structure

    structure = generate_binary_structure(mask.ndim, 1)
    eroded: Mask = binary_erosion(mask, structure=structure, border_value=0)
    return mask & ~eroded


def _directed(a: Mask, b: Mask, spacing_mm: Sequence[float]) -> NDArray[np.float64]:
    """Distances (mm) from each surface voxel of ``a`` to the nearest surface voxel of ``b``."""
    from scipy.ndimage import distance_transform_edt

    to_b: NDArray[np.float64] = distance_transform_edt(~_surface(b), sampling=spacing_mm)
    return to_b[_surface(a)]


def _diagonal_mm(shape: tuple[int, ...], spacing_mm: Sequence[float]) -> float:
    return float(np.linalg.norm(np.asarray(shape, float) * np.asarray(spacing_mm, float)))


def hausdorff95_mm(prediction: Mask, reference: Mask, spacing_mm: Sequence[float]) -> float:
    """95th-percentile symmetric Hausdorff distance between the mask surfaces, in mm.

    See the module notes for the surface definition and the empty-mask convention.

    Examples
    --------
    >>> a = np.zeros((3, 3, 5), bool); b = a.copy()
    >>> a[1, 1, 1] = True; b[1, 1, 3] = True  # 2 voxels apart along z at 2.5 mm
    >>> hausdorff95_mm(a, b, (1.0, 1.0, 2.5))
    5.0
    """
    _check(prediction, reference, spacing_mm)
    empty_p, empty_r = not prediction.any(), not reference.any()
    if empty_p and empty_r:
        return 0.0
    if empty_p or empty_r:
        return _diagonal_mm(prediction.shape, spacing_mm)
    forward = np.percentile(_directed(prediction, reference, spacing_mm), 95)
    backward = np.percentile(_directed(reference, prediction, spacing_mm), 95)
    return float(max(forward, backward))


def surface_dice(
    prediction: Mask, reference: Mask, spacing_mm: Sequence[float], *, tolerance_mm: float
) -> float:
    """Normalised surface Dice: share of both surfaces within ``tolerance_mm`` of the other.

    ``(|{p ∈ ∂P : d(p, ∂R) <= τ}| + |{r ∈ ∂R : d(r, ∂P) <= τ}|) / (|∂P| + |∂R|)``, counted in
    boundary voxels (MONAI's ``compute_surface_dice`` without sub-voxel surfaces).

    Examples
    --------
    >>> a = np.zeros((3, 3, 5), bool); b = a.copy()
    >>> a[1, 1, 1] = True; b[1, 1, 3] = True  # 5.0 mm apart
    >>> surface_dice(a, b, (1.0, 1.0, 2.5), tolerance_mm=5.0), surface_dice(
    ...     a, b, (1.0, 1.0, 2.5), tolerance_mm=4.9)
    (1.0, 0.0)
    """
    _check(prediction, reference, spacing_mm)
    if tolerance_mm < 0:
        raise ConfigError(f"tolerance_mm must be >= 0, got {tolerance_mm}")
    empty_p, empty_r = not prediction.any(), not reference.any()
    if empty_p or empty_r:
        return 1.0 if empty_p and empty_r else 0.0
    forward = _directed(prediction, reference, spacing_mm)
    backward = _directed(reference, prediction, spacing_mm)
    close = int((forward <= tolerance_mm).sum()) + int((backward <= tolerance_mm).sum())
    return close / (forward.size + backward.size)


@dataclass(frozen=True)
class LabelScores:
    """Scores of one label in one case (see the module notes for the empty-mask convention)."""

    label: int
    name: str
    dice: float
    hd95_mm: float
    surface_dice: float
    volume_reference_ml: float
    volume_prediction_ml: float
    reference_empty: bool
    prediction_empty: bool
    lesions: LesionScores | None = None
    """Lesion-wise counts of this label (3D maps; None for 2D), see the module notes."""

    @property
    def volume_difference_ml(self) -> float:
        """Prediction minus reference volume (positive: over-segmentation)."""
        return self.volume_prediction_ml - self.volume_reference_ml


@dataclass(frozen=True)
class CaseScores:
    """Per-label scores of one case."""

    case_id: str
    labels: tuple[LabelScores, ...]

    @property
    def mean_dice(self) -> float:
        """Mean Dice over the case's labels."""
        return float(np.mean([s.dice for s in self.labels])) if self.labels else float("nan")


def score_case(
    case_id: str,
    prediction: NDArray[np.integer],
    reference: NDArray[np.integer],
    *,
    spacing_mm: Sequence[float],
    labels: Mapping[int, str],
    tolerance_mm: float = 2.0,
) -> CaseScores:
    """Score every label of ``labels`` (background excluded by the caller) in one case.

    Parameters
    ----------
    case_id : str
        Case name, kept in the result.
    prediction, reference : (X, Y[, Z]) ndarray of int
        Label maps on the same grid.
    spacing_mm : sequence of float
        Voxel size per array axis.
    labels : mapping of int to str
        Label values to score and their names, e.g. ``{1: "liver", 2: "spleen"}``.
    tolerance_mm : float
        Surface Dice tolerance.

    Raises
    ------
    GeometryError
        When the maps differ in shape.
    ConfigError
        When ``spacing_mm`` does not fit the maps or ``tolerance_mm`` is negative.
    """
    from medimg.evaluation.lesions import lesion_scores

    _check(prediction.astype(bool), reference.astype(bool), spacing_mm)
    scores = []
    for value, name in labels.items():
        p, r = prediction == value, reference == value
        scores.append(
            LabelScores(
                label=int(value),
                name=name,
                dice=dice(p, r),
                hd95_mm=hausdorff95_mm(p, r, spacing_mm),
                surface_dice=surface_dice(p, r, spacing_mm, tolerance_mm=tolerance_mm),
                volume_reference_ml=volume_ml(r, spacing_mm),
                volume_prediction_ml=volume_ml(p, spacing_mm),
                reference_empty=not r.any(),
                prediction_empty=not p.any(),
                lesions=lesion_scores(p, r) if p.ndim == 3 else None,
            )
        )
    return CaseScores(case_id=case_id, labels=tuple(scores))
