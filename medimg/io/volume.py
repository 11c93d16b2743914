"""Reading volumes: :class:`Volume`, :func:`read_header` and :func:`load_volume`.

NIfTI and Analyze files are read with nibabel, NRRD and MetaImage with SimpleITK. We do not go
through ``monai.transforms.LoadImage`` here, for three reasons a test in ``tests/io`` pins:
with neither ``itk`` nor ``pynrrd`` installed it hands ``.nrrd`` files to its DICOM reader (which
fails with a message about a missing DICOM header); it casts every image to float32 and copies it
to C order before we can check the memory limit; and it cannot read a header without the voxels,
which manifest validation needs. The result is handed to MONAI as a ``MetaTensor`` by
:meth:`Volume.to_metatensor`, with the same RAS affine convention MONAI uses.

Policies (each can be changed per call):

* **Non-finite voxels** (NaN, +-inf) are refused with :class:`~medimg.errors.NonFiniteError`
  naming how many there are and where the first one is (``nonfinite="error"``, the default).
  ``nonfinite="zero"`` replaces them with 0 and ``"keep"`` leaves them.
* **Sheared affines** (voxel axes not orthogonal, which NIfTI's sform can store) are refused with
  :class:`~medimg.errors.GeometryError` giving the shear angle (``shear="error"``, the default).
  medimg never silently turns a shear into a rotation. ``shear="keep"`` keeps the stored affine
  exactly as it is; resampling with that affine is then exact, but writing it to NRRD or
  MetaImage (which cannot store a shear) is refused.
* **Memory**: the size of the decoded array is computed from the header and compared with
  ``max_bytes`` before any voxel is read (:class:`~medimg.errors.ImageTooLargeError`).
"""

from __future__ import annotations

import gzip
import logging
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import NDArray

from medimg.errors import (
    GeometryError,
    ImageNotFoundError,
    ImageReadError,
    ImageTooLargeError,
    NonFiniteError,
)
from medimg.io.formats import format_of
from medimg.io.geometry import (
    SHEAR_TOLERANCE_DEG,
    SourceGeometry,
    affine_axcodes,
    affine_spacing,
    lps_to_ras,
    max_shear_deg,
    reorient,
)
from medimg.typing import Affine, PathLike, SpacingMM

if TYPE_CHECKING:
    from monai.data.meta_tensor import MetaTensor

__all__ = ["DEFAULT_MAX_BYTES", "Volume", "load_volume", "read_header"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 16 * 1024**3
"""Default limit on the decoded size of one volume (16 GiB); pass ``max_bytes`` to change it."""

NonFinitePolicy = Literal["error", "zero", "keep"]
ShearPolicy = Literal["error", "keep"]


@dataclass(frozen=True, eq=False)
class Volume:
    """A channel-first image array with its RAS affine and where it came from.

    Attributes
    ----------
    array : (C, X, Y[, Z]) ndarray
        Voxel values in native units (CT in HU), on the grid described by ``affine``.
    affine : (4, 4) ndarray of float64
        Voxel-to-world matrix of ``array``'s spatial axes, RAS+ millimetres.
    source : SourceGeometry
        The file and the grid as stored on disk; unchanged by :meth:`to_ras`, so results can
        be written back onto it.
    """

    array: NDArray[Any]
    affine: Affine
    source: SourceGeometry

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """Shape without the channel axis."""
        return tuple(int(n) for n in self.array.shape[1:])

    @property
    def spacing_mm(self) -> SpacingMM:
        """Voxel size in mm along each axis of :attr:`array`."""
        return affine_spacing(self.affine, len(self.spatial_shape))

    @property
    def axcodes(self) -> tuple[str, ...]:
        """Anatomical direction of each axis of :attr:`array`."""
        return affine_axcodes(self.affine, len(self.spatial_shape))

    def to_ras(self) -> Volume:
        """Return the volume with its axes permuted and flipped to RAS order (no interpolation)."""
        array, affine = reorient(self.array, self.affine)
        return Volume(array=array, affine=affine, source=self.source)

    def to_metatensor(self) -> MetaTensor:
        """The volume as a MONAI ``MetaTensor`` (shares memory when the dtype allows)."""
        import torch
        from monai.data.meta_tensor import MetaTensor

        meta = {"filename_or_obj": str(self.source.path), "original_affine": self.source.affine}
        data = torch.from_numpy(np.ascontiguousarray(self.array))
        return MetaTensor(data, affine=torch.as_tensor(self.affine), meta=meta)


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise ImageNotFoundError(f"{path}: no such file")
    if path.is_dir():
        raise ImageReadError(
            f"{path}: is a folder, not an image file; DICOM series folders are read by "
            "medimg.io.dicom"
        )


def read_header(path: PathLike) -> SourceGeometry:
    """Read only the header of an image file: shape, affine, dtype, channels.

    No voxel data is read, so this is fast even for large files; manifest validation uses it.

    Raises
    ------
    ImageNotFoundError, UnsupportedFormatError, ImageReadError
        When the file is missing, has an unknown suffix, or its header cannot be parsed.
    """
    path = Path(path)
    fmt = format_of(path)
    _check_exists(path)
    if fmt in ("nifti", "analyze"):
        return _nibabel_header(path, fmt)[0]
    return _sitk_header(path, fmt)[0]


def load_volume(
    path: PathLike,
    *,
    ndim: int | None = 3,
    nonfinite: NonFinitePolicy = "error",
    shear: ShearPolicy = "error",
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Volume:
    """Read an image file into a channel-first array with its RAS affine.

    The array keeps the stored voxel order (call :meth:`Volume.to_ras` to reorient) and the
    stored dtype, except that NIfTI scaling (``scl_slope``/``scl_inter``) is applied in float32.

    Parameters
    ----------
    path : path-like
        A ``.nii``, ``.nii.gz``, ``.hdr``/``.img``, ``.nrrd``/``.nhdr`` or ``.mha``/``.mhd`` file.
    ndim : {3, 2, None}
        Spatial dimensions expected. Trailing singleton axes are dropped to reach it; a 4D file
        with more than one volume is refused when 3 is expected. ``None`` accepts 2D, 3D and
        4D files, the 4th axis becoming channels.
    nonfinite : {"error", "zero", "keep"}
        What to do with NaN or infinite voxels (see the module docstring).
    shear : {"error", "keep"}
        What to do with a sheared affine (see the module docstring).
    max_bytes : int
        Largest decoded array size allowed, checked from the header before reading voxels.

    Returns
    -------
    Volume

    Raises
    ------
    ImageNotFoundError, UnsupportedFormatError, ImageReadError, ImageTooLargeError,
    NonFiniteError, GeometryError
        Each names the file and what is wrong.
    """
    path = Path(path)
    fmt = format_of(path)
    _check_exists(path)
    if fmt in ("nifti", "analyze"):
        geometry, array = _read_nibabel(path, fmt, max_bytes)
    else:
        geometry, array = _read_sitk(path, fmt, max_bytes)
    _check_shear(geometry, shear)
    array = _to_channel_first(array, geometry, ndim)
    geometry = _squeeze_geometry(geometry, array.ndim - 1)
    array = _apply_nonfinite_policy(array, path, nonfinite)
    logger.debug("loaded %s: shape %s, %s", path, array.shape, "".join(geometry.axcodes))
    return Volume(array=array, affine=geometry.affine, source=geometry)


# --------------------------------------------------------------------------------------------
# nibabel (NIfTI, Analyze)


def _nibabel_header(path: Path, fmt: str) -> tuple[SourceGeometry, Any]:
    import nibabel as nib
    from nibabel.filebasedimages import ImageFileError

    try:
        img: Any = nib.load(str(path), mmap=False)
        shape = tuple(int(n) for n in img.shape)
        dtype = np.dtype(img.get_data_dtype())
    except (ImageFileError, gzip.BadGzipFile, EOFError, zlib.error, OSError) as exc:
        raise _corrupt(path, exc) from None
    if not shape or (len(shape) > 4 and any(n > 1 for n in shape[4:])):
        raise ImageReadError(f"{path}: unsupported image shape {shape}; expected 2D, 3D or 4D")
    _check_dtype(path, dtype)
    spatial = shape[:3] if len(shape) >= 3 else shape
    n_channels = shape[3] if len(shape) >= 4 else 1
    affine = np.asarray(img.affine, dtype=np.float64)
    geometry = SourceGeometry(
        path=path, format=fmt, shape=spatial, affine=affine, dtype=dtype.str, n_channels=n_channels
    )
    return geometry, img


def _read_nibabel(path: Path, fmt: str, max_bytes: int) -> tuple[SourceGeometry, NDArray[Any]]:
    geometry, img = _nibabel_header(path, fmt)
    proxy = img.dataobj
    slope, inter = _nibabel_scaling(proxy)
    out_dtype = np.dtype(np.float32) if (slope, inter) != (1.0, 0.0) else np.dtype(geometry.dtype)
    _check_memory(path, tuple(img.shape), out_dtype, max_bytes)
    _check_uncompressed_size(path, img)
    try:
        raw = np.asarray(proxy.get_unscaled())
    except (gzip.BadGzipFile, EOFError, zlib.error, OSError, ValueError) as exc:
        raise _corrupt(path, exc) from None
    if out_dtype == raw.dtype:
        return geometry, raw
    data = raw.astype(np.float32)
    data *= np.float32(slope)
    data += np.float32(inter)
    return geometry, data


def _nibabel_scaling(proxy: Any) -> tuple[float, float]:
    slope = float(getattr(proxy, "slope", 1.0))
    inter = float(getattr(proxy, "inter", 0.0))
    if not np.isfinite(slope) or slope == 0:
        slope = 1.0
    if not np.isfinite(inter):
        inter = 0.0
    return slope, inter


def _check_uncompressed_size(path: Path, img: Any) -> None:
    """Refuse an uncompressed file shorter than its header says (nibabel would zero-fill)."""
    if path.name.lower().endswith(".gz"):
        return
    image_file = Path(img.file_map["image"].filename)
    offset = int(getattr(img.dataobj, "offset", 0))
    expected = offset + int(np.prod(img.shape)) * np.dtype(img.get_data_dtype()).itemsize
    actual = image_file.stat().st_size
    if actual < expected:
        raise ImageReadError(
            f"{image_file}: file is truncated: the header promises {expected} bytes "
            f"(offset {offset} + voxels), the file has {actual}"
        )


# --------------------------------------------------------------------------------------------
# SimpleITK (NRRD, MetaImage)


def _sitk_header(path: Path, fmt: str) -> tuple[SourceGeometry, Any]:
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise _corrupt(path, exc) from None
    size = tuple(int(n) for n in reader.GetSize())
    if reader.GetNumberOfComponents() != 1:
        raise ImageReadError(
            f"{path}: pixel type {sitk.GetPixelIDValueAsString(reader.GetPixelID())!r} with "
            f"{reader.GetNumberOfComponents()} components per voxel (RGB or vector) is not "
            "supported; store one scalar per voxel (split channels into separate files)"
        )
    dtype = np.dtype(
        sitk.GetArrayViewFromImage(sitk.Image([1] * len(size), reader.GetPixelID())).dtype
    )
    _check_dtype(path, dtype)
    spatial = size[:3]
    n_channels = size[3] if len(size) == 4 else 1
    if len(size) > 4 or len(size) < 2:
        raise ImageReadError(f"{path}: unsupported image shape {size}; expected 2D, 3D or 4D")
    affine = _sitk_affine(
        reader.GetSpacing(), reader.GetOrigin(), reader.GetDirection(), len(size), path
    )
    geometry = SourceGeometry(
        path=path, format=fmt, shape=spatial, affine=affine, dtype=dtype.str, n_channels=n_channels
    )
    return geometry, reader


def _sitk_affine(
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


def _read_sitk(path: Path, fmt: str, max_bytes: int) -> tuple[SourceGeometry, NDArray[Any]]:
    import SimpleITK as sitk

    geometry, reader = _sitk_header(path, fmt)
    _check_memory(path, (*geometry.shape, geometry.n_channels), np.dtype(geometry.dtype), max_bytes)
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise _corrupt(path, exc) from None
    # ITK arrays are (..., z, y, x); reversing the axes gives (x, y, z, ...) without a copy.
    array = sitk.GetArrayFromImage(image).transpose()
    return geometry, array


# --------------------------------------------------------------------------------------------
# shared checks


def _corrupt(path: Path, exc: BaseException) -> ImageReadError:
    text = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, (gzip.BadGzipFile, EOFError, zlib.error)) or "gzip" in text.lower():
        return ImageReadError(
            f"{path}: truncated or corrupt gzip stream ({type(exc).__name__}: {text}); "
            "the file is damaged, re-copy or re-export it"
        )
    return ImageReadError(f"{path}: cannot be read as an image ({type(exc).__name__}: {text})")


def _check_dtype(path: Path, dtype: np.dtype[Any]) -> None:
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


def _check_memory(path: Path, shape: tuple[int, ...], dtype: np.dtype[Any], max_bytes: int) -> None:
    needed = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if needed > max_bytes:
        raise ImageTooLargeError(
            f"{path}: decoding shape {shape} as {dtype} needs {needed / 1024**3:.2f} GiB, over "
            f"the limit of {max_bytes / 1024**3:.2f} GiB; raise max_bytes (--max-memory-gb) or "
            "process the file window by window"
        )


def _check_shear(geometry: SourceGeometry, policy: ShearPolicy) -> None:
    shear_deg = max_shear_deg(geometry.affine)
    if shear_deg > SHEAR_TOLERANCE_DEG and policy == "error":
        raise GeometryError(
            f"{geometry.path}: the affine is sheared: voxel axes deviate {shear_deg:.3f} degrees "
            "from orthogonal; medimg never turns a shear into a rotation silently. Resample the "
            "image onto an orthogonal grid, or load with shear='keep' to keep the affine exactly"
        )


def _to_channel_first(
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


def _squeeze_geometry(geometry: SourceGeometry, ndim: int) -> SourceGeometry:
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


def _apply_nonfinite_policy(
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
