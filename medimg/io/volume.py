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
  ``max_bytes`` before any voxel is read (:class:`~medimg.errors.ImageTooLargeError`). The
  default, :func:`default_max_bytes`, is computed at each call: 80% of the memory available
  then (``MemAvailable``), at most :data:`DEFAULT_MAX_BYTES` (16 GiB).
* **Compressed data is verified**: every ``.nii.gz`` is decoded by medimg in chunks with its
  gzip CRC-32 and length checked (nibabel would stop before the trailer); compressed NRRD and
  MetaImage streams are verified before ITK decodes them (ITK returns wrong voxels from a
  flipped bit). A failure is an :class:`~medimg.errors.ImageReadError` saying "CRC check
  failed" or "length mismatch" and that the file is damaged. :func:`read_header` reads no
  voxels and so cannot see such damage unless called with ``verify=True``
  (:func:`verify_compressed` does the check alone).
* **Header fields are checked** before nibabel or ITK interprets them (datatype, dims,
  vox_offset, scl_slope/scl_inter, xform codes, a non-finite or singular sform/qform/pixdim
  affine, NRRD/MetaImage spacing, origin, direction and sizes); each failure names the field.
"""

from __future__ import annotations

import gzip
import logging
import math
import zlib
from collections.abc import Iterable, Iterator
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
from medimg.io._compressed import (
    compressed_data,
    iter_decompressed,
    iter_file,
    metaimage_fields,
    nrrd_fields,
    read_decompressed_range,
    region_pieces,
    verify_stream,
)
from medimg.io._header_checks import (
    affine_field,
    check_affine,
    check_metaimage_text,
    check_nifti_fields,
    check_nrrd_text,
    check_sitk_geometry,
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

__all__ = [
    "DEFAULT_MAX_BYTES",
    "Volume",
    "default_max_bytes",
    "intensity_range",
    "load_volume",
    "read_header",
    "verify_compressed",
]

logger = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 16 * 1024**3
"""Ceiling of the default limit on the decoded size of one volume (16 GiB)."""

_AVAILABLE_FRACTION = 0.8


def default_max_bytes() -> int:
    """The default decode limit now: 80% of available memory, at most 16 GiB.

    Available memory is ``MemAvailable`` from ``/proc/meminfo`` (Linux), else the free physical
    pages from ``os.sysconf``; where neither exists the limit is :data:`DEFAULT_MAX_BYTES`.
    It is computed at each call, never at import, so it follows the machine's load.

    Examples
    --------
    >>> 0 < default_max_bytes() <= DEFAULT_MAX_BYTES
    True
    """
    available = _available_memory_bytes()
    if available is None:
        return DEFAULT_MAX_BYTES
    return max(1, min(DEFAULT_MAX_BYTES, int(available * _AVAILABLE_FRACTION)))


def _available_memory_bytes() -> int | None:
    import os

    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


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


def _format_of_file(path: Path) -> str:
    """The file's format, after checking that it is an existing file (a folder is named so)."""
    if path.is_dir():
        raise ImageReadError(
            f"{path}: is a folder, not an image file; DICOM series folders are read by "
            "medimg.io.dicom (medimg dicom ls, medimg convert)"
        )
    fmt = format_of(path)
    if not path.exists():
        raise ImageNotFoundError(f"{path}: no such file")
    return fmt


def read_header(path: PathLike, *, verify: bool = False) -> SourceGeometry:
    """Read only the header of an image file: shape, affine, dtype, channels.

    No voxel data is read, so this is fast even for large files; manifest validation uses it.
    A header read cannot see damage in a compressed body: pass ``verify=True`` to also decode
    the body in chunks (bounded memory, one pass) and check its CRC and length.

    Parameters
    ----------
    path : path-like
        An image file (see :func:`load_volume`).
    verify : bool
        Also run :func:`verify_compressed` on the file.

    Raises
    ------
    ImageNotFoundError, UnsupportedFormatError, ImageReadError, GeometryError
        When the file is missing, has an unknown suffix, its header cannot be parsed or holds
        an invalid field (named in the message), or (``verify=True``) its body is damaged.
    """
    path = Path(path)
    fmt = _format_of_file(path)
    if fmt in ("nifti", "analyze"):
        geometry = _nibabel_header(path, fmt)[0]
    else:
        geometry = _sitk_header(path, fmt)[0]
    if verify:
        _verify_streams(path, fmt, geometry)
    return geometry


def verify_compressed(path: PathLike) -> None:
    """Check every compressed stream of an image file to its end (CRC-32/Adler-32, length).

    Covers ``.nii.gz`` (gzip, concatenated members allowed), NRRD ``encoding: gzip``/``bzip2``
    (attached or detached data file) and MetaImage ``CompressedData = True`` (zlib, decoded
    length checked against ``DimSize``). Uncompressed files pass at once. Memory use is a few
    MiB however large the file decodes; time is one decompression pass.

    Raises
    ------
    ImageNotFoundError, UnsupportedFormatError, ImageReadError, GeometryError
        As :func:`read_header`; the body's damage as ``ImageReadError`` ("CRC check failed",
        "length mismatch", "truncated"), naming the file.
    """
    read_header(path, verify=True)


def _verify_streams(path: Path, fmt: str, geometry: SourceGeometry) -> None:
    if fmt == "nifti" and not path.name.lower().endswith(".gz"):
        return
    itemsize = np.dtype(geometry.dtype).itemsize
    decoded = math.prod(geometry.shape) * geometry.n_channels * itemsize
    for stream in compressed_data(path, fmt, decoded):
        verify_stream(stream)


def load_volume(
    path: PathLike,
    *,
    ndim: int | None = 3,
    nonfinite: NonFinitePolicy = "error",
    shear: ShearPolicy = "error",
    max_bytes: int | None = None,
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
    max_bytes : int or None
        Largest decoded array size allowed in bytes, checked from the header before reading
        voxels; ``None`` means :func:`default_max_bytes` (computed now).

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
    fmt = _format_of_file(path)
    limit = default_max_bytes() if max_bytes is None else max_bytes
    if fmt in ("nifti", "analyze"):
        geometry, array = _read_nibabel(path, fmt, limit)
    else:
        geometry, array = _read_sitk(path, fmt, limit)
    _check_shear(geometry, shear)
    array = _to_channel_first(array, geometry, ndim)
    geometry = _squeeze_geometry(geometry, array.ndim - 1)
    array = _apply_nonfinite_policy(array, path, nonfinite)
    logger.debug("loaded %s: shape %s, %s", path, array.shape, "".join(geometry.axcodes))
    return Volume(array=array, affine=geometry.affine, source=geometry)


def intensity_range(path: PathLike, *, max_bytes: int | None = None) -> tuple[float, float]:
    """Smallest and largest finite voxel value of an image file (after NIfTI scaling).

    NIfTI and Analyze voxels stream through in chunks of a few MiB, so the memory used does not
    grow with the image (a 1 MB ``.nii.gz`` that decodes to gigabytes costs megabytes); the
    gzip trailer is verified on the way. NRRD and MetaImage are loaded whole, as
    :func:`load_volume` would. ``max_bytes`` is checked against the decoded size either way,
    so the command line's ``--max-memory-gb`` means the same for every command.

    Parameters
    ----------
    path : path-like
        An image file.
    max_bytes : int or None
        Largest decoded size allowed; ``None`` means :func:`default_max_bytes`.

    Returns
    -------
    (float, float)
        ``(min, max)`` over finite voxels; ``(nan, nan)`` when no voxel is finite.

    Raises
    ------
    ImageNotFoundError, UnsupportedFormatError, ImageReadError, ImageTooLargeError,
    GeometryError
        As :func:`load_volume`.
    """
    path = Path(path)
    fmt = _format_of_file(path)
    limit = default_max_bytes() if max_bytes is None else max_bytes
    if fmt not in ("nifti", "analyze"):
        array = load_volume(path, ndim=None, nonfinite="keep", shear="keep", max_bytes=limit).array
        return _finite_range([array])
    geometry, img = _nibabel_header(path, fmt)
    slope, inter = _nibabel_scaling(img.dataobj)
    scaled = (slope, inter) != (1.0, 0.0)
    out_dtype = np.dtype(np.float32) if scaled else np.dtype(geometry.dtype)
    _check_memory(path, tuple(img.shape), out_dtype, limit)
    _check_uncompressed_size(path, img)
    chunks = _voxel_chunks(path, img)
    if scaled:
        chunks = (_scaled(c, slope, inter) for c in chunks)
    return _finite_range(chunks)


def _scaled(chunk: NDArray[Any], slope: float, inter: float) -> NDArray[np.float32]:
    """NIfTI scaling in float32 exactly as :func:`load_volume` applies it."""
    data = chunk.astype(np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        data *= np.float32(slope)
        data += np.float32(inter)
    return data


def _voxel_chunks(path: Path, img: Any) -> Iterator[NDArray[Any]]:
    """The stored voxels of a nibabel image as flat arrays of a few MiB each."""
    proxy = img.dataobj
    dtype = np.dtype(proxy.dtype)
    offset = int(proxy.offset)
    nbytes = math.prod(int(n) for n in proxy.shape) * dtype.itemsize
    if path.name.lower().endswith(".gz"):
        (stream,) = compressed_data(path, "nifti", None)
        pieces = region_pieces(iter_decompressed(stream), offset, nbytes)
    else:
        image_file = Path(img.file_map["image"].filename)
        pieces = region_pieces(iter_file(image_file, 0), offset, nbytes)
    carry = b""
    seen = 0
    for piece in pieces:
        data = carry + piece
        usable = len(data) - len(data) % dtype.itemsize
        carry = data[usable:]
        seen += usable
        yield np.frombuffer(data[:usable], dtype=dtype)
    if seen < nbytes:
        raise ImageReadError(
            f"{path}: file is truncated: the header promises {offset + nbytes} bytes (offset "
            f"{offset} + voxels), the data holds {offset + seen}; the file is damaged: re-copy "
            "or re-export it"
        )


def _finite_range(chunks: Iterable[NDArray[Any]]) -> tuple[float, float]:
    lo, hi = math.inf, -math.inf
    for chunk in chunks:
        values = chunk[np.isfinite(chunk)] if chunk.dtype.kind == "f" else chunk
        if values.size:
            lo, hi = min(lo, float(values.min())), max(hi, float(values.max()))
    if lo > hi:
        return math.nan, math.nan
    return lo, hi


# --------------------------------------------------------------------------------------------
# nibabel (NIfTI, Analyze)


def _nibabel_header(path: Path, fmt: str) -> tuple[SourceGeometry, Any]:
    import nibabel as nib
    from nibabel.filebasedimages import ImageFileError
    from nibabel.spatialimages import HeaderDataError

    check_nifti_fields(path)
    try:
        img: Any = nib.load(str(path), mmap=False)
        shape = tuple(int(n) for n in img.shape)
        dtype = np.dtype(img.get_data_dtype())
        affine = np.asarray(img.affine, dtype=np.float64)
    except (ImageFileError, gzip.BadGzipFile, EOFError, zlib.error, OSError) as exc:
        for stream in compressed_data(path, fmt, None):
            verify_stream(stream)  # a damaged small .nii.gz fails nibabel's sniffing: say why
        raise _corrupt(path, exc) from None
    except (HeaderDataError, ValueError, OverflowError) as exc:
        raise ImageReadError(
            f"{path}: invalid header ({type(exc).__name__}: {exc}); the header is damaged or "
            "was written by a faulty tool: re-export the image"
        ) from None
    if not shape or (len(shape) > 4 and any(n > 1 for n in shape[4:])):
        raise ImageReadError(f"{path}: unsupported image shape {shape}; expected 2D, 3D or 4D")
    _check_dtype(path, dtype)
    spatial = shape[:3] if len(shape) >= 3 else shape
    n_channels = shape[3] if len(shape) >= 4 else 1
    check_affine(path, affine, affine_field(img.header), len(spatial))
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
    if path.name.lower().endswith(".gz"):
        raw = _read_gzip_voxels(path, proxy)
    else:
        try:
            raw = np.asarray(proxy.get_unscaled())
        except (OSError, ValueError) as exc:
            raise _corrupt(path, exc) from None
    if out_dtype == raw.dtype:
        return geometry, raw
    data = raw.astype(np.float32)
    with np.errstate(over="ignore", invalid="ignore"):  # overflow -> inf, refused by the policy
        data *= np.float32(slope)
        data += np.float32(inter)
    return geometry, data


def _read_gzip_voxels(path: Path, proxy: Any) -> NDArray[Any]:
    """Voxels of a ``.nii.gz``, decoded once into their final buffer, the trailer verified."""
    (stream,) = compressed_data(path, "nifti", None)
    dtype = np.dtype(proxy.dtype)
    shape = tuple(int(n) for n in proxy.shape)
    buffer = read_decompressed_range(stream, int(proxy.offset), math.prod(shape) * dtype.itemsize)
    return np.ndarray(shape, dtype=dtype, buffer=buffer, order=proxy.order)


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
    expected = offset + math.prod(img.shape) * np.dtype(img.get_data_dtype()).itemsize
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

    if fmt == "metaimage":  # before ITK: it crashes the process on some headers
        check_metaimage_text(path, metaimage_fields(path)[0])
    elif path.suffix.lower() in (".nrrd", ".nhdr"):
        check_nrrd_text(path, nrrd_fields(path)[0])
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
    if len(size) > 4 or len(size) < 2:
        raise ImageReadError(f"{path}: unsupported image shape {size}; expected 2D, 3D or 4D")
    dtype = np.dtype(
        sitk.GetArrayViewFromImage(sitk.Image([1] * len(size), reader.GetPixelID())).dtype
    )
    _check_dtype(path, dtype)
    spatial = size[:3]
    n_channels = size[3] if len(size) == 4 else 1
    check_sitk_geometry(
        path, fmt, size, reader.GetSpacing(), reader.GetOrigin(), reader.GetDirection()
    )
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
    _verify_streams(path, fmt, geometry)  # ITK decodes a flipped bit into wrong voxels silently
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
    needed = math.prod(shape) * dtype.itemsize  # exact: NIfTI-2 dims can overflow int64
    if needed > max_bytes:
        raise ImageTooLargeError(
            f"{path}: decoding shape {shape} as {dtype} needs {needed / 1024**3:.2f} GiB, over "
            f"the limit of {max_bytes / 1024**3:.2f} GiB; if the header is right and the memory "
            "is there, raise the limit: max_bytes= in load_volume, or --max-memory-gb in "
            "medimg info and medimg validate"
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
