"""Entry points: read the one volume a folder's rules select, or only its header."""

from __future__ import annotations

import logging

import numpy as np

from medimg.errors import DicomSeriesError
from medimg.io.dicom._validity import quiet_pydicom
from medimg.io.dicom.assembly import assemble_volume
from medimg.io.dicom.checks import stack_geometry
from medimg.io.dicom.discovery import DicomSeries, scan_dicom_folder
from medimg.io.dicom.options import DicomReadOptions
from medimg.io.dicom.selection import SelectionRules, select_series
from medimg.io.dicom.xray import VoiPolicy, load_projection
from medimg.io.geometry import SourceGeometry, lps_to_ras
from medimg.io.volume import Volume
from medimg.typing import PathLike

__all__ = ["load_dicom_series", "read_dicom_header", "read_series"]

logger = logging.getLogger(__name__)


def read_series(
    series: DicomSeries, options: DicomReadOptions | None = None, *, voi: VoiPolicy = "none"
) -> Volume:
    """Read one candidate: a 3D volume for a slice stack, a 2D one for a projection image.

    Raises
    ------
    DicomSeriesError
        When the series is refused (:attr:`~medimg.io.dicom.DicomSeries.refused`) or fails
        its checks; ImageTooLargeError when it would not fit the memory limit.
    """
    series.check_readable()
    with quiet_pydicom():
        if series.is_projection:
            return load_projection(series, voi=voi)
        return assemble_volume(series, options)


def load_dicom_series(
    folder: PathLike,
    *,
    rules: SelectionRules | None = None,
    options: DicomReadOptions | None = None,
    voi: VoiPolicy = "none",
) -> Volume:
    """Read the DICOM volume in ``folder`` that ``rules`` select.

    Parameters
    ----------
    folder : path-like
        Folder of DICOM files (recursive; a DICOMDIR is used when present).
    rules : SelectionRules, optional
        Which series to take when the folder holds several; without rules the folder must
        hold exactly one volume.
    options : DicomReadOptions, optional
        Checks and corrections (tilt, uneven spacing, minimum slices, memory limit).
    voi : {"none", "voi"}
        For projection images (CR/DX): apply the header's VOI LUT or window.

    Returns
    -------
    Volume
        ``(1, X, Y, Z)`` (or ``(1, X, Y)`` for a projection) in the stored slice order, with
        its voxel-to-RAS affine; call :meth:`~medimg.io.Volume.to_ras` to reorient.

    Raises
    ------
    DicomSeriesError
        When nothing or more than one volume matches, or the chosen series is refused or not
        a correct volume (each message names the folder, the series and how to fix it; a
        refusal also names the file and the tag).
    """
    scan = scan_dicom_folder(folder, pixels=True)
    series = select_series(scan.series, rules, where=str(folder))
    return read_series(series, options, voi=voi)


def read_dicom_header(
    folder: PathLike,
    rules: SelectionRules | None = None,
    options: DicomReadOptions | None = None,
) -> SourceGeometry:
    """The grid of the volume :func:`load_dicom_series` would return, from headers only.

    No pixel data is read (``stop_before_pixels``), but every geometric check runs, so a
    folder that passes here fails later only on pixel decoding.

    Raises
    ------
    DicomSeriesError
        As :func:`load_dicom_series`.
    """
    options = options or DicomReadOptions()
    scan = scan_dicom_folder(folder, pixels=False)
    series = select_series(scan.series, rules, where=str(folder))
    series.check_readable()
    ds = series.dataset
    bits = int(ds.get("BitsAllocated", 16) or 16)
    kind = "i" if int(ds.get("PixelRepresentation", 0) or 0) else "u"
    dtype = np.dtype(f"<{kind}{max(bits, 8) // 8}").str
    if series.is_projection:
        frame = series.frames[0]
        spacing = frame.pixel_spacing_mm
        if spacing is None:
            raise DicomSeriesError(
                f"{series.frames[0].path}: a projection image needs PixelSpacing or "
                "ImagerPixelSpacing to have a size in mm, found neither"
            )
        from medimg.io.dicom.xray import projection_affine

        shape2 = (frame.columns, frame.rows)
        affine = projection_affine(ds, shape2, spacing, str(frame.path))
        return SourceGeometry(series.folder, "dicom", shape2, affine, dtype)
    geometry = stack_geometry(series, options)
    shape, affine_lps = geometry.shape, geometry.affine_lps
    if geometry.needs_resampling:
        from medimg.io.dicom.resample import resampled_grid

        shape, affine_lps = resampled_grid(geometry)
    return SourceGeometry(series.folder, "dicom", tuple(shape), lps_to_ras(affine_lps), dtype)
