"""Writing volumes atomically onto a known grid: :func:`save_volume`."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from medimg.errors import GeometryError, ImageWriteError, OutputExistsError
from medimg.io.formats import format_of
from medimg.io.geometry import SHEAR_TOLERANCE_DEG, SourceGeometry, max_shear_deg
from medimg.io.volume import Volume
from medimg.typing import PathLike

__all__ = ["atomic_path", "save_volume"]

logger = logging.getLogger(__name__)

_WRITABLE = ("nifti", "nrrd", "metaimage")


@contextmanager
def atomic_path(path: PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    The temporary name keeps ``path``'s suffix so format-by-suffix writers work. A reader never
    sees a half-written file, and a failed write leaves any previous file untouched.

    Raises
    ------
    OutputExistsError
        When ``path`` exists and ``overwrite`` is false, or is a folder (never replaced by a
        file, even with ``overwrite``).
    """
    path = Path(path)
    if path.is_dir():
        raise OutputExistsError(
            f"{path}: is a folder; give a file path for the output (a folder is never replaced "
            "by a file, even with --force)"
        )
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path}: exists; pass overwrite=True (--force) to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes) or path.suffix
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_volume(
    array: ArrayLike,
    path: PathLike,
    *,
    like: Volume | SourceGeometry | NDArray[np.float64],
    overwrite: bool = False,
) -> Path:
    """Write a channel-first array onto a given grid, atomically.

    Parameters
    ----------
    array : (C, X, Y[, Z]) or (X, Y[, Z]) array-like
        Values to write; numpy arrays and torch tensors are accepted. Without ``like``'s shape
        known (a bare affine), a 3-axis array is read as (X, Y, Z) and a 2-axis one as (X, Y).
        Written in its own dtype, except: ``bool`` as ``uint8``; 64-bit integers as ``int32``
        when the values fit (many viewers reject 64-bit), else as they are (NIfTI datatype
        1024/1280); ``float16``, which no output format holds, as ``float32`` (exact; logged).
        Other voxel types (complex, ``longdouble``, strings, objects, records) raise.
    path : path-like
        Output file; the format follows the suffix (``.nii.gz``, ``.nii``, ``.nrrd``, ``.mha``).
    like : Volume, SourceGeometry or (4, 4) ndarray
        The grid to write on. A :class:`Volume` gives its current grid (``array`` must have the
        volume's spatial shape); a :class:`SourceGeometry` gives the grid as stored on disk; a
        bare matrix is taken as the voxel-to-RAS affine.
    overwrite : bool
        Replace an existing file. Without it an existing ``path`` raises.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    OutputExistsError, GeometryError, UnsupportedFormatError
        ``GeometryError`` also when the affine is not finite or its voxel axes are degenerate
        (no file could describe that grid).
    ImageWriteError
        When the voxel type cannot be written (see ``array``).
    """
    path = Path(path)
    fmt = format_of(path)
    if fmt not in _WRITABLE:
        raise GeometryError(f"{path}: medimg writes {', '.join(_WRITABLE)}, not {fmt}")
    affine, expected = _grid_of(like)
    _check_affine(affine, path)
    data = _prepare(array, expected, path)
    spatial = data.shape[1:]
    if expected is not None and tuple(spatial) != tuple(expected):
        raise GeometryError(
            f"{path}: array spatial shape {tuple(spatial)} does not match the target grid "
            f"{tuple(expected)}; bring the array onto that grid first"
        )
    with atomic_path(path, overwrite=overwrite) as tmp:
        if fmt == "nifti":
            _write_nifti(data, affine, tmp)
        else:
            _write_sitk(data, affine, tmp)
    logger.debug("wrote %s: shape %s", path, data.shape)
    return path


def _check_affine(affine: NDArray[np.float64], path: Path) -> None:
    linear = affine[:3, :3]
    if not np.isfinite(affine).all():
        raise GeometryError(
            f"{path}: the target grid's affine must be finite, got {affine.tolist()}; "
            f"fix the grid it came from"
        )
    if abs(np.linalg.det(linear)) <= 1e-12 * max(np.abs(linear).max(), 1e-300) ** 3:
        raise GeometryError(
            f"{path}: the target grid's affine must have independent, non-zero voxel axes, "
            f"got columns {linear.T.round(6).tolist()} (singular); fix the grid it came from"
        )


def _prepare(array: ArrayLike, expected: tuple[int, ...] | None, path: Path) -> NDArray[Any]:
    if hasattr(array, "detach"):  # torch tensor or MetaTensor
        array = array.detach().cpu().numpy()
    data = np.asarray(array)
    # Without a channel axis the array has exactly the grid's shape (or, with a bare affine,
    # is taken as (X, Y, Z) or (X, Y)).
    if (expected is not None and data.shape == tuple(expected)) or (
        expected is None and data.ndim in (2, 3)
    ):
        data = data[np.newaxis]
    if data.ndim not in (3, 4):
        raise GeometryError(f"array must be (C, X, Y[, Z]) or (X, Y[, Z]), got shape {data.shape}")
    return _storable(data, path)


def _storable(data: NDArray[Any], path: Path) -> NDArray[Any]:
    """``data`` in a voxel type every output format holds and medimg reads back (see above)."""
    if data.dtype.kind in "biuf" and not data.dtype.isnative:
        data = data.astype(data.dtype.newbyteorder("="))
    dtype = data.dtype
    if dtype == np.bool_:
        return data.astype(np.uint8)
    if dtype.kind in "iu" and dtype.itemsize == 8:
        low, high = np.iinfo(np.int32).min, np.iinfo(np.int32).max
        if data.size == 0 or (data.min() >= low and data.max() <= high):
            return data.astype(np.int32)
        logger.info("%s: values beyond int32, written as %s", path, dtype)
        return data
    if dtype == np.float16:
        logger.info("%s: float16 voxels written as float32 (no output format holds float16)", path)
        return data.astype(np.float32)
    if dtype.kind in "iu" or dtype in (np.float32, np.float64):
        return data
    fixes = {"c": "take np.abs(a) or a.real", "f": "convert it, e.g. a.astype(np.float64)"}
    raise ImageWriteError(
        f"{path}: voxels must be bool, integers or float16/32/64 (what medimg reads back), got "
        f"dtype {dtype}; {fixes.get(dtype.kind, 'convert it to numbers first')}"
    )


def _grid_of(
    like: Volume | SourceGeometry | NDArray[np.float64],
) -> tuple[NDArray[np.float64], tuple[int, ...] | None]:
    if isinstance(like, Volume):
        return like.affine, like.spatial_shape
    if isinstance(like, SourceGeometry):
        return like.affine, like.shape
    affine = np.asarray(like, dtype=np.float64)
    if affine.shape != (4, 4):
        raise GeometryError(
            f"like must be a Volume, SourceGeometry or 4x4 affine, got shape {affine.shape}"
        )
    return affine, None


def _write_nifti(data: NDArray[Any], affine: NDArray[np.float64], tmp: Path) -> None:
    import nibabel as nib

    spatial = np.moveaxis(data, 0, -1) if data.shape[0] > 1 else data[0]
    # An explicit dtype: nibabel refuses int64 data without one (its datatype 1024 is valid)
    image = nib.Nifti1Image(spatial, affine, dtype=spatial.dtype)
    image.header.set_xyzt_units("mm", "sec")
    if max_shear_deg(affine) > SHEAR_TOLERANCE_DEG:
        image.set_qform(None, code=0)  # a quaternion cannot hold a shear; sform keeps it exactly
    else:
        image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    nib.save(image, str(tmp))


def _write_sitk(data: NDArray[Any], affine: NDArray[np.float64], tmp: Path) -> None:
    import SimpleITK as sitk

    if data.shape[0] != 1:
        raise GeometryError(
            f"{tmp.name}: NRRD/MetaImage output takes one channel, got {data.shape[0]}"
        )
    if max_shear_deg(affine) > SHEAR_TOLERANCE_DEG:
        raise GeometryError("NRRD/MetaImage cannot store a sheared affine; write NIfTI instead")
    ndim = data.ndim - 1
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine
    cols = lps[:3, :ndim]
    spacing = np.linalg.norm(cols, axis=0)
    direction = cols / spacing
    if ndim == 2:
        direction = direction[:2]
    image = sitk.GetImageFromArray(np.ascontiguousarray(data[0].transpose()))
    image.SetSpacing([float(s) for s in spacing])
    image.SetOrigin([float(v) for v in lps[:ndim, 3]])
    image.SetDirection([float(v) for v in direction.ravel()])
    sitk.WriteImage(image, str(tmp), useCompression=True)
