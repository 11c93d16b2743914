"""Detection metrics in world millimetres: boxes, lesions, detections, LUNA16 FROC and CPM.

Conventions
-----------
* Every coordinate is in world millimetres of one frame (the frame of the images' affines, the
  same for truth and prediction); nothing here converts between LPS and RAS. Boxes are
  axis-aligned in that world frame (:class:`WorldBox`);
  :func:`medimg.evaluation.lesions.world_box_to_voxel` gives the voxel-index box of a world box
  on a stored grid (oblique grids included).
* **FROC (LUNA16).** The rules of the LUNA16 evaluation script (``noduleCADEvaluationLUNA16.py``,
  read for this module, not copied):

  - a detection *hits* a lesion when its ``center_mm`` lies strictly inside the lesion's sphere:
    squared distance ``< (diameter_mm / 2) ** 2`` (a centre exactly on the radius misses);
  - a lesion hit by several detections counts once, with the highest score among them; the other
    hits are ignored (neither true nor false positives);
  - a detection inside two lesions is a hit for both (the script warns and counts both);
  - a detection inside only *excluded* lesions (LUNA16's "irrelevant findings") is ignored; one
    inside an included and an excluded lesion is a hit; excluded lesions are not counted;
  - every other detection is a false positive; false positives per scan divide by the number of
    scans given, scans without lesions or without detections included.

  The curve is the operating points of all score thresholds (tied scores enter together), from
  ``(0, 0)``; the sensitivity at a rate ``f`` is the curve linearly interpolated at ``f``, taking
  the upper value on a vertical step. This equals LUNA16's ``np.interp`` of scikit-learn's ROC
  points. CPM is the mean sensitivity at 1/8, 1/4, 1/2, 1, 2, 4 and 8 false positives per scan.
  Optional bootstrap intervals resample scans with replacement, as the LUNA16 script does.
* mAP at an IoU threshold and 3D box IoU are in :mod:`medimg.evaluation.average_precision`;
  lesion-wise scores of label maps and their conversion to these types in
  :mod:`medimg.evaluation.lesions`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias

import numpy as np
from numpy.typing import NDArray

from medimg.errors import ConfigError, GeometryError

__all__ = [
    "LUNA16_FP_RATES",
    "Detection",
    "FrocResult",
    "Lesion",
    "ScanFindings",
    "WorldBox",
    "froc",
]

Point3: TypeAlias = tuple[float, float, float]
LUNA16_FP_RATES: tuple[float, ...] = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
"""False positives per scan at which LUNA16 reads sensitivity; CPM is the mean there."""


def _point(value: Sequence[float], name: str) -> Point3:
    try:
        p = () if isinstance(value, str | bytes) else tuple(float(v) for v in value)
    except (TypeError, ValueError):
        p = ()
    if len(p) != 3 or not all(math.isfinite(v) for v in p):
        raise GeometryError(f"{name} must be 3 finite numbers (mm), got {value!r}")
    return (p[0], p[1], p[2])


@dataclass(frozen=True)
class WorldBox:
    """Axis-aligned box in world millimetres, from corner ``min_mm`` to corner ``max_mm``.

    Examples
    --------
    >>> WorldBox.from_center_size((0, 0, 0), (2, 4, 6)).max_mm
    (1.0, 2.0, 3.0)
    """

    min_mm: Point3
    max_mm: Point3

    def __post_init__(self) -> None:
        lo, hi = _point(self.min_mm, "min_mm"), _point(self.max_mm, "max_mm")
        if any(a > b for a, b in zip(lo, hi, strict=True)):
            raise GeometryError(f"box min_mm must be <= max_mm per axis, got {lo} and {hi}")
        object.__setattr__(self, "min_mm", lo)
        object.__setattr__(self, "max_mm", hi)

    @classmethod
    def from_center_size(cls, center_mm: Sequence[float], size_mm: Sequence[float]) -> WorldBox:
        """Box of side lengths ``size_mm`` (each >= 0) centred on ``center_mm``."""
        c, s = _point(center_mm, "center_mm"), _point(size_mm, "size_mm")
        if any(v < 0 for v in s):
            raise GeometryError(f"size_mm must be >= 0 per axis, got {s}")
        lo = (c[0] - s[0] / 2, c[1] - s[1] / 2, c[2] - s[2] / 2)
        return cls(lo, (c[0] + s[0] / 2, c[1] + s[1] / 2, c[2] + s[2] / 2))

    @property
    def center_mm(self) -> Point3:
        """Centre of the box."""
        lo, hi = self.min_mm, self.max_mm
        return ((lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, (lo[2] + hi[2]) / 2)

    @property
    def size_mm(self) -> Point3:
        """Side lengths of the box."""
        lo, hi = self.min_mm, self.max_mm
        return (hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2])


@dataclass(frozen=True, kw_only=True)
class Lesion:
    """A true finding: the sphere used by the FROC hit rule, and the box used by IoU.

    Parameters
    ----------
    center_mm : tuple of 3 float
        Lesion centre in world mm.
    diameter_mm : float
        Diameter (> 0) of the sphere a detection centre must lie strictly inside.
    box : WorldBox or None
        Box for IoU; None means the cube of side ``diameter_mm`` around ``center_mm`` (how
        MONAI's LUNA16 tutorial makes boxes from the LUNA16 annotations).
    label : int
        Class index.
    excluded : bool
        An irrelevant finding (LUNA16's excluded annotations): detections on it are ignored.
    """

    center_mm: Point3
    diameter_mm: float
    box: WorldBox | None = None
    label: int = 1
    excluded: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "center_mm", _point(self.center_mm, "lesion center_mm"))
        if not (math.isfinite(self.diameter_mm) and self.diameter_mm > 0):
            raise GeometryError(
                f"lesion diameter_mm must be finite and > 0, got {self.diameter_mm}"
            )

    @classmethod
    def from_box(cls, box: WorldBox, *, label: int = 1, diameter_mm: float | None = None) -> Lesion:
        """Lesion centred in ``box``; the diameter defaults to the box's shortest side.

        With that default a FROC hit always lies inside the box.
        """
        d = min(box.size_mm) if diameter_mm is None else diameter_mm
        return cls(center_mm=box.center_mm, diameter_mm=d, box=box, label=label)

    def iou_box(self) -> WorldBox:
        """The box used for IoU (``box``, or the cube of side ``diameter_mm``)."""
        if self.box is not None:
            return self.box
        return WorldBox.from_center_size(self.center_mm, (self.diameter_mm,) * 3)


@dataclass(frozen=True, kw_only=True)
class Detection:
    """A predicted finding: the point tested by the FROC rule, its box, score and class.

    ``center_mm`` is the box centre for a detection network, the centre of mass for a
    segmentation component (see :func:`medimg.evaluation.lesions.detections_from_components`).
    """

    center_mm: Point3
    box: WorldBox
    score: float = 1.0
    label: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "center_mm", _point(self.center_mm, "detection center_mm"))
        if not math.isfinite(self.score):
            raise ConfigError(f"detection score must be finite, got {self.score}")

    @classmethod
    def from_box(cls, box: WorldBox, *, score: float = 1.0, label: int = 1) -> Detection:
        """Detection whose FROC point is the centre of ``box``."""
        return cls(center_mm=box.center_mm, box=box, score=score, label=label)


@dataclass(frozen=True, kw_only=True)
class ScanFindings:
    """The true lesions and the detections of one scan."""

    scan_id: str
    lesions: tuple[Lesion, ...] = ()
    detections: tuple[Detection, ...] = ()


@dataclass(frozen=True, kw_only=True)
class FrocResult:
    """LUNA16 FROC of a set of scans (see the module notes for the rules).

    ``sensitivity_ci`` and ``cpm_ci`` are bootstrap percentile intervals, or None when no
    bootstrap was asked for. ``curve_*`` are the operating points, from ``(0, 0)``.
    Sensitivities are NaN when no included lesion exists.
    """

    fp_rates: tuple[float, ...]
    sensitivities: tuple[float, ...]
    cpm: float
    n_scans: int
    n_lesions: int
    n_detected: int
    n_false_positives: int
    n_ignored_excluded: int
    n_ignored_duplicates: int
    curve_fp_per_scan: tuple[float, ...]
    curve_sensitivity: tuple[float, ...]
    sensitivity_ci: tuple[tuple[float, float], ...] | None = None
    cpm_ci: tuple[float, float] | None = None


@dataclass(frozen=True)
class _ScanEntries:
    tp_scores: NDArray[np.float64]  # best score per detected lesion
    fp_scores: NDArray[np.float64]
    n_lesions: int
    n_excluded_hits: int
    n_duplicates: int


def _centres(items: Sequence[Lesion | Detection]) -> NDArray[np.float64]:
    return np.asarray([it.center_mm for it in items], dtype=np.float64).reshape(-1, 3)


def _scan_entries(scan: ScanFindings, label: int | None) -> _ScanEntries:
    lesions = [les for les in scan.lesions if label is None or les.label == label]
    dets = [d for d in scan.detections if label is None or d.label == label]
    scores = np.asarray([d.score for d in dets], dtype=np.float64)
    radius2 = np.asarray([(les.diameter_mm / 2) ** 2 for les in lesions], dtype=np.float64)
    excluded = np.asarray([les.excluded for les in lesions], dtype=bool)
    d2 = ((_centres(dets)[:, None, :] - _centres(lesions)[None, :, :]) ** 2).sum(axis=-1)
    inside = d2 < radius2[None, :]  # strict, as LUNA16: on the radius is a miss
    on_included = inside[:, ~excluded]
    hit_counts = on_included.sum(axis=0)
    tp = [float(scores[on_included[:, j]].max()) for j in np.flatnonzero(hit_counts)]
    hits_any = on_included.any(axis=1)
    only_excluded = inside[:, excluded].any(axis=1) & ~hits_any
    return _ScanEntries(
        tp_scores=np.asarray(tp, dtype=np.float64),
        fp_scores=scores[~hits_any & ~only_excluded],
        n_lesions=int((~excluded).sum()),
        n_excluded_hits=int(only_excluded.sum()),
        n_duplicates=int(np.maximum(hit_counts - 1, 0).sum()),
    )


def _curve(
    entries: Sequence[_ScanEntries], n_scans: int
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    tp = np.sort(np.concatenate([e.tp_scores for e in entries] + [np.empty(0)]))
    fp = np.sort(np.concatenate([e.fp_scores for e in entries] + [np.empty(0)]))
    n_lesions = sum(e.n_lesions for e in entries)
    thresholds = np.unique(np.concatenate([tp, fp]))[::-1]
    # counts of scores >= each threshold, thresholds descending
    n_tp = tp.size - np.searchsorted(tp, thresholds, side="left")
    n_fp = fp.size - np.searchsorted(fp, thresholds, side="left")
    fps = np.concatenate([[0.0], n_fp / n_scans])
    with np.errstate(invalid="ignore", divide="ignore"):
        sens = np.concatenate([[0.0], n_tp / n_lesions]) if n_lesions else np.full(fps.size, np.nan)
    return fps, sens


def _sensitivity_at(
    fps: NDArray[np.float64], sens: NDArray[np.float64], rates: NDArray[np.float64]
) -> NDArray[np.float64]:
    # np.interp takes the last of equal abscissae, i.e. the top of a vertical step (LUNA16).
    return np.asarray(np.interp(rates, fps, sens), dtype=np.float64)


def _check_rates(fp_rates: Sequence[float]) -> NDArray[np.float64]:
    rates = np.asarray(fp_rates, dtype=np.float64)
    if rates.ndim != 1 or rates.size == 0 or not np.all(np.isfinite(rates)) or np.any(rates < 0):
        raise ConfigError(
            f"fp_rates must be one or more finite false-positive rates >= 0 per scan, "
            f"got {tuple(fp_rates)}"
        )
    return rates


def froc(
    scans: Sequence[ScanFindings],
    *,
    fp_rates: Sequence[float] = LUNA16_FP_RATES,
    label: int | None = None,
    n_bootstrap: int = 0,
    confidence: float = 0.95,
    rng: int | np.random.Generator = 0,
) -> FrocResult:
    """FROC and CPM of detections against lesions, by the LUNA16 rules (module notes).

    Parameters
    ----------
    scans : sequence of ScanFindings
        Every evaluated scan, including scans without lesions or detections.
    fp_rates : sequence of float
        False positives per scan at which sensitivity is read; CPM is the mean over them.
    label : int or None
        Only lesions and detections of this class; None (LUNA16) ignores classes.
    n_bootstrap : int
        Bootstrap resamples of the scans for percentile intervals; 0 for none.
    confidence : float
        Coverage of the intervals, in (0, 1).
    rng : int or numpy.random.Generator
        Seed or generator of the bootstrap.

    Returns
    -------
    FrocResult

    Raises
    ------
    ConfigError
        When ``scans`` is empty or a parameter is out of range.

    Examples
    --------
    >>> les = Lesion(center_mm=(0, 0, 0), diameter_mm=10.0)
    >>> hit = Detection.from_box(WorldBox.from_center_size((1, 0, 0), (4, 4, 4)), score=0.9)
    >>> far = Detection.from_box(WorldBox.from_center_size((50, 0, 0), (4, 4, 4)), score=0.5)
    >>> r = froc([ScanFindings(scan_id="a", lesions=(les,), detections=(hit, far))])
    >>> r.sensitivities[:4], r.cpm
    ((1.0, 1.0, 1.0, 1.0), 1.0)
    """
    rates = _check_rates(fp_rates)
    if not scans:
        raise ConfigError("scans must hold at least one scan; got none")
    if n_bootstrap < 0 or not 0 < confidence < 1:
        raise ConfigError(
            f"n_bootstrap must be >= 0 and confidence in (0, 1), got {n_bootstrap} and {confidence}"
        )
    entries = [_scan_entries(s, label) for s in scans]
    fps, sens = _curve(entries, len(scans))
    at = _sensitivity_at(fps, sens, rates)
    sens_ci: tuple[tuple[float, float], ...] | None = None
    cpm_ci: tuple[float, float] | None = None
    if n_bootstrap:
        sens_ci, cpm_ci = _bootstrap(entries, rates, n_bootstrap, confidence, rng)
    return FrocResult(
        fp_rates=tuple(float(r) for r in rates),
        sensitivities=tuple(float(v) for v in at),
        cpm=float(at.mean()),
        n_scans=len(scans),
        n_lesions=sum(e.n_lesions for e in entries),
        n_detected=sum(e.tp_scores.size for e in entries),
        n_false_positives=sum(e.fp_scores.size for e in entries),
        n_ignored_excluded=sum(e.n_excluded_hits for e in entries),
        n_ignored_duplicates=sum(e.n_duplicates for e in entries),
        curve_fp_per_scan=tuple(float(v) for v in fps),
        curve_sensitivity=tuple(float(v) for v in sens),
        sensitivity_ci=sens_ci,
        cpm_ci=cpm_ci,
    )


def _bootstrap(
    entries: Sequence[_ScanEntries],
    rates: NDArray[np.float64],
    n: int,
    confidence: float,
    rng: int | np.random.Generator,
) -> tuple[tuple[tuple[float, float], ...], tuple[float, float]]:
    gen = np.random.default_rng(rng)
    draws = np.empty((n, rates.size))
    for i in range(n):
        pick = gen.integers(0, len(entries), size=len(entries))
        fps, sens = _curve([entries[k] for k in pick], len(entries))
        draws[i] = _sensitivity_at(fps, sens, rates)
    q = [100 * (1 - confidence) / 2, 100 * (1 + confidence) / 2]
    if np.isnan(draws).all():
        nan = (float("nan"), float("nan"))
        return tuple(nan for _ in rates), nan
    lo, hi = np.nanpercentile(draws, q, axis=0)
    cpm_lo, cpm_hi = np.nanpercentile(draws.mean(axis=1), q)
    return tuple(zip(lo.tolist(), hi.tolist(), strict=True)), (float(cpm_lo), float(cpm_hi))
