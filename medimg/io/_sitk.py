"""SimpleITK reading (NRRD, MetaImage): header text checked before ITK sees it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medimg.errors import GeometryError, ImageReadError
from medimg.io._compressed import metaimage_fields, nrrd_fields
from medimg.io._header_checks import check_metaimage_text, check_nrrd_text, check_sitk_geometry
from medimg.io._policies import check_dtype, check_memory, corrupt, verify_streams
from medimg.io.geometry import SourceGeometry, lps_to_ras
from medimg.typing import Affine


def sitk_header(path: Path, fmt: str) -> tuple[SourceGeometry, Any]:
    import SimpleITK as sitk

    if fmt == "metaimage":  # before ITK: it crashes the process on some headers
        check_metaimage_text(path, metaimage_fields(path)[0])
    elif path.suffix.lower() in (".nrrd", ".nhdr"):
        check_nrrd_text(path, nrrd_fields(path)[0])
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise corrupt(path, exc) from None
    size = tuple(int(n) for n in reader.GetSize())
    if reader.GetNumberOfComponents() != 1:
        raise ImageReadError(
            f"{path}: pixel type {sitk.GetPixelIDValueAsString(reader.GetPixelID())!r} with "
            f"{reader.GetNumberOfComponents()} components per voxel (RGB or vector) is not "
            "supported; store one scalar per voxel (split channels into separate files)"
        )
    if len(size) > 4 or len(size) < 2:
        raise ImageReadError(f"{path}: unsupported image shape {size}; expected 2D, 3D or 4D")
    dtype = np.dtype(
        sitk.GetArrayViewFromImage(sitk.Image([1] * len(size), reader.GetPixelID())).dtype
    )
    check_dtype(path, dtype)
    spatial = size[:3]
    n_channels = size[3] if len(size) == 4 else 1
    check_sitk_geometry(
        path, fmt, size, reader.GetSpacing(), reader.GetOrigin(), reader.GetDirection()
    )
    affine = sitk_affine(
        reader.GetSpacing(), reader.GetOrigin(), reader.GetDirection(), len(size), path
    )
    geometry = SourceGeometry(
        path=path, format=fmt, shape=spatial, affine=affine, dtype=dtype.str, n_channels=n_channels
    )
    return geometry, reader


def sitk_affine(
    spacing: tuple[float, ...],
    origin: tuple[float, ...],
    direction: tuple[float, ...],
    ndim: int,
    path: Path,
) -> Affine:
    """Voxel-to-RAS affine from ITK's LPS spacing/origin/direction of the first 3 axes."""
    direction_m = np.asarray(direction, dtype=np.float64).reshape(ndim, ndim)
    k = min(ndim, 3)
    lps = np.eye(4)
    lps[:k, :k] = direction_m[:k, :k] @ np.diag(np.asarray(spacing[:k], dtype=np.float64))
    lps[:k, 3] = np.asarray(origin[:k], dtype=np.float64)
    if ndim == 4 and not np.allclose(direction_m[:3, 3], 0):
        raise GeometryError(f"{path}: the 4th axis is mixed into the spatial directions")
    return lps_to_ras(lps)


def read_sitk(path: Path, fmt: str, max_bytes: int) -> tuple[SourceGeometry, NDArray[Any]]:
    import SimpleITK as sitk

    geometry, reader = sitk_header(path, fmt)
    check_memory(path, (*geometry.shape, geometry.n_channels), np.dtype(geometry.dtype), max_bytes)
    verify_streams(path, fmt, geometry)  # ITK decodes a flipped bit into wrong voxels silently
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise corrupt(path, exc) from None
    # ITK arrays are (..., z, y, x); reversing the axes gives (x, y, z, ...) without a copy.
    array = sitk.GetArrayFromImage(image).transpose()
    return geometry, array
