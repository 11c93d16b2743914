r"""Projection radiographs (CR, DX, and other images without a patient position) as 2D volumes.

A projection image has no ImagePositionPatient: its grid is given by the pixel spacing
(PixelSpacing, else ImagerPixelSpacing, the detector plane) and by PatientOrientation, the
anatomical directions of its rows and columns (e.g. ``L\H``: along a row towards the patient's
left, down a column towards the head). The grid is centred on the world origin. Values are
the rescaled stored values; on request the VOI LUT or window of the header is applied, and
MONOCHROME1 images are inverted last so that higher always means brighter (denser).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from medimg.errors import DicomSeriesError
from medimg.io.dicom.assembly import decode_frames, rescale
from medimg.io.dicom.discovery import DicomSeries
from medimg.io.geometry import SourceGeometry, lps_to_ras
from medimg.io.volume import Volume

__all__ = ["VoiPolicy", "load_projection", "projection_affine"]

logger = logging.getLogger(__name__)

VoiPolicy = Literal["none", "voi"]

_LPS_OF = {
    "L": (1.0, 0.0, 0.0),
    "R": (-1.0, 0.0, 0.0),
    "P": (0.0, 1.0, 0.0),
    "A": (0.0, -1.0, 0.0),
    "H": (0.0, 0.0, 1.0),
    "F": (0.0, 0.0, -1.0),
}


def _direction(code: str, where: str) -> NDArray[np.float64]:
    """LPS unit vector of a PatientOrientation value (its first, dominant letter)."""
    letter = code.strip().upper()[:1]
    if letter not in _LPS_OF:
        raise DicomSeriesError(
            f"{where}: PatientOrientation values must start with one of L, R, A, P, H, F, "
            f"got {code!r}; fix the header or read the pixels without geometry"
        )
    return np.asarray(_LPS_OF[letter], dtype=np.float64)


def projection_affine(
    ds: Any, shape: tuple[int, int], spacing: tuple[float, float], where: str
) -> NDArray[np.float64]:
    """Voxel-to-RAS affine of a projection image ``(columns, rows)``, centred on the origin."""
    codes = [str(v) for v in (ds.get("PatientOrientation") or ())]
    if len(codes) != 2:
        codes = ["L", "F"]
        logger.warning(
            "%s: no PatientOrientation; assuming rows run to the patient's left and columns "
            "to the feet (L\\F, the usual PA chest view)",
            where,
        )
    row_dir, col_dir = _direction(codes[0], where), _direction(codes[1], where)
    if abs(row_dir @ col_dir) > 0:
        raise DicomSeriesError(
            f"{where}: PatientOrientation must name two perpendicular directions, got "
            f"{'/'.join(codes)}; fix the header"
        )
    row_mm, col_mm = spacing
    lps = np.eye(4)
    lps[:3, 0] = row_dir * col_mm
    lps[:3, 1] = col_dir * row_mm
    lps[:3, 2] = np.cross(row_dir, col_dir)
    lps[:3, 3] = -(lps[:3, 0] * (shape[0] - 1) + lps[:3, 1] * (shape[1] - 1)) / 2
    return lps_to_ras(lps)


def _apply_voi(values: NDArray[Any], ds: Any, where: str) -> NDArray[Any]:
    from pydicom.pixels.processing import apply_voi_lut

    if "VOILUTSequence" not in ds and "WindowCenter" not in ds:
        raise DicomSeriesError(
            f"{where}: applying the VOI needs a VOI LUT Sequence or WindowCenter/WindowWidth "
            "in the header, found neither; read with voi='none'"
        )
    return np.asarray(apply_voi_lut(values, ds), dtype=np.float32)


def load_projection(series: DicomSeries, *, voi: VoiPolicy = "none") -> Volume:
    """Read one projection image (CR, DX...) as a ``(1, columns, rows)`` volume.

    Parameters
    ----------
    series : DicomSeries
        A candidate whose :attr:`~DicomSeries.is_projection` is true (one image).
    voi : {"none", "voi"}
        ``"voi"`` applies the header's VOI LUT, or its first window (WindowCenter/Width), to
        the rescaled values; ``"none"`` returns the rescaled values.

    Returns
    -------
    Volume
        2D volume; its affine is centred on the world origin (see the module docstring).

    Raises
    ------
    DicomSeriesError
        When the image has no pixel spacing, several frames, an unusable PatientOrientation,
        or no VOI to apply.
    """
    frame = series.frames[0]
    ds = frame.dataset
    where = f"{frame.path}"
    if frame.pixel_spacing_mm is None:
        raise DicomSeriesError(
            f"{where}: a projection image needs PixelSpacing or ImagerPixelSpacing to have a "
            "size in mm, found neither; the image cannot be placed on a grid"
        )
    stored = decode_frames(ds, where)
    if stored.shape[0] != 1:
        raise DicomSeriesError(
            f"{where}: a projection image must have one frame, found {stored.shape[0]}; "
            "multi-frame projections (fluoroscopy) are not supported"
        )
    slope = np.array([frame.rescale_slope])
    intercept = np.array([frame.rescale_intercept])
    values: NDArray[Any] = rescale(stored, slope, intercept)[0]
    if voi == "voi":
        values = _apply_voi(values, ds, where)
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        bits = int(ds.get("BitsStored", 16) or 16)
        signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
        low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
        lo, hi = (float(v) * slope[0] + intercept[0] for v in (low, high))
        inverted = (lo + hi) - values.astype(np.float64)
        values = inverted.astype(values.dtype if values.dtype.kind == "f" else np.int32)
        if values.dtype == np.int32 and 0 <= values.min() and values.max() < 1 << 16:
            values = values.astype(stored.dtype if stored.dtype.kind == "u" else np.int32)
    array = np.ascontiguousarray(values.T)[np.newaxis]
    shape = (int(array.shape[1]), int(array.shape[2]))
    affine = projection_affine(ds, shape, frame.pixel_spacing_mm, where)
    source = SourceGeometry(
        path=Path(series.folder), format="dicom", shape=shape, affine=affine, dtype=stored.dtype.str
    )
    return Volume(array=array, affine=affine, source=source)
