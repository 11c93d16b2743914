"""Siemens MOSAIC files: one image that tiles every slice of a volume, unpacked into slices.

A mosaic of ``n`` slices is a ``g x g`` grid of tiles, ``g = ceil(sqrt(n))``, filled row by
row; each tile is ``Rows / g`` x ``Columns / g`` pixels. ``n`` is NumberOfImagesInMosaic in the
CSA image header (0029,1010), else ``sSliceArray.lSize`` of the protocol in the CSA series
header (0029,1020); anonymised exports often keep only the latter.

Geometry (derivation)
---------------------
The scanner writes ImagePositionPatient as if the whole mosaic were one ``R x C`` image (R =
Rows, C = Columns) whose centre is the centre of the first tile's slice. With row cosine
``u`` (direction of increasing column index), column cosine ``v``, column spacing ``dc`` and
row spacing ``dr`` (PixelSpacing = ``dr, dc``), the centre of an ``R x C`` image at ``P`` is
``P + u dc (C - 1)/2 + v dr (R - 1)/2``, and that of an ``r x c`` tile at ``p`` is
``p + u dc (c - 1)/2 + v dr (r - 1)/2``. Equal centres give the first tile's position::

    p = P + u dc (C - c)/2 + v dr (R - r)/2

the correction dcm2niix and nibabel apply (dicom2nifti's ground truth has it too). Tile ``k``
lies at ``p + k s d``, ``s`` the slice spacing (SpacingBetweenSlices, else the distance of the
protocol's first two slices) and ``d`` the direction the tiles advance in: the CSA image
header's SliceNormalVector when present (dcm2niix's rule), else the protocol's slice normal
``sSliceArray.asSlice[0].sNormal``, reversed when the protocol numbers images in reverse
(``sSliceArray.ucImageNumbSag/Cor/Tra`` set for the normal's main axis). ``d`` must be
parallel to ``u x v``; the slices are then stacked, sorted and checked like any other series.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np

from medimg.errors import DicomSeriesError
from medimg.io.dicom._csa import ascconv, parse_csa
from medimg.io.dicom._frames import DicomFrame

__all__ = ["MosaicLayout", "mosaic_frames", "mosaic_layout"]

_IMAGE_CSA = 0x00291010
_SERIES_CSA = 0x00291020
_MAX_SLICES = 4096


class MosaicLayout:
    """How a mosaic file tiles its slices and where they lie.

    Attributes
    ----------
    n_slices : int
        NumberOfImagesInMosaic.
    grid : int
        Tiles per mosaic row and column.
    direction : (3,) ndarray
        Unit vector (LPS) along which tile ``k`` advances, ``+-`` the slice normal.
    step_mm : float
        Distance between neighbouring slices.
    """

    def __init__(self, n_slices: int, grid: int, direction: Any, step_mm: float) -> None:
        self.n_slices = n_slices
        self.grid = grid
        self.direction = np.asarray(direction, dtype=np.float64)
        self.step_mm = step_mm


def _csa(ds: Any, tag: int, what: str) -> dict[str, tuple[str, ...]]:
    element = ds.get(tag)
    if element is None or not element.value:
        return {}
    value = element.value
    if not isinstance(value, (bytes, bytearray)):
        raise DicomSeriesError(f"the {what} ({tag >> 16:04X},{tag & 0xFFFF:04X}) must be bytes")
    return parse_csa(bytes(value), f"{what} ({tag >> 16:04X},{tag & 0xFFFF:04X})")


def _floats(values: tuple[str, ...], n: int) -> tuple[float, ...] | None:
    try:
        out = tuple(float(v) for v in values[:n])
    except ValueError:
        return None
    return out if len(out) == n and all(math.isfinite(v) for v in out) else None


def _protocol_value(protocol: dict[str, str], key: str) -> float | None:
    text = protocol.get(key)
    if text is None:
        return None
    try:
        value = float(int(text, 16)) if text.lower().startswith("0x") else float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _slice_vector(protocol: dict[str, str], index: int, name: str) -> Any:
    keys = [f"sSliceArray.asSlice[{index}].{name}.d{axis}" for axis in ("Sag", "Cor", "Tra")]
    values = [_protocol_value(protocol, key) for key in keys]
    if all(v is None for v in values):
        return None
    return np.array([v or 0.0 for v in values])


def _direction(image: dict[str, tuple[str, ...]], protocol: dict[str, str], normal: Any) -> Any:
    given = _floats(image.get("SliceNormalVector", ()), 3)
    if given is not None:
        d = np.asarray(given)
    else:
        d = _slice_vector(protocol, 0, "sNormal")
        if d is None:
            raise DicomSeriesError(
                "the slice direction is missing: SliceNormalVector is in neither the CSA image "
                "header (0029,1010) nor the protocol (sSliceArray.asSlice[0].sNormal in the "
                "CSA series header (0029,1020))"
            )
        axis = ("Sag", "Cor", "Tra")[int(np.argmax(np.abs(d)))]
        if _protocol_value(protocol, f"sSliceArray.ucImageNumb{axis}"):
            d = -d  # images numbered against the normal: the tiles advance backwards
    length = float(np.linalg.norm(d))
    if length == 0 or abs(float(d @ normal)) / length < 0.99:
        raise DicomSeriesError(
            f"the mosaic's slice normal {np.round(d, 4).tolist()} must be parallel to the "
            "normal of ImageOrientationPatient (0020,0037) "
            f"{np.round(normal, 4).tolist()}"
        )
    return np.sign(float(d @ normal)) * normal  # exactly +-normal: no spurious tilt


def _step(ds: Any, protocol: dict[str, str], normal: Any) -> float:
    try:
        spacing = float(ds.get("SpacingBetweenSlices", 0) or 0)
    except (TypeError, ValueError):
        spacing = 0.0
    if math.isfinite(spacing) and spacing > 0:
        return spacing
    first = _slice_vector(protocol, 0, "sPosition")
    second = _slice_vector(protocol, 1, "sPosition")
    if first is not None and second is not None and abs((second - first) @ normal) > 1e-3:
        return float(abs((second - first) @ normal))
    raise DicomSeriesError(
        "the slice spacing is missing: SpacingBetweenSlices (0018,0088) is absent and the "
        "protocol in (0029,1020) lists fewer than two slice positions"
    )


def mosaic_layout(frame: DicomFrame) -> MosaicLayout:
    """Read the tiling and slice direction of one MOSAIC file from its CSA headers.

    Raises
    ------
    DicomSeriesError
        When a CSA header is damaged, the slice count, direction or spacing is missing, or the
        mosaic does not divide into the tiles (the message names the header and the value).
    """
    ds = frame.dataset
    image = _csa(ds, _IMAGE_CSA, "CSA image header")
    series = _csa(ds, _SERIES_CSA, "CSA series header")
    phoenix = series.get("MrPhoenixProtocol", ())
    protocol = dict(ascconv(phoenix[0], "(0029,1020)")) if phoenix else {}
    count = _floats(image.get("NumberOfImagesInMosaic", ()), 1)
    n = count[0] if count else _protocol_value(protocol, "sSliceArray.lSize")
    if n is None:
        raise DicomSeriesError(
            "NumberOfImagesInMosaic is missing: it is in neither the CSA image header "
            "(0029,1010) nor the protocol (sSliceArray.lSize in the CSA series header "
            "(0029,1020)), so the tiles cannot be counted"
        )
    if not (1 <= n <= _MAX_SLICES and n == int(n)):
        raise DicomSeriesError(
            f"NumberOfImagesInMosaic must be a whole number in 1..{_MAX_SLICES}, got {n:g}"
        )
    grid = math.ceil(math.sqrt(n))
    if frame.rows % grid or frame.columns % grid:
        raise DicomSeriesError(
            f"a mosaic of {int(n)} slices is a {grid} x {grid} grid of tiles, but Rows x "
            f"Columns {frame.rows} x {frame.columns} does not divide into it"
        )
    cosines = np.asarray(frame.orientation, dtype=np.float64)
    normal = np.cross(cosines[:3], cosines[3:])
    return MosaicLayout(
        int(n), grid, _direction(image, protocol, normal), _step(ds, protocol, normal)
    )


def mosaic_frames(frame: DicomFrame) -> list[DicomFrame]:
    """One record per slice of a MOSAIC file (``frame`` describes the whole mosaic).

    A mosaic whose geometry tags are missing is returned as it is (its series is refused for
    the missing tags); one whose CSA headers cannot be used is returned with the reason among
    its problems, so its series is refused naming the file.
    """
    if frame.position_lps is None or frame.orientation is None or not frame.pixel_spacing_mm:
        return [frame]
    try:
        layout = mosaic_layout(frame)
    except DicomSeriesError as exc:
        return [replace(frame, problems=(*frame.problems, f"Siemens MOSAIC: {exc}"))]
    cosines = np.asarray(frame.orientation, dtype=np.float64)
    row_mm, col_mm = frame.pixel_spacing_mm
    r, c = frame.rows // layout.grid, frame.columns // layout.grid
    first = (
        np.asarray(frame.position_lps)
        + cosines[:3] * col_mm * (frame.columns - c) / 2
        + cosines[3:] * row_mm * (frame.rows - r) / 2
    )
    out = []
    for k in range(layout.n_slices):
        x, y, z = (float(v) for v in first + k * layout.step_mm * layout.direction)
        out.append(
            replace(
                frame,
                rows=r,
                columns=c,
                position_lps=(x, y, z),
                tile=((k // layout.grid) * r, (k % layout.grid) * c),
                slice_thickness_mm=frame.slice_thickness_mm or layout.step_mm,
            )
        )
    return out
