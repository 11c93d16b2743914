"""Policies and checks shared by medimg's readers (nibabel, SimpleITK, DICOM).

Each function names the file and what is wrong; see :mod:`medimg.io.volume` for the policies.
"""

from __future__ import annotations

import gzip
import logging
import math
import zlib
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from medimg.errors import GeometryError, ImageReadError, ImageTooLargeError, NonFiniteError
from medimg.io._compressed import compressed_data, verify_stream
from medimg.io.geometry import SHEAR_TOLERANCE_DEG, SourceGeometry, max_shear_deg

logger = logging.getLogger("medimg.io.volume")

NonFinitePolicy = Literal["error", "zero", "keep"]
ShearPolicy = Literal["error", "keep"]


def verify_streams(path: Path, fmt: str, geometry: SourceGeometry) -> None:
    if fmt == "nifti" and not path.name.lower().endswith(".gz"):
        return
    itemsize = np.dtype(geometry.dtype).itemsize
    decoded = math.prod(geometry.shape) * geometry.n_channels * itemsize
    for stream in compressed_data(path, fmt, decoded):
        verify_stream(stream)


def corrupt(path: Path, exc: BaseException) -> ImageReadError:
    text = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, (gzip.BadGzipFile, EOFError, zlib.error)) or "gzip" in text.lower():
        return ImageReadError(
            f"{path}: truncated or corrupt gzip stream ({type(exc).__name__}: {text}); "
            "the file is damaged, re-copy or re-export it"
        )
    return ImageReadError(f"{path}: cannot be read as an image ({type(exc).__name__}: {text})")


def check_dtype(path: Path, dtype: np.dtype[Any]) -> None:
    if dtype.fields is not None:
        names = ",".join(dtype.names or ())
        raise ImageReadError(
            f"{path}: voxel type is a structured dtype ({names}), e.g. RGB; medimg reads one "
            "scalar per voxel: convert the image to grayscale or split its channels"
        )
    if dtype.kind not in "biuf":
        raise ImageReadError(
            f"{path}: voxel dtype {dtype} is not supported (complex or non-numeric)"
        )


def check_memory(path: Path, shape: tuple[int, ...], dtype: np.dtype[Any], max_bytes: int) -> None:
    needed = math.prod(shape) * dtype.itemsize  # exact: NIfTI-2 dims can overflow int64
    if needed > max_bytes:
        raise ImageTooLargeError(
            f"{path}: decoding shape {shape} as {dtype} needs {needed / 1024**3:.2f} GiB, over "
            f"the limit of {max_bytes / 1024**3:.2f} GiB; if the header is right and the memory "
            "is there, raise the limit: max_bytes= in load_volume, or --max-memory-gb in "
            "medimg info and medimg validate"
        )


def check_shear(geometry: SourceGeometry, policy: ShearPolicy) -> None:
    shear_deg = max_shear_deg(geometry.affine)
    if shear_deg > SHEAR_TOLERANCE_DEG and policy == "error":
        raise GeometryError(
            f"{geometry.path}: the affine is sheared: voxel axes deviate {shear_deg:.3f} degrees "
            "from orthogonal; medimg never turns a shear into a rotation silently. Resample the "
            "image onto an orthogonal grid, or load with shear='keep' to keep the affine exactly"
        )


def to_channel_first(
    array: NDArray[Any], geometry: SourceGeometry, ndim: int | None
) -> NDArray[Any]:
    shape = tuple(array.shape)
    while len(shape) > 2 and shape[-1] == 1 and (ndim is None or len(shape) > ndim):
        shape = shape[:-1]
    array = array.reshape(shape, order="A")
    if ndim is not None and len(shape) != ndim:
        what = {2: "2D", 3: "3D"}.get(ndim, f"{ndim}D")
        stored = (
            (*geometry.shape, geometry.n_channels) if geometry.n_channels > 1 else geometry.shape
        )
        raise GeometryError(
            f"{geometry.path}: expected a {what} image, got shape {tuple(stored)} ({len(shape)}D); "
            "pass ndim=None to read the 4th axis as channels, or select one volume"
        )
    if len(shape) == 4:
        return np.moveaxis(array, -1, 0)
    return array[np.newaxis]


def squeeze_geometry(geometry: SourceGeometry, ndim: int) -> SourceGeometry:
    if len(geometry.shape) == ndim:
        return geometry
    return SourceGeometry(
        path=geometry.path,
        format=geometry.format,
        shape=geometry.shape[:ndim],
        affine=geometry.affine,
        dtype=geometry.dtype,
        n_channels=geometry.n_channels,
    )


def apply_nonfinite_policy(
    array: NDArray[Any], path: Path, policy: NonFinitePolicy
) -> NDArray[Any]:
    if array.dtype.kind != "f" or policy == "keep":
        return array
    finite = np.isfinite(array)
    if finite.all():
        return array
    bad = np.argwhere(~finite)
    n_nan = int(np.isnan(array).sum())
    n_inf = len(bad) - n_nan
    if policy == "zero":
        logger.warning("%s: replaced %d NaN and %d infinite voxels by 0", path, n_nan, n_inf)
        return np.where(finite, array, 0).astype(array.dtype)
    first = tuple(int(i) for i in bad[0][1:])
    raise NonFiniteError(
        f"{path}: {n_nan} NaN and {n_inf} infinite voxels (first at voxel {first}); medimg "
        "refuses non-finite intensities by default: fix the file, or load with "
        "nonfinite='zero' to replace them by 0 or nonfinite='keep' to keep them"
    )
