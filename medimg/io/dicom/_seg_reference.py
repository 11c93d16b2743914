"""The source series a SEG or SR refers to, on the grid medimg's DICOM reader gives it.

The reference folder must hold exactly one volume; its slices are sorted and checked by the
reader's own :func:`~medimg.io.dicom.checks.stack_geometry` (the default options, so the grid
is the one :func:`~medimg.io.read_image` returns: ``(columns, rows, slices)`` in the stored
slice order), and slice ``k`` of a label map on that grid is frame ``k`` of the reference.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medimg.errors import DicomSeriesError
from medimg.io.dicom._validity import quiet_pydicom
from medimg.io.dicom.checks import stack_geometry
from medimg.io.dicom.discovery import DicomSeries, scan_dicom_folder
from medimg.io.dicom.options import DicomReadOptions
from medimg.io.geometry import SourceGeometry, lps_to_ras
from medimg.typing import PathLike

__all__ = ["ReferenceSeries", "quiet_highdicom", "reference_series"]

# Type 2 patient/study attributes highdicom copies from the source: present, maybe empty
_TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber",
          "StudyID", "StudyDate", "StudyTime", "ReferringPhysicianName")  # fmt: skip


@dataclass(frozen=True, eq=False)
class ReferenceSeries:
    """A checked source series.

    Attributes
    ----------
    folder : Path
        The reference folder given.
    series : DicomSeries
        Its one volume.
    geometry : SourceGeometry
        The grid :func:`~medimg.io.read_image` gives the folder.
    datasets : list of pydicom Dataset
        Headers (copies) in the stored slice order, Type 2 attributes present; for an
        enhanced multi-frame source, the one file's header.
    frame_order : list of int
        For a multi-frame source, the file frame of each stored slice; empty otherwise.
    """

    folder: Path
    series: DicomSeries
    geometry: SourceGeometry
    datasets: list[Any]
    frame_order: list[int]


@contextmanager
def quiet_highdicom() -> Iterator[None]:
    """Hold highdicom's INFO logging (one line per copied module) while a SEG or SR is built."""
    log = logging.getLogger("highdicom")
    level = log.level
    log.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        log.setLevel(level)


def _header_copy(ds: Any) -> Any:
    out = copy.copy(ds)
    if "SpecificCharacterSet" in out and not out.SpecificCharacterSet:
        del out.SpecificCharacterSet  # empty: the default repertoire, as if absent
    for keyword in _TYPE2:
        if keyword not in out:
            setattr(out, keyword, None)
    return out


def reference_series(folder: PathLike) -> ReferenceSeries:
    """Read and check the headers of the one series in ``folder``.

    Raises
    ------
    DicomSeriesError
        When the folder holds no series, several, a refused one, a projection image, one
        without FrameOfReferenceUID, or one that is not a regular slice stack.
    """
    root = Path(folder)
    scan = scan_dicom_folder(root, pixels=False)
    if len(scan.series) != 1:
        listing = "; ".join(f"{s.label}: {len(s.frames)} images" for s in scan.series[:6])
        raise DicomSeriesError(
            f"{root}: the reference must be one DICOM series, found {len(scan.series)} "
            f"volumes ({listing}); give the folder of the series the labels were made on "
            "(medimg dicom ls lists them)"
        )
    series = scan.series[0]
    series.check_readable()
    if series.is_projection:
        raise DicomSeriesError(
            f"{root}: {series.label}: the reference must be a slice stack with patient "
            "positions, got a projection image; DICOM SEG output needs cross-sectional images"
        )
    if not series.dataset.get("FrameOfReferenceUID"):
        raise DicomSeriesError(
            f"{root}: {series.label}: FrameOfReferenceUID (0020,0052) must be present, it is "
            "missing; a SEG lies in its source's frame of reference: fix the series' headers"
        )
    with quiet_pydicom():
        stack = stack_geometry(series, DicomReadOptions())
    frames = stack.frames
    paths = {f.path for f in frames}
    frame_order: list[int] = []
    if any(f.frame_index is not None for f in frames):
        ds = frames[0].dataset
        if len(paths) != 1 or int(ds.get("NumberOfFrames", 1) or 1) != len(frames):
            raise DicomSeriesError(
                f"{root}: {series.label}: a multi-frame reference must be one file whose "
                f"frames are all of the volume, got {len(paths)} file(s) for {len(frames)} "
                "slices; convert the series to single-frame images"
            )
        frame_order = [int(f.frame_index or 0) for f in frames]
        datasets = [_header_copy(ds)]
    else:
        datasets = [_header_copy(f.dataset) for f in frames]
    geometry = SourceGeometry(
        path=series.folder, format="dicom", shape=stack.shape,
        affine=lps_to_ras(stack.affine_lps), dtype="|u1",
    )  # fmt: skip
    return ReferenceSeries(root, series, geometry, datasets, frame_order)
