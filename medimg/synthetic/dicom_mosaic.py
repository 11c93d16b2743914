"""Write known 4D arrays as Siemens MOSAIC DICOM files, with the CSA headers a reader needs.

:func:`write_mosaic_series` writes each time point of an ``(T, X, Y, Z)`` array as one mosaic
file: the ``Z`` slices tiled row by row in a ``ceil(sqrt(Z))`` square grid, the mosaic's
ImagePositionPatient placed as the scanner does (the whole grid centred on the first tile's
slice), NumberOfImagesInMosaic and SliceNormalVector in a CSA2 (``SV10``) image header
(0029,1010) and the slice count, normal and image-numbering flag in the protocol of the CSA
series header (0029,1020). Options drop the image header (as anonymised exports do) or number
the tiles against the slice normal (descending), so both paths of the reader are tested.
"""

from __future__ import annotations

import math
import struct
from dataclasses import replace
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike, NDArray

from medimg.errors import ConfigError
from medimg.synthetic.dicom import DicomSeriesSpec, _base_dataset, _ds_number, _stored, _uid
from medimg.typing import PathLike

__all__ = ["csa_header", "write_mosaic_series"]

_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def csa_header(tags: dict[str, list[str]], *, vr: str = "LO") -> bytes:
    """A CSA2 (``SV10``) header block holding ``tags`` (name to text item values).

    Examples
    --------
    >>> from medimg.io.dicom._csa import parse_csa
    >>> parse_csa(csa_header({"NumberOfImagesInMosaic": ["12"]}), "test")
    {'NumberOfImagesInMosaic': ('12',)}
    """
    out = bytearray(b"SV10\x04\x03\x02\x01")
    out += struct.pack("<2I", len(tags), 77)
    for name, values in tags.items():
        out += struct.pack("<64si4s3i", name.encode(), len(values), vr.encode(), 0, len(values), 77)
        for value in values:
            raw = value.encode("latin-1") + b"\0"
            out += struct.pack("<4i", len(raw), len(raw), 77, len(raw))
            out += raw + bytes(-len(raw) % 4)
    return bytes(out)


def _protocol(n: int, normal: NDArray[np.float64], descending: bool) -> str:
    lines = ["### ASCCONV BEGIN ###", f"sSliceArray.lSize = {n}"]
    for axis, value in zip(("Sag", "Cor", "Tra"), normal, strict=True):
        lines.append(f"sSliceArray.asSlice[0].sNormal.d{axis} = {value:.10f}")
    axis = ("Sag", "Cor", "Tra")[int(np.argmax(np.abs(normal)))]
    if descending:
        lines.append(f"sSliceArray.ucImageNumb{axis} = 0x1")
    lines.append("### ASCCONV END ###")
    return "\n".join(lines)


def write_mosaic_series(
    array: ArrayLike,
    affine: NDArray[np.float64],
    out_dir: PathLike,
    spec: DicomSeriesSpec | None = None,
    *,
    image_header: bool = True,
    descending: bool = False,
    same_acquisition_number: bool = False,
) -> list[Path]:
    """Write an ``(T, X, Y, Z)`` array on a voxel-to-RAS grid as ``T`` MOSAIC files.

    Parameters
    ----------
    array : (T, X, Y, Z) or (X, Y, Z) array-like
        Values; ``Z`` slices per time point (the affine's third column is the slice step,
        perpendicular to the slices).
    affine : (4, 4) ndarray
        Voxel-to-RAS affine of each time point.
    out_dir : path-like
        Folder to write into (created); files ``mosaic_001.dcm``...
    spec : DicomSeriesSpec, optional
        Header values (MR by default).
    image_header : bool
        Write the CSA image header (0029,1010); without it the reader falls back on the
        protocol in the series header.
    descending : bool
        Tile ``k`` holds slice ``Z - 1 - k`` (images numbered against the slice normal).
    same_acquisition_number : bool
        Give every file AcquisitionNumber 1 (time then comes from AcquisitionTime).

    Returns
    -------
    list of Path
        One file per time point, in time order.
    """
    spec = spec or DicomSeriesSpec(modality="MR", signed=False, bits_stored=12)
    data = np.asarray(array)
    data = data[np.newaxis] if data.ndim == 3 else data
    if data.ndim != 4:
        raise ConfigError(f"array must be (T, X, Y, Z), got shape {data.shape}")
    n_t, cols, rows, n = data.shape
    lps = _LPS @ np.asarray(affine, dtype=np.float64)
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    u, v = lps[:3, 0] / spacing[0], lps[:3, 1] / spacing[1]
    normal = np.cross(u, v)
    step = float(lps[:3, 2] @ normal)
    if step <= 0 or not np.allclose(lps[:3, 2], step * normal, atol=1e-6):
        raise ConfigError("affine's third column must be a positive step along the slice normal")
    grid = math.ceil(math.sqrt(n))
    order = list(range(n))[::-1] if descending else list(range(n))
    first = lps[:3, 3] + order[0] * lps[:3, 2]  # position of tile 0's slice
    # the mosaic's ImagePositionPatient: the whole R x C grid centred on tile 0's slice
    position = (
        first - u * spacing[0] * (grid - 1) * cols / 2 - v * spacing[1] * (grid - 1) * rows / 2
    )
    direction = -normal if descending else normal
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for t in range(n_t):
        stored = _stored(data[t], spec)
        mosaic = np.zeros((grid * rows, grid * cols), dtype=stored.dtype)
        for k, z in enumerate(order):
            r0, c0 = (k // grid) * rows, (k % grid) * cols
            mosaic[r0 : r0 + rows, c0 : c0 + cols] = stored[:, :, z].T
        ds = _base_dataset(replace(spec), _uid(spec, "mosaic", t))
        ds.FrameOfReferenceUID = _uid(spec, "frame of reference")
        ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND", "MOSAIC"]
        ds.ImageOrientationPatient = [_ds_number(x) for x in (*u, *v)]
        ds.ImagePositionPatient = [_ds_number(x) for x in position]
        ds.PixelSpacing = [_ds_number(spacing[1]), _ds_number(spacing[0])]
        ds.SpacingBetweenSlices = _ds_number(step)
        ds.SliceThickness = _ds_number(step)
        ds.InstanceNumber = t + 1
        ds.AcquisitionNumber = 1 if same_acquisition_number else t + 1
        ds.AcquisitionTime = f"{120000 + 2 * t:06d}.000000"
        ds.Rows, ds.Columns = mosaic.shape
        ds.PixelData = np.ascontiguousarray(mosaic).tobytes()
        if image_header:
            image = {
                "NumberOfImagesInMosaic": [str(n)],
                "SliceNormalVector": [f"{x:.8f}" for x in direction],
            }
            ds.add_new(0x00291010, "OB", csa_header(image))
        ds.add_new(
            0x00291020, "OB", csa_header({"MrPhoenixProtocol": [_protocol(n, normal, descending)]})
        )
        path = out / f"mosaic_{t + 1:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
