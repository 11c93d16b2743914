"""Geometry of a DICOM slice stack, and the checks that refuse a stack that is not a volume.

Slices are sorted by ImagePositionPatient projected on the slice normal (the cross product of
the ImageOrientationPatient row and column cosines), never by InstanceNumber. The stack is then
checked for: one orientation, one image size and pixel spacing, enough slices, no two slices at
the same position, an even slice step (no missing slices) and no gantry tilt. Each failure is a
:class:`~medimg.errors.DicomSeriesError` naming the series, what was found (positions, files,
angles) and how to fix it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medimg.errors import DicomSeriesError
from medimg.io.dicom._frames import DicomFrame
from medimg.io.dicom.discovery import DicomSeries
from medimg.io.dicom.options import DicomReadOptions

__all__ = ["StackGeometry", "stack_geometry"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class StackGeometry:
    """A checked slice stack.

    Attributes
    ----------
    frames : tuple of DicomFrame
        Slices sorted along the slice normal.
    affine_lps : (4, 4) ndarray
        Voxel-to-LPS affine of the stacked array ``(columns, rows, slices)``: column 0 is the
        row cosine times the column spacing, column 1 the column cosine times the row spacing,
        column 2 the mean step between slice positions.
    offsets_mm : (n,) ndarray
        Slice positions projected on the normal, relative to the first slice.
    tilt_deg : float
        Angle between the stacking direction and the slice normal.
    uneven : str
        Why the slice steps are uneven ('' when even).
    """

    frames: tuple[DicomFrame, ...]
    affine_lps: NDArray[np.float64]
    offsets_mm: NDArray[np.float64]
    tilt_deg: float
    uneven: str

    @property
    def shape(self) -> tuple[int, int, int]:
        """Stacked array shape ``(columns, rows, slices)``."""
        first = self.frames[0]
        return (first.columns, first.rows, len(self.frames))

    @property
    def needs_resampling(self) -> bool:
        """Whether the stack is tilted or uneven (only returned when a correction was asked)."""
        return bool(self.uneven) or self.tilt_deg > 0.0


def _fail(series: DicomSeries, what: str, fix: str) -> DicomSeriesError:
    return DicomSeriesError(f"{series.folder}: {series.label}: {what}; {fix}")


def _distinct(values: list[Any], frames: tuple[DicomFrame, ...], limit: int = 4) -> str:
    """``value (n images, e.g. file)`` for each distinct value."""
    seen: dict[Any, list[DicomFrame]] = {}
    for value, frame in zip(values, frames, strict=True):
        seen.setdefault(value, []).append(frame)
    parts = [f"{v} ({len(fs)} images, e.g. {fs[0].name})" for v, fs in list(seen.items())[:limit]]
    return ", ".join(parts)


def _check_uniform(series: DicomSeries, options: DicomReadOptions) -> None:
    frames = series.frames
    sizes = [(f.rows, f.columns) for f in frames]
    if len(set(sizes)) > 1:
        raise _fail(
            series,
            f"all slices must have the same rows x columns, found {_distinct(sizes, frames)}",
            "the series mixes image sizes: select one size (e.g. with the rules' min_slices) "
            "or separate the files",
        )
    orientations = [f.orientation for f in frames]
    reference = np.asarray(orientations[0], dtype=np.float64)
    if any(np.abs(np.asarray(o) - reference).max() > 1e-3 for o in orientations):
        raise _fail(
            series,
            "all slices must share one ImageOrientationPatient, found "
            + _distinct([tuple(round(v, 4) for v in o or ()) for o in orientations], frames),
            "mixed orientations (a localizer inside the series?): remove the other slices",
        )
    spacings = [f.pixel_spacing_mm for f in frames]
    if spacings[0] is None or any(s != spacings[0] for s in spacings):
        raise _fail(
            series,
            f"all slices must have one PixelSpacing, found {_distinct(spacings, frames)}",
            "the series cannot be stacked on one grid",
        )
    if len(frames) < options.min_slices and not _true_single_slice(frames):
        hint = _partial_hint(frames)
        raise _fail(
            series,
            f"a volume needs at least {options.min_slices} slices, found {len(frames)} "
            f"({', '.join(f.name for f in frames[:4])}){hint}",
            "too few slices to check the slice spacing (a localizer or a partial series?); "
            "copy the missing files, or read with min_slices="
            f"{len(frames)} if this really is the whole volume",
        )


def _number_of(frame: DicomFrame, keyword: str) -> int | None:
    try:
        value = frame.dataset.get(keyword)
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _true_single_slice(frames: tuple[DicomFrame, ...]) -> bool:
    """One image that is the whole series (as dcm2niix converts it), not one left of many.

    It is when ImagesInAcquisition (0020,1002) is 1, or, that tag absent, when its
    InstanceNumber is 1 (or absent): an image numbered 112 is one slice of a longer series.
    """
    if len(frames) != 1 or frames[0].frame_index is not None:
        return False
    images = _number_of(frames[0], "ImagesInAcquisition")
    if images is not None:
        return images == 1
    instance = _number_of(frames[0], "InstanceNumber")
    return instance is None or instance <= 1


def _partial_hint(frames: tuple[DicomFrame, ...]) -> str:
    images = _number_of(frames[0], "ImagesInAcquisition")
    instance = _number_of(frames[0], "InstanceNumber")
    if images is not None and images > len(frames):
        return f"; ImagesInAcquisition (0020,1002) says the acquisition has {images}"
    if len(frames) == 1 and instance is not None and instance > 1:
        return f"; its InstanceNumber (0020,0013) is {instance}: one image of a longer series"
    return ""


def _normal(frame: DicomFrame) -> NDArray[np.float64]:
    cosines = np.asarray(frame.orientation, dtype=np.float64)
    return np.asarray(np.cross(cosines[:3], cosines[3:]), dtype=np.float64)


def _check_duplicates(series: DicomSeries, frames: list[DicomFrame], proj: Any) -> None:
    steps = np.diff(proj)
    dup = np.flatnonzero(np.abs(steps) < 1e-3)
    if dup.size == 0:
        return
    k = int(dup[0])
    same = [f.name for f, p in zip(frames, proj, strict=True) if abs(p - proj[k]) < 1e-3]
    position = tuple(round(v, 3) for v in frames[k].position_lps or ())
    at = [f for f, p in zip(frames, proj, strict=True) if abs(p - proj[k]) < 1e-3]
    uids = {str(f.dataset.get("SOPInstanceUID", "") or "") for f in at}
    copies = (
        f"; they share SOPInstanceUID (0008,0018) {uids.pop()}: copies of one image"
        if len(uids) == 1 and "" not in uids
        else ""
    )
    raise _fail(
        series,
        f"each slice position must be unique, found {len(same)} slices at LPS position "
        f"{position} mm ({', '.join(same[:6])}){copies}{_how_they_differ(at)}; "
        f"{int(dup.size)} repeated "
        "position(s) in all",
        "this is not one volume (repeated acquisitions without a temporal position or "
        "acquisition number to separate them, or copied files): remove the duplicates",
    )


_IDENTITY = ("SeriesNumber", "ImageType", "AcquisitionNumber", "AcquisitionTime")


def _how_they_differ(frames: list[DicomFrame]) -> str:
    """``; they differ in ImageType (A vs B)`` for the identity fields that differ ('' if none)."""
    parts = []
    for keyword in _IDENTITY:
        values = []
        for frame in frames:
            raw = frame.dataset.get(keyword)
            many = isinstance(raw, Sequence) and not isinstance(raw, str)
            text = "\\".join(str(v) for v in raw) if many else str(raw)
            text = "(absent)" if raw is None else text
            if text not in values:
                values.append(text)
        if len(values) > 1:
            parts.append(f"{keyword} ({' vs '.join(values[:3])})")
    return f"; they differ in {', '.join(parts)}" if parts else ""


def _uneven_reason(proj: NDArray[np.float64], options: DicomReadOptions) -> str:
    steps = np.diff(proj)
    median = float(np.median(steps))
    tolerance = max(options.spacing_tolerance_mm, 1e-3 * median)
    bad = np.flatnonzero(np.abs(steps - median) > tolerance)
    if bad.size == 0:
        return ""
    details = []
    for k in bad[:5]:
        ratio = steps[k] / median
        what = (
            f"{round(ratio) - 1} missing slice(s)"
            if abs(ratio - round(ratio)) < 0.05 and round(ratio) > 1
            else "uneven step"
        )
        details.append(
            f"{steps[k]:.3f} mm between slices at {proj[k]:.3f} and {proj[k + 1]:.3f} mm ({what})"
        )
    return (
        f"slice steps must be even (median {median:.3f} mm, tolerance {tolerance:.3f} mm), "
        f"found {'; '.join(details)}" + (f" and {bad.size - 5} more" if bad.size > 5 else "")
    )


def stack_geometry(series: DicomSeries, options: DicomReadOptions) -> StackGeometry:
    """Sort and check the slices of ``series``; return the grid they form.

    Parameters
    ----------
    series : DicomSeries
        Slices with ImagePositionPatient and ImageOrientationPatient.
    options : DicomReadOptions
        Tolerances, and whether a tilt or uneven spacing is refused or left for resampling.

    Returns
    -------
    StackGeometry

    Raises
    ------
    DicomSeriesError
        For mixed sizes, orientations or pixel spacings, too few slices, duplicate positions,
        uneven spacing (unless ``uneven_spacing="resample"``) and gantry tilt (unless
        ``gantry_tilt="resample"``).
    """
    _check_uniform(series, options)
    normal = _normal(series.frames[0])
    proj_all = np.array([np.dot(normal, f.position_lps or ()) for f in series.frames])
    order = np.argsort(proj_all, kind="stable")
    frames = [series.frames[i] for i in order]
    proj = proj_all[order]
    _check_duplicates(series, frames, proj)
    first = frames[0]
    cosines = np.asarray(first.orientation, dtype=np.float64)
    row_mm, col_mm = first.pixel_spacing_mm or (1.0, 1.0)
    affine = np.eye(4)
    affine[:3, 0] = cosines[:3] * col_mm
    affine[:3, 1] = cosines[3:] * row_mm
    affine[:3, 3] = first.position_lps or ()
    offsets = proj - proj[0]
    if len(frames) == 1:
        if first.slice_thickness_mm is None:
            # dicom2nifti's convention (its ground truth pins it): a 1 mm slice axis
            logger.warning(
                "%s: %s: single slice without SliceThickness (0018,0050); its slice axis is "
                "given 1 mm (it does not affect the in-plane geometry)",
                series.folder,
                series.label,
            )
        affine[:3, 2] = normal * (first.slice_thickness_mm or 1.0)
        return StackGeometry(tuple(frames), affine, offsets, 0.0, "")
    span = np.asarray(frames[-1].position_lps) - np.asarray(first.position_lps)
    tilt = float(np.degrees(np.arccos(np.clip(abs(span @ normal) / np.linalg.norm(span), 0, 1))))
    affine[:3, 2] = span / (len(frames) - 1)
    uneven = _uneven_reason(offsets, options)
    problems: list[str] = []
    fixes: list[str] = []
    if tilt > options.tilt_tolerance_deg and options.gantry_tilt == "error":
        drift = float(np.linalg.norm(span - (span @ normal) * normal))
        problems.append(
            f"slices must be stacked along their normal, found a gantry tilt of {tilt:.2f} "
            f"degrees (the slice positions drift {drift:.1f} mm sideways across the stack)"
        )
        fixes.append(
            "read with gantry_tilt='resample' to resample onto an orthogonal grid "
            "(medimg convert --resample-tilt)"
        )
    if uneven and options.uneven_spacing == "error":
        problems.append(uneven)
        fixes.append(
            "copy the missing slices, or read with uneven_spacing='resample' to interpolate "
            "onto an even grid (medimg convert --resample-uneven)"
        )
    if problems:
        # every problem at once: a tilted series with gaps names both options in one message
        what = problems[0] if len(problems) == 1 else "; and ".join(problems)
        raise _fail(series, what, "; ".join(fixes) if len(fixes) == 1 else " and ".join(fixes))
    tilt_kept = tilt if tilt > options.tilt_tolerance_deg else 0.0
    return StackGeometry(tuple(frames), affine, offsets, tilt_kept, uneven)
