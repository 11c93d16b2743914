"""One record per 2D image of a DICOM file: the header fields that place it in a volume.

A classic file gives one :class:`DicomFrame`; an enhanced multi-frame object (Enhanced CT/MR,
per-frame functional groups) gives one per frame, each with its own position, orientation,
spacing and rescale from the per-frame or shared functional groups.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from medimg.io.dicom._validity import tag_label

__all__ = ["DicomFrame", "frames_of"]


@dataclass(frozen=True)
class DicomFrame:
    """Where one 2D DICOM image lies and how to scale it.

    Attributes
    ----------
    path : Path
        The file.
    frame_index : int or None
        0-based frame of a multi-frame file, ``None`` for a single-frame file.
    series_uid : str
        SeriesInstanceUID.
    rows, columns : int
        Image size in pixels.
    position_lps : tuple of 3 float or None
        ImagePositionPatient: centre of the first transmitted pixel, LPS mm.
    orientation : tuple of 6 float or None
        ImageOrientationPatient: direction cosines of a row, then of a column.
    pixel_spacing_mm : tuple of 2 float or None
        PixelSpacing (between rows, between columns), or ImagerPixelSpacing for projections.
    rescale_slope, rescale_intercept : float
        Modality LUT: ``value = stored * slope + intercept``.
    echo, temporal, acquisition : str
        Echo number/time, temporal position (or trigger time) and acquisition number, as text
        (empty when absent); used to split a series into volumes.
    instance : int
        InstanceNumber (or the frame number), the acquisition order used as a last resort.
    image_type : tuple of str
        ImageType values (``LOCALIZER``, ``MOSAIC``...).
    slice_thickness_mm : float or None
        SliceThickness.
    dataset : pydicom Dataset
        The parsed header (pixel data deferred or absent); not compared.
    missing : tuple of str
        Geometry tags this image lacks (``"ImagePositionPatient (0020,0032)"``...): a slice
        of a cross-sectional modality without them is refused, never guessed.
    problems : tuple of str
        Header values that are present but unusable (non-numeric, non-finite, non-positive
        spacing, orientation vectors not unit or not orthogonal...) and file-level problems
        from :func:`~medimg.io.dicom._validity.header_problems`; any refuses the series.
    tile : tuple of 2 int or None
        For one slice of a Siemens MOSAIC file: the (row, column) of its first pixel in the
        mosaic (``rows`` x ``columns`` is then the tile's size); ``None`` otherwise.
    acquired : str
        AcquisitionTime (or AcquisitionDateTime), to split repeated positions in time.
    """

    path: Path
    frame_index: int | None
    series_uid: str
    rows: int
    columns: int
    position_lps: tuple[float, float, float] | None
    orientation: tuple[float, ...] | None
    pixel_spacing_mm: tuple[float, float] | None
    rescale_slope: float
    rescale_intercept: float
    echo: str
    temporal: str
    acquisition: str
    instance: int
    image_type: tuple[str, ...]
    slice_thickness_mm: float | None
    dataset: Any = field(compare=False, repr=False)
    missing: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()
    tile: tuple[int, int] | None = None
    acquired: str = ""

    @property
    def name(self) -> str:
        """File name, with the frame (or mosaic tile) number for a multi-image file."""
        if self.tile is not None:
            return f"{self.path.name}[slice {self.instance_in_file + 1}]"
        if self.frame_index is None:
            return self.path.name
        return f"{self.path.name}[frame {self.frame_index + 1}]"

    @property
    def instance_in_file(self) -> int:
        """0-based index of a mosaic tile (row-major in the tile grid), else of the frame."""
        if self.tile is None:
            return self.frame_index or 0
        row0, col0 = self.tile
        per_row = max(1, int(self.dataset.get("Columns", 1) or 1) // max(1, self.columns))
        return (row0 // max(1, self.rows)) * per_row + col0 // max(1, self.columns)


_UNIT_TOLERANCE = 1e-3  # |1 - length| of a direction cosine vector, and |row . column|


def _values(value: Any) -> list[Any]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        return [value]
    return list(value)


def _vector(item: Any, keyword: str, n: int, problems: list[str]) -> tuple[float, ...] | None:
    """The ``n`` finite numbers of ``keyword``; None when absent or (with a problem) invalid."""
    value = item.get(keyword) if item is not None else None
    if value is None or value == "":
        return None
    raw = "\\".join(str(v) for v in _values(value))[:60]
    try:
        out = tuple(float(v) for v in _values(value))
    except (TypeError, ValueError, OverflowError):
        problems.append(f"{tag_label(keyword)} must be {n} numbers, got {raw!r}")
        return None
    if len(out) != n:
        problems.append(f"{tag_label(keyword)} must be {n} numbers, got {len(out)} ({raw!r})")
        return None
    if not all(math.isfinite(v) for v in out):
        problems.append(f"{tag_label(keyword)} must be finite, got {raw!r}")
        return None
    return out


def _orientation(item: Any, problems: list[str]) -> tuple[float, ...] | None:
    """ImageOrientationPatient: two unit, orthogonal direction cosine vectors."""
    cosines = _vector(item, "ImageOrientationPatient", 6, problems)
    if cosines is None:
        return None
    row, col = cosines[:3], cosines[3:]
    lengths = (math.sqrt(sum(v * v for v in row)), math.sqrt(sum(v * v for v in col)))
    if any(abs(length - 1.0) > _UNIT_TOLERANCE for length in lengths):
        problems.append(
            f"{tag_label('ImageOrientationPatient')} must hold two unit vectors (row and "
            f"column direction cosines), got lengths {lengths[0]:.4g} and {lengths[1]:.4g}"
        )
        return None
    dot = sum(a * b for a, b in zip(row, col, strict=True))
    if abs(dot) > _UNIT_TOLERANCE:
        angle = math.degrees(math.acos(max(-1.0, min(1.0, dot))))
        problems.append(
            f"{tag_label('ImageOrientationPatient')} must hold two orthogonal vectors, got "
            f"an angle of {angle:.2f} degrees between row and column"
        )
        return None
    return cosines


def _pixel_spacing(item: Any, keyword: str, problems: list[str]) -> tuple[float, float] | None:
    spacing = _vector(item, keyword, 2, problems)
    if spacing is None:
        return None
    if min(spacing) <= 0:
        problems.append(f"{tag_label(keyword)} must be > 0 mm, got {spacing[0]:g}\\{spacing[1]:g}")
        return None
    return (spacing[0], spacing[1])


def _text(value: Any) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, Sequence) and not isinstance(value, str):
        return "\\".join(str(v) for v in value)
    return str(value)


def _number(value: Any, default: float) -> float:
    """A finite number, or ``default`` when absent or unusable (for ordering fields only)."""
    try:
        number = float(value) if value not in (None, "") else default
    except (TypeError, ValueError, OverflowError):
        return default
    return number if math.isfinite(number) else default


def _rescale(item: Any, problems: list[str]) -> tuple[float, float]:
    """RescaleSlope and RescaleIntercept: finite, the slope non-zero (1 and 0 when absent)."""
    out = []
    for keyword, default in (("RescaleSlope", 1.0), ("RescaleIntercept", 0.0)):
        value = item.get(keyword) if item is not None else None
        if value is None or value == "":
            out.append(default)
            continue
        try:
            number = float(value)
        except (TypeError, ValueError, OverflowError):
            number = math.nan
        if not math.isfinite(number) or (keyword == "RescaleSlope" and number == 0):
            what = "a finite, non-zero number" if keyword == "RescaleSlope" else "finite"
            problems.append(f"{tag_label(keyword)} must be {what}, got {str(value)[:40]!r}")
            number = default
        out.append(number)
    return out[0], out[1]


def _thickness(item: Any) -> float | None:
    value = _number(item.get("SliceThickness") if item is not None else None, 0.0)
    return value if value > 0 else None


def _count(value: Any) -> int:
    number = _number(value, 0.0)
    return int(number) if 0 <= number < 2**31 else 0


def _series_uid(ds: Any) -> str:
    """SeriesInstanceUID, or a stand-in built from the series number when it is empty."""
    uid = str(ds.get("SeriesInstanceUID", "") or "")
    if uid:
        return uid
    return (
        f"(no SeriesInstanceUID: study {ds.get('StudyInstanceUID', '')}, "
        f"series number {ds.get('SeriesNumber', '')}, {ds.get('Modality', '')})"
    )


def _spacing(item: Any, problems: list[str]) -> tuple[float, float] | None:
    """PixelSpacing, else ImagerPixelSpacing (projection images)."""
    spacing = _pixel_spacing(item, "PixelSpacing", problems)
    if spacing is None and "PixelSpacing" not in item:
        spacing = _pixel_spacing(item, "ImagerPixelSpacing", problems)
    return spacing


def _single(ds: Any, path: Path, file_problems: Sequence[str]) -> DicomFrame:
    problems = list(file_problems)
    orientation = _orientation(ds, problems)
    position = _vector(ds, "ImagePositionPatient", 3, problems)
    spacing = _spacing(ds, problems)
    slope, intercept = _rescale(ds, problems)
    temporal = _text(ds.get("TemporalPositionIdentifier")) or _text(ds.get("TriggerTime"))
    missing = tuple(
        tag_label(keyword)
        for keyword, value in (
            ("ImagePositionPatient", position),
            ("ImageOrientationPatient", orientation),
            ("PixelSpacing", spacing if "PixelSpacing" in ds else None),
        )
        if value is None and not ds.get(keyword)
    )
    return DicomFrame(
        path=path,
        frame_index=None,
        series_uid=_series_uid(ds),
        rows=_count(ds.get("Rows")),
        columns=_count(ds.get("Columns")),
        position_lps=(position[0], position[1], position[2]) if position else None,
        orientation=orientation,
        pixel_spacing_mm=spacing,
        rescale_slope=slope,
        rescale_intercept=intercept,
        echo=_text(ds.get("EchoNumbers")) or _text(ds.get("EchoTime")),
        temporal=temporal,
        acquisition=_text(ds.get("AcquisitionNumber")),
        instance=int(_number(ds.get("InstanceNumber"), 0)),
        image_type=tuple(str(v) for v in (ds.get("ImageType") or ())),
        slice_thickness_mm=_thickness(ds),
        dataset=ds,
        missing=missing,
        problems=tuple(problems),
        acquired=_text(ds.get("AcquisitionTime")) or _text(ds.get("AcquisitionDateTime")),
    )


def _group(per_frame: Any, shared: Any, keyword: str) -> Any:
    """First item of a functional-group sequence, per-frame first, then shared."""
    for groups in (per_frame, shared):
        items = groups.get(keyword) if groups is not None else None
        if items:
            return items[0]
    return None


def _enhanced_frame(base: DicomFrame, index: int, per_frame: Any, shared: Any) -> DicomFrame:
    position = _group(per_frame, shared, "PlanePositionSequence")
    orientation = _group(per_frame, shared, "PlaneOrientationSequence")
    measures = _group(per_frame, shared, "PixelMeasuresSequence")
    scaling = _group(per_frame, shared, "PixelValueTransformationSequence")
    content = _group(per_frame, shared, "FrameContentSequence")
    echo = _group(per_frame, shared, "MREchoSequence")
    problems: list[str] = []
    pos = _vector(position, "ImagePositionPatient", 3, problems)
    cosines = _orientation(orientation, problems)
    spacing = _pixel_spacing(measures, "PixelSpacing", problems) if measures else None
    slope, intercept = _rescale(scaling, problems)
    missing = tuple(
        tag_label(keyword)
        for keyword, value, item in (
            ("ImagePositionPatient", pos, position),
            ("ImageOrientationPatient", cosines, orientation),
            ("PixelSpacing", spacing, measures),
        )
        if value is None and not (item is not None and item.get(keyword))
    )
    return DicomFrame(
        path=base.path,
        frame_index=index,
        series_uid=base.series_uid,
        rows=base.rows,
        columns=base.columns,
        position_lps=(pos[0], pos[1], pos[2]) if pos else None,
        orientation=cosines,
        pixel_spacing_mm=spacing,
        rescale_slope=slope,
        rescale_intercept=intercept,
        echo=_text(echo.get("EffectiveEchoTime")) if echo else "",
        temporal=_text(content.get("TemporalPositionIndex")) if content else "",
        acquisition=base.acquisition,
        instance=index + 1,
        image_type=base.image_type,
        slice_thickness_mm=_thickness(measures) if measures else base.slice_thickness_mm,
        dataset=base.dataset,
        missing=missing,
        problems=tuple(f"frame {index + 1}: {p}" for p in problems) + base.problems,
    )


def _enhanced(ds: Any, path: Path, file_problems: Sequence[str]) -> list[DicomFrame]:
    shared_seq = ds.get("SharedFunctionalGroupsSequence")
    shared = shared_seq[0] if shared_seq else None
    base = _single(ds, path, file_problems)
    base = replace(base, problems=tuple(file_problems))
    return [
        _enhanced_frame(base, index, per_frame, shared)
        for index, per_frame in enumerate(ds.PerFrameFunctionalGroupsSequence)
    ]


def frames_of(ds: Any, path: Path, file_problems: Sequence[str] = ()) -> list[DicomFrame]:
    """The 2D images of one parsed DICOM file, in frame order.

    Parameters
    ----------
    ds : pydicom Dataset
        Header of ``path`` (with or without pixel data).
    path : Path
        The file it was read from.
    file_problems : sequence of str
        What :func:`~medimg.io.dicom._validity.header_problems` found; when there is any, the
        file gives one record only (its series is refused, and a corrupt NumberOfFrames must
        not make millions of records).

    Returns
    -------
    list of DicomFrame
        One per frame; a multi-frame file without per-frame geometry gives one record per
        frame with the file's own position (the caller refuses it as a volume).
    """
    if file_problems:
        return [_single(ds, path, file_problems)]
    if "PerFrameFunctionalGroupsSequence" in ds:
        return _enhanced(ds, path, file_problems)
    n_frames = int(_number(ds.get("NumberOfFrames"), 1.0))
    frame = _single(ds, path, file_problems)
    if n_frames <= 1 and "MOSAIC" in (t.upper() for t in frame.image_type):
        from medimg.io.dicom._mosaic import mosaic_frames

        return mosaic_frames(frame)
    if n_frames <= 1:
        return [frame]
    return [replace(frame, frame_index=i, instance=i + 1) for i in range(n_frames)]
