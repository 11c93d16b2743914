"""Read a DICOM SEG file into a label map on its referenced grid, from the SEG alone.

The grid is resolved from the SEG's own functional groups: the plane orientation, the pixel
spacing and each frame's plane position. Frames are placed along the slice normal exactly as
medimg's DICOM reader stacks the source slices (sorted by position on the normal, the slice
axis the mean step from the first to the last position), so a SEG made on a series lies on
the grid :func:`~medimg.io.read_image` gives that series, without reading the series.
Positions that skip slices (frames without any segment left out) are filled in when the
gaps are whole multiples of the step; a tilted or uneven frame layout is refused. When the
SEG references more source images than its frames span, it cannot say where the missing
slices are: the label map covers the frames' span, with a logged warning.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medimg.errors import ImageReadError
from medimg.io._policies import check_memory
from medimg.io.geometry import SourceGeometry, lps_to_ras

__all__ = ["SEG_SOP_CLASSES", "SegPlanes", "SegmentInfo", "decode_seg", "is_seg_file",
           "read_seg_dataset", "seg_grid", "seg_segments"]  # fmt: skip

logger = logging.getLogger(__name__)

SEG_SOP_CLASSES = frozenset({"1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.66.7"})
"""Segmentation Storage and Label Map Segmentation Storage."""

_POSITION_TOLERANCE_MM = 0.01


@dataclass(frozen=True)
class SegmentInfo:
    """One segment of a SEG (its SegmentSequence item).

    Attributes
    ----------
    number : int
        SegmentNumber: the label value in the label map.
    label : str
        SegmentLabel.
    category, type : str
        Code meanings of the segmented property category and type (type with its modifier,
        e.g. ``"Kidney (Left)"``), each followed by ``[scheme value]``.
    algorithm_type : str
        ``AUTOMATIC``, ``SEMIAUTOMATIC`` or ``MANUAL``.
    algorithm : str
        SegmentAlgorithmName, with the version and parameters when recorded.
    """

    number: int
    label: str
    category: str
    type: str
    algorithm_type: str
    algorithm: str


def is_seg_file(path: Path) -> bool:
    """Whether ``path`` is a DICOM file (with the ``DICM`` preamble) of a SEG SOP class."""
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    if head[128:132] != b"DICM":
        return False
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        meta = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID"])
    except (InvalidDicomError, OSError, ValueError, EOFError, KeyError, TypeError):
        return False
    return str(meta.get("SOPClassUID", "")) in SEG_SOP_CLASSES


def read_seg_dataset(path: Path, *, pixels: bool) -> Any:
    """Parse a SEG file (headers only unless ``pixels``), refusing anything else."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=not pixels)
    except (InvalidDicomError, OSError, ValueError, EOFError, KeyError, TypeError) as exc:
        raise ImageReadError(
            f"{path}: cannot be read as a DICOM SEG ({type(exc).__name__}: {exc}); the file "
            "is damaged, re-copy or re-export it"
        ) from None
    if str(ds.get("SOPClassUID", "")) not in SEG_SOP_CLASSES or "SegmentSequence" not in ds:
        raise ImageReadError(
            f"{path}: must be a DICOM Segmentation (SOPClassUID 1.2.840.10008.5.1.4.1.1.66.4 "
            f"or .66.7 with a SegmentSequence), got SOPClassUID {ds.get('SOPClassUID')}"
        )
    return ds


def _coded(item: Any, keyword: str) -> str:
    seq = item.get(keyword)
    if not seq:
        return ""
    code = seq[0]
    text = f"{code.get('CodeMeaning', '')} [{code.get('CodingSchemeDesignator', '')} "
    text += f"{code.get('CodeValue', '')}]"
    modifier = code.get("SegmentedPropertyTypeModifierCodeSequence")
    if modifier:
        text += f" ({modifier[0].get('CodeMeaning', '')})"
    return text


def seg_segments(ds: Any) -> tuple[SegmentInfo, ...]:
    """The segments a SEG describes, by segment number."""
    out = []
    for item in ds.SegmentSequence:
        algorithm = str(item.get("SegmentAlgorithmName", "") or "")
        for ident in item.get("SegmentationAlgorithmIdentificationSequence", ()) or ():
            version = ident.get("AlgorithmVersion", "")
            params = ident.get("AlgorithmParameters", "")
            algorithm += f" {version}" if version else ""
            algorithm += f" ({params})" if params else ""
        out.append(SegmentInfo(
            number=int(item.SegmentNumber), label=str(item.get("SegmentLabel", "") or ""),
            category=_coded(item, "SegmentedPropertyCategoryCodeSequence"),
            type=_coded(item, "SegmentedPropertyTypeCodeSequence"),
            algorithm_type=str(item.get("SegmentAlgorithmType", "") or ""),
            algorithm=algorithm.strip(),
        ))  # fmt: skip
    return tuple(sorted(out, key=lambda s: s.number))


def _group_value(ds: Any, path: Path, frame: int, group: str, keyword: str) -> Any:
    """A functional-group attribute of a frame (per-frame, else shared)."""
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    shared = ds.get("SharedFunctionalGroupsSequence")
    items = ([per_frame[frame]] if per_frame and frame < len(per_frame) else []) + (
        [shared[0]] if shared else []
    )
    for item in items:
        seq = item.get(group)
        if seq and keyword in seq[0]:
            return seq[0].get(keyword)
    raise ImageReadError(
        f"{path}: frame {frame + 1} has no {group} > {keyword}; a SEG must place every frame "
        "(plane position, orientation, pixel spacing) to be read without its source images"
    )


def _plane(
    ds: Any, path: Path, frame: int, group: str, keyword: str, n: int
) -> NDArray[np.float64]:
    """``n`` finite numbers of a frame's functional-group attribute."""
    value = _group_value(ds, path, frame, group, keyword)
    try:
        out = np.array([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        out = np.array([])
    if out.shape != (n,) or not np.isfinite(out).all():
        raise ImageReadError(
            f"{path}: frame {frame + 1} {keyword} must be {n} finite numbers, got {value!r}"
        )
    return out


def seg_grid(ds: Any, path: Path) -> tuple[SourceGeometry, NDArray[np.int64]]:
    """The SEG's grid (as medimg's reader stacks a series) and each frame's slice index.

    Raises
    ------
    ImageReadError
        When a frame lacks its position, orientation or spacing, orientations differ, or the
        frame positions do not form one stack of evenly spaced, untilted slices.
    """
    n = int(ds.get("NumberOfFrames", 1) or 1)
    cosines = _plane(ds, path, 0, "PlaneOrientationSequence", "ImageOrientationPatient", 6)
    spacing = _plane(ds, path, 0, "PixelMeasuresSequence", "PixelSpacing", 2)
    positions = np.empty((n, 3))
    for i in range(n):
        other = _plane(ds, path, i, "PlaneOrientationSequence", "ImageOrientationPatient", 6)
        if np.abs(other - cosines).max() > 1e-4:
            raise ImageReadError(
                f"{path}: every frame must share one ImageOrientationPatient, frame {i + 1} has "
                f"{other.round(4).tolist()}, frame 1 {cosines.round(4).tolist()}"
            )
        positions[i] = _plane(ds, path, i, "PlanePositionSequence", "ImagePositionPatient", 3)
    normal = np.cross(cosines[:3], cosines[3:])
    proj = positions @ normal
    order = np.argsort(proj, kind="stable")
    levels: list[int] = [int(order[0])]  # first frame at each distinct slice position
    for i in order[1:]:
        if proj[i] - proj[levels[-1]] > _POSITION_TOLERANCE_MM:
            levels.append(int(i))
    level_proj = proj[levels]
    if len(levels) == 1:
        step = float(_optional_step(ds) or 1.0)
        index = np.zeros(n, dtype=np.int64)
        n_slices, axis = 1, normal * step
    else:
        steps = np.diff(level_proj)
        step = float(steps.min())
        ratios = steps / step
        if np.abs(ratios - np.round(ratios)).max() * step > _POSITION_TOLERANCE_MM * 10:
            raise ImageReadError(
                f"{path}: frame positions must be evenly spaced slices, found steps "
                f"{np.round(steps, 3).tolist()} mm along the normal; this SEG's frames do not "
                "form one volume"
            )
        n_slices = round(float(level_proj[-1] - level_proj[0]) / step) + 1
        index = np.round((proj - level_proj[0]) / step).astype(np.int64)
        axis = (positions[levels[-1]] - positions[levels[0]]) / (n_slices - 1)
    drift = positions - positions[levels[0]] - np.outer(proj - level_proj[0], normal)
    if np.abs(drift).max() > _POSITION_TOLERANCE_MM * 10:
        raise ImageReadError(
            f"{path}: frame positions must lie along the slice normal, they drift up to "
            f"{np.abs(drift).max():.3f} mm sideways (a tilted stack); medimg reads SEGs on "
            "untilted grids only"
        )
    affine = np.eye(4)
    affine[:3, 0] = cosines[:3] * spacing[1]
    affine[:3, 1] = cosines[3:] * spacing[0]
    affine[:3, 2] = axis
    affine[:3, 3] = positions[levels[0]]
    dtype = "|u1" if max((s.number for s in seg_segments(ds)), default=0) < 256 else "<u2"
    shape = (int(ds.Columns), int(ds.Rows), n_slices)
    _warn_partial(ds, path, n_slices)
    return SourceGeometry(path, "dicom-seg", shape, lps_to_ras(affine), dtype), index


def _optional_step(ds: Any) -> float | None:
    shared = ds.get("SharedFunctionalGroupsSequence")
    measures = shared[0].get("PixelMeasuresSequence") if shared else None
    if not measures:
        return None
    value = measures[0].get("SpacingBetweenSlices") or measures[0].get("SliceThickness")
    return float(value) if value else None


def _warn_partial(ds: Any, path: Path, n_slices: int) -> None:
    referenced = sum(len(s.get("ReferencedInstanceSequence", ()) or ())
                     for s in ds.get("ReferencedSeriesSequence", ()) or ())  # fmt: skip
    if referenced > n_slices:
        logger.warning(
            "%s: references %d source images but its frames span %d slices (frames without "
            "segments were left out by its writer); the label map covers those %d slices only",
            path, referenced, n_slices, n_slices,
        )  # fmt: skip


@dataclass(frozen=True, eq=False)
class SegPlanes:
    """A decoded SEG: its grid, segments and frames, placed on the grid by :meth:`planes`."""

    geometry: SourceGeometry
    segments: tuple[SegmentInfo, ...]
    frames: NDArray[Any]
    index: NDArray[np.int64]
    numbers: tuple[int | None, ...]
    threshold: int

    def planes(self) -> Iterator[tuple[int, int, NDArray[np.bool_]]]:
        """``(segment number, slice index, (X, Y) mask)`` for every frame and segment in it."""
        for i, number in enumerate(self.numbers):
            pixels = self.frames[i].T
            if number is None:  # LABELMAP: the pixel values are the segment numbers
                for value in np.unique(pixels[pixels > 0]).tolist():
                    yield int(value), int(self.index[i]), pixels == value
            else:
                yield number, int(self.index[i]), pixels >= self.threshold


def decode_seg(path: Path, max_bytes: int) -> SegPlanes:
    """Read a SEG's headers, check the decoded size against ``max_bytes``, decode its frames.

    Raises
    ------
    ImageReadError, ImageTooLargeError
        For a file that is no SEG, an incomplete or inconsistent one, or one too large.
    """
    header = read_seg_dataset(path, pixels=False)
    geometry, index = seg_grid(header, path)
    segments = seg_segments(header)
    n, rows, cols = int(header.get("NumberOfFrames", 1) or 1), int(header.Rows), int(header.Columns)
    planes = n + 2 * geometry.shape[2]  # the frames, the label map, one plane per frame
    check_memory(path, (planes, rows, cols), np.dtype(np.uint16), max_bytes)
    kind = str(header.get("SegmentationType", "BINARY")).upper()
    per_frame = header.get("PerFrameFunctionalGroupsSequence") or ()
    known = {s.number for s in segments}
    numbers: list[int | None] = []
    for i in range(n):
        if kind == "LABELMAP":
            numbers.append(None)
            continue
        ident = per_frame[i].get("SegmentIdentificationSequence") if per_frame else None
        if not ident:
            raise ImageReadError(
                f"{path}: frame {i + 1} names no segment (SegmentIdentificationSequence); "
                "the SEG is incomplete"
            )
        numbers.append(_known(int(ident[0].ReferencedSegmentNumber), known, path))
    ds = read_seg_dataset(path, pixels=True)
    try:
        frames = np.asarray(ds.pixel_array).reshape(n, rows, cols)
    except (ValueError, RuntimeError, NotImplementedError, AttributeError) as exc:
        raise ImageReadError(
            f"{path}: the SEG's pixel data must decode to {n} frames of {rows} x {cols}, got "
            f"{type(exc).__name__}: {exc}; the file is damaged or its transfer syntax needs a "
            "decoder (pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg pylibjpeg-rle)"
        ) from None
    if kind == "LABELMAP":
        for value in np.unique(frames[frames > 0]).tolist():
            _known(int(value), known, path)
    threshold = 1
    if kind == "FRACTIONAL":  # a voxel belongs to a segment from half its maximum on
        threshold = max(1, (int(header.get("MaximumFractionalValue", 255)) + 1) // 2)
    return SegPlanes(geometry, segments, frames, index, tuple(numbers), threshold)


def _known(number: int, known: set[int], path: Path) -> int:
    if number not in known:
        raise ImageReadError(
            f"{path}: a frame holds segment {number}, which SegmentSequence does not describe "
            f"(segments {sorted(known)}); the SEG is inconsistent"
        )
    return number
