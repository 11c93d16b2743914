"""One record per 2D image of a DICOM file: the header fields that place it in a volume.

A classic file gives one :class:`DicomFrame`; an enhanced multi-frame object (Enhanced CT/MR,
per-frame functional groups) gives one per frame, each with its own position, orientation,
spacing and rescale from the per-frame or shared functional groups.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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

    @property
    def name(self) -> str:
        """File name, with the frame number for a multi-frame file."""
        if self.frame_index is None:
            return self.path.name
        return f"{self.path.name}[frame {self.frame_index + 1}]"


def _floats(value: Any, n: int) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return out if len(out) == n else None


def _text(value: Any) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, Sequence) and not isinstance(value, str):
        return "\\".join(str(v) for v in value)
    return str(value)


def _number(value: Any, default: float) -> float:
    try:
        return float(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        return default


def _series_uid(ds: Any) -> str:
    """SeriesInstanceUID, or a stand-in built from the series number when it is empty."""
    uid = str(ds.get("SeriesInstanceUID", "") or "")
    if uid:
        return uid
    return (
        f"(no SeriesInstanceUID: study {ds.get('StudyInstanceUID', '')}, "
        f"series number {ds.get('SeriesNumber', '')}, {ds.get('Modality', '')})"
    )


def _spacing(ds: Any) -> tuple[float, float] | None:
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        spacing = _floats(ds.get(keyword), 2)
        if spacing is not None:
            return (spacing[0], spacing[1])
    return None


def _single(ds: Any, path: Path) -> DicomFrame:
    orientation = _floats(ds.get("ImageOrientationPatient"), 6)
    position = _floats(ds.get("ImagePositionPatient"), 3)
    temporal = _text(ds.get("TemporalPositionIdentifier")) or _text(ds.get("TriggerTime"))
    return DicomFrame(
        path=path,
        frame_index=None,
        series_uid=_series_uid(ds),
        rows=int(ds.get("Rows", 0) or 0),
        columns=int(ds.get("Columns", 0) or 0),
        position_lps=(position[0], position[1], position[2]) if position else None,
        orientation=orientation,
        pixel_spacing_mm=_spacing(ds),
        rescale_slope=_number(ds.get("RescaleSlope"), 1.0),
        rescale_intercept=_number(ds.get("RescaleIntercept"), 0.0),
        echo=_text(ds.get("EchoNumbers")) or _text(ds.get("EchoTime")),
        temporal=temporal,
        acquisition=_text(ds.get("AcquisitionNumber")),
        instance=int(_number(ds.get("InstanceNumber"), 0)),
        image_type=tuple(str(v) for v in (ds.get("ImageType") or ())),
        slice_thickness_mm=_number(ds.get("SliceThickness"), 0.0) or None,
        dataset=ds,
    )


def _group(per_frame: Any, shared: Any, keyword: str) -> Any:
    """First item of a functional-group sequence, per-frame first, then shared."""
    for groups in (per_frame, shared):
        items = groups.get(keyword) if groups is not None else None
        if items:
            return items[0]
    return None


def _enhanced(ds: Any, path: Path) -> list[DicomFrame]:
    shared_seq = ds.get("SharedFunctionalGroupsSequence")
    shared = shared_seq[0] if shared_seq else None
    frames: list[DicomFrame] = []
    base = _single(ds, path)
    for index, per_frame in enumerate(ds.PerFrameFunctionalGroupsSequence):
        position = _group(per_frame, shared, "PlanePositionSequence")
        orientation = _group(per_frame, shared, "PlaneOrientationSequence")
        measures = _group(per_frame, shared, "PixelMeasuresSequence")
        scaling = _group(per_frame, shared, "PixelValueTransformationSequence")
        content = _group(per_frame, shared, "FrameContentSequence")
        echo = _group(per_frame, shared, "MREchoSequence")
        pos = _floats(position.get("ImagePositionPatient") if position else None, 3)
        temporal = _text(content.get("TemporalPositionIndex")) if content else ""
        frames.append(
            DicomFrame(
                path=path,
                frame_index=index,
                series_uid=base.series_uid,
                rows=base.rows,
                columns=base.columns,
                position_lps=(pos[0], pos[1], pos[2]) if pos else None,
                orientation=_floats(
                    orientation.get("ImageOrientationPatient") if orientation else None, 6
                ),
                pixel_spacing_mm=_spacing(measures) if measures else base.pixel_spacing_mm,
                rescale_slope=_number(scaling.get("RescaleSlope") if scaling else None, 1.0),
                rescale_intercept=_number(
                    scaling.get("RescaleIntercept") if scaling else None, 0.0
                ),
                echo=_text(echo.get("EffectiveEchoTime")) if echo else "",
                temporal=temporal,
                acquisition=base.acquisition,
                instance=index + 1,
                image_type=base.image_type,
                slice_thickness_mm=(
                    _number(measures.get("SliceThickness"), 0.0) or None
                    if measures
                    else base.slice_thickness_mm
                ),
                dataset=ds,
            )
        )
    return frames


def frames_of(ds: Any, path: Path) -> list[DicomFrame]:
    """The 2D images of one parsed DICOM file, in frame order.

    Parameters
    ----------
    ds : pydicom Dataset
        Header of ``path`` (with or without pixel data).
    path : Path
        The file it was read from.

    Returns
    -------
    list of DicomFrame
        One per frame; a multi-frame file without per-frame geometry gives one record per
        frame with the file's own position (the caller refuses it as a volume).
    """
    if "PerFrameFunctionalGroupsSequence" in ds:
        return _enhanced(ds, path)
    n_frames = int(_number(ds.get("NumberOfFrames"), 1.0))
    frame = _single(ds, path)
    if n_frames <= 1:
        return [frame]
    from dataclasses import replace

    return [replace(frame, frame_index=i, instance=i + 1) for i in range(n_frames)]
