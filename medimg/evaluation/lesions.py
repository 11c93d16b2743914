"""Lesion-wise metrics of segmentation output, and label components as boxes in world mm.

Conventions
-----------
* Lesions are the connected components of one label's voxels (``scipy.ndimage.label``), by
  default with 26-connectivity in 3D (voxels sharing a face, an edge or a corner are connected);
  6 (faces) and 18 (faces and edges) can be chosen.
* A true lesion is *detected* when some predicted component overlaps it with a component-pair IoU
  ``|T ∩ P| / |T ∪ P|`` greater than ``min_iou``; the default ``min_iou=0`` means any overlap of
  one voxel or more. A predicted component is a *false positive* when it detects no true lesion
  by the same rule. One predicted component may detect several true lesions (a merge).
* Arrays are ``(X, Y, Z)`` in the stored grid's axis order and ``affine`` is that grid's
  voxel-to-world matrix (voxel centres at integer indices). A component's box is the world
  axis-aligned box of its voxels taken as full cells (on an oblique grid, the box of every
  voxel's eight corners); its centre is the centre of mass of its voxel centres.
  :func:`detections_from_label_map` and :func:`lesions_from_label_map` turn predicted and true
  label maps into :class:`~medimg.evaluation.detection.Detection` and
  :class:`~medimg.evaluation.detection.Lesion` records, so segmentation output can be scored
  with the same FROC (:func:`~medimg.evaluation.detection.froc`) as a detector on the same
  lesions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from medimg.errors import ConfigError, GeometryError
from medimg.evaluation.detection import Detection, Lesion, Point3, WorldBox

__all__ = [
    "LesionComponent",
    "LesionScores",
    "LesionSummary",
    "detections_from_label_map",
    "label_components",
    "lesion_components",
    "lesion_scores",
    "lesions_from_label_map",
    "summarize_lesions",
    "world_box_to_voxel",
]

_STRUCTURE_RANK = {6: 1, 18: 2, 26: 3}


def label_components(
    label_map: NDArray[Any], *, label: int = 1, connectivity: int = 26
) -> tuple[NDArray[np.int32], int]:
    """Connected components of the voxels equal to ``label`` in a 3D label map.

    Parameters
    ----------
    label_map : (X, Y, Z) ndarray of int or bool
        Label map.
    label : int
        Label value whose voxels form the lesions.
    connectivity : {6, 18, 26}
        Neighbourhood of a voxel: faces, faces and edges, or faces, edges and corners.

    Returns
    -------
    components : (X, Y, Z) ndarray of int32
        0 outside, ``1..n`` the component of each voxel, numbered in C (raster) order.
    n : int
        Number of components.

    Raises
    ------
    GeometryError
        When ``label_map`` is not 3D.
    ConfigError
        When ``connectivity`` is not 6, 18 or 26.

    Examples
    --------
    >>> m = np.zeros((3, 3, 3), np.uint8); m[0, 0, 0] = m[1, 1, 1] = 1  # corner neighbours
    >>> label_components(m)[1], label_components(m, connectivity=6)[1]
    (1, 2)
    """
    from scipy.ndimage import generate_binary_structure
    from scipy.ndimage import label as scipy_label

    if label_map.ndim != 3:
        raise GeometryError(f"label map must be 3D (X, Y, Z), got shape {label_map.shape}")
    if connectivity not in _STRUCTURE_RANK:
        raise ConfigError(f"connectivity must be 6, 18 or 26, got {connectivity!r}")
    structure = generate_binary_structure(3, _STRUCTURE_RANK[connectivity])
    components = np.zeros(label_map.shape, dtype=np.int32)
    n = scipy_label(label_map == label, structure=structure, output=components)
    return components, int(n)


@dataclass(frozen=True, kw_only=True)
class LesionScores:
    """Lesion-wise detection counts of one label in one scan (see the module notes).

    ``detected`` holds one flag per true lesion, in component order.
    """

    label: int
    connectivity: int
    min_iou: float
    n_true: int
    n_predicted: int
    n_false_positive: int
    detected: tuple[bool, ...]

    @property
    def n_detected(self) -> int:
        """True lesions detected."""
        return sum(self.detected)

    @property
    def sensitivity(self) -> float:
        """Share of true lesions detected; NaN when the scan has none."""
        return self.n_detected / self.n_true if self.n_true else float("nan")


def _pair_iou(
    truth: NDArray[np.int32], n_true: int, pred: NDArray[np.int32], n_pred: int
) -> NDArray[np.float64]:
    """IoU of every (true, predicted) component pair, shape ``(n_true, n_pred)``."""
    both = (truth > 0) & (pred > 0)
    pairs = truth[both].astype(np.int64) * (n_pred + 1) + pred[both]
    inter = np.bincount(pairs, minlength=(n_true + 1) * (n_pred + 1))
    inter = inter.reshape(n_true + 1, n_pred + 1)[1:, 1:]
    size_t = np.bincount(truth.ravel(), minlength=n_true + 1)[1:]
    size_p = np.bincount(pred.ravel(), minlength=n_pred + 1)[1:]
    union = size_t[:, None] + size_p[None, :] - inter
    return np.asarray(inter / np.maximum(union, 1), dtype=np.float64)


def lesion_scores(
    prediction: NDArray[Any],
    reference: NDArray[Any],
    *,
    label: int = 1,
    connectivity: int = 26,
    min_iou: float = 0.0,
) -> LesionScores:
    """Lesion sensitivity and false-positive components of one label in one scan.

    Parameters
    ----------
    prediction, reference : (X, Y, Z) ndarray of int or bool
        Predicted and true label maps on one grid.
    label : int
        Label value scored.
    connectivity : {6, 18, 26}
        Component neighbourhood (module notes).
    min_iou : float
        A true lesion is detected by a predicted component with pair IoU above this, in
        ``[0, 1)``; 0 means any overlap.

    Raises
    ------
    GeometryError
        When the maps are not 3D arrays of one shape.
    ConfigError
        When ``connectivity`` or ``min_iou`` is out of range.

    Examples
    --------
    >>> ref = np.zeros((6, 4, 3), np.uint8); ref[0, 0, 0] = ref[4, 2, 1] = 1
    >>> pred = np.zeros_like(ref); pred[0, 0, 0] = pred[2, 2, 2] = 1
    >>> s = lesion_scores(pred, ref)
    >>> s.detected, s.n_false_positive, s.sensitivity
    ((True, False), 1, 0.5)
    """
    if prediction.shape != reference.shape:
        raise GeometryError(
            f"prediction and reference must have one shape, got {prediction.shape} and "
            f"{reference.shape}"
        )
    if not (math.isfinite(min_iou) and 0 <= min_iou < 1):
        raise ConfigError(f"min_iou must be in [0, 1), got {min_iou}")
    truth, n_true = label_components(reference, label=label, connectivity=connectivity)
    pred, n_pred = label_components(prediction, label=label, connectivity=connectivity)
    iou = _pair_iou(truth, n_true, pred, n_pred)
    match = iou > min_iou
    return LesionScores(
        label=int(label),
        connectivity=connectivity,
        min_iou=float(min_iou),
        n_true=n_true,
        n_predicted=n_pred,
        n_false_positive=int((~match.any(axis=0)).sum()),
        detected=tuple(bool(v) for v in np.asarray(match.any(axis=1)).tolist()),
    )


@dataclass(frozen=True, kw_only=True)
class LesionSummary:
    """Lesion-wise scores pooled over scans: lesions detected over all lesions, FP per scan."""

    n_scans: int
    n_true: int
    n_detected: int
    n_false_positive: int

    @property
    def sensitivity(self) -> float:
        """Detected over true lesions of all scans; NaN when there are none."""
        return self.n_detected / self.n_true if self.n_true else float("nan")

    @property
    def false_positives_per_scan(self) -> float:
        """False-positive components per scan."""
        return self.n_false_positive / self.n_scans


def summarize_lesions(scores: Sequence[LesionScores]) -> LesionSummary:
    """Pool per-scan lesion scores (one per scan, all scans included).

    Raises
    ------
    ConfigError
        When ``scores`` is empty.
    """
    if not scores:
        raise ConfigError("scores must hold at least one scan's LesionScores; got none")
    return LesionSummary(
        n_scans=len(scores),
        n_true=sum(s.n_true for s in scores),
        n_detected=sum(s.n_detected for s in scores),
        n_false_positive=sum(s.n_false_positive for s in scores),
    )


@dataclass(frozen=True, kw_only=True)
class LesionComponent:
    """One connected component in world terms (module notes give the box and centre)."""

    index: int
    n_voxels: int
    volume_ml: float
    center_of_mass_mm: Point3
    box: WorldBox
    score: float

    @property
    def equivalent_diameter_mm(self) -> float:
        """Diameter of the sphere of the component's volume, ``(6 V / pi) ** (1/3)``."""
        return float((6.0 * self.volume_ml * 1000.0 / math.pi) ** (1.0 / 3.0))


def lesion_components(
    label_map: NDArray[Any],
    affine: ArrayLike,
    *,
    label: int = 1,
    probabilities: NDArray[Any] | None = None,
    connectivity: int = 26,
) -> tuple[LesionComponent, ...]:
    """Components of ``label`` with world-mm centre of mass, box, volume and score.

    Parameters
    ----------
    label_map : (X, Y, Z) ndarray of int or bool
        Label map on the stored grid.
    affine : (4, 4) array_like
        Voxel-to-world matrix of that grid.
    label : int
        Label value whose components are returned.
    probabilities : (X, Y, Z) ndarray of float or None
        Probability of ``label`` per voxel; a component's score is its mean there. None gives
        every component score 1.0.
    connectivity : {6, 18, 26}
        Component neighbourhood.

    Raises
    ------
    GeometryError
        When the arrays are not 3D of one shape or ``affine`` is not an invertible 4x4 matrix.
    ConfigError
        When ``connectivity`` is invalid or ``probabilities`` holds non-finite values.
    """
    from scipy.ndimage import find_objects

    a = _affine(affine)
    components, _ = label_components(label_map, label=label, connectivity=connectivity)
    if probabilities is not None:
        if probabilities.shape != label_map.shape:
            raise GeometryError(
                f"probabilities must have the label map's shape {label_map.shape}, got "
                f"{probabilities.shape}"
            )
        if not np.all(np.isfinite(probabilities[components > 0])):
            raise ConfigError("probabilities must be finite inside the components; got NaN or inf")
    linear, offset = a[:3, :3], a[:3, 3]
    half_cell = 0.5 * np.abs(linear).sum(axis=1)  # world half-extent of one voxel cell
    voxel_ml = abs(float(np.linalg.det(linear))) / 1000.0
    found: list[LesionComponent] = []
    for index, where in enumerate(find_objects(components), start=1):
        inside = components[where] == index
        ijk = np.argwhere(inside) + [s.start for s in where]
        world = ijk @ linear.T + offset
        score = 1.0 if probabilities is None else float(probabilities[where][inside].mean())
        found.append(
            LesionComponent(
                index=index,
                n_voxels=int(ijk.shape[0]),
                volume_ml=ijk.shape[0] * voxel_ml,
                center_of_mass_mm=_as_point(world.mean(axis=0)),
                box=WorldBox(
                    _as_point(world.min(axis=0) - half_cell),
                    _as_point(world.max(axis=0) + half_cell),
                ),
                score=score,
            )
        )
    return tuple(found)


def _as_point(v: NDArray[np.float64]) -> Point3:
    return (float(v[0]), float(v[1]), float(v[2]))


def detections_from_label_map(
    label_map: NDArray[Any],
    affine: ArrayLike,
    *,
    label: int = 1,
    probabilities: NDArray[Any] | None = None,
    connectivity: int = 26,
) -> tuple[Detection, ...]:
    """Predicted components as detections: centre of mass, world box, score, class ``label``.

    Parameters are those of :func:`lesion_components`.
    """
    return tuple(
        Detection(center_mm=c.center_of_mass_mm, box=c.box, score=c.score, label=int(label))
        for c in lesion_components(
            label_map, affine, label=label, probabilities=probabilities, connectivity=connectivity
        )
    )


def lesions_from_label_map(
    label_map: NDArray[Any], affine: ArrayLike, *, label: int = 1, connectivity: int = 26
) -> tuple[Lesion, ...]:
    """True components as lesions: centre of mass, equivalent-sphere diameter, world box.

    The diameter of the sphere of the component's volume equals a spherical lesion's diameter;
    parameters are those of :func:`lesion_components`.
    """
    return tuple(
        Lesion(
            center_mm=c.center_of_mass_mm,
            diameter_mm=c.equivalent_diameter_mm,
            box=c.box,
            label=int(label),
        )
        for c in lesion_components(label_map, affine, label=label, connectivity=connectivity)
    )


def world_box_to_voxel(
    box: WorldBox, affine: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Voxel-index box (continuous indices, voxel centres at integers) covering a world box.

    The eight corners of ``box`` are mapped through the inverse of ``affine`` and their
    per-axis minimum and maximum returned; on an oblique grid this box is larger than ``box``.

    Raises
    ------
    GeometryError
        When ``affine`` is not an invertible 4x4 matrix.
    """
    inverse = np.linalg.inv(_affine(affine))
    lo, hi = np.asarray(box.min_mm), np.asarray(box.max_mm)
    corners = np.array([[(hi if (k >> a) & 1 else lo)[a] for a in range(3)] for k in range(8)])
    vox = corners @ inverse[:3, :3].T + inverse[:3, 3]
    return vox.min(axis=0), vox.max(axis=0)


def _affine(affine: ArrayLike) -> NDArray[np.float64]:
    a = np.asarray(affine, dtype=np.float64)
    if a.shape != (4, 4) or not np.all(np.isfinite(a)) or abs(np.linalg.det(a[:3, :3])) < 1e-12:
        raise GeometryError(
            f"affine must be an invertible 4x4 voxel-to-world matrix, got shape {a.shape}"
            + (f":\n{a}" if a.size <= 16 else "")
        )
    return a
