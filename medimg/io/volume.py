"""Reading volumes: :class:`Volume`, :func:`read_header` and :func:`load_volume`.

NIfTI and Analyze files are read with nibabel (``_nibabel.py``), NRRD and MetaImage with
SimpleITK (``_sitk.py``); the policies below are shared with the DICOM reader
(``_policies.py``), and :func:`medimg.io.read_image` reads either a file or a DICOM series
folder under them. We do not go
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

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from medimg.errors import ImageNotFoundError, ImageReadError
from medimg.io._nibabel import (
    check_uncompressed_size,
    nibabel_header,
    nibabel_scaling,
    read_nibabel,
    scaled_chunk,
    voxel_chunks,
)
from medimg.io._policies import (
    NonFinitePolicy,
    ShearPolicy,
    apply_nonfinite_policy,
    check_memory,
    check_shear,
    squeeze_geometry,
    to_channel_first,
    verify_streams,
)
from medimg.io._sitk import read_sitk, sitk_header
from medimg.io.formats import SUPPORTED_SUFFIXES, format_of
from medimg.io.geometry import SourceGeometry, affine_axcodes, affine_spacing, reorient
from medimg.typing import Affine, PathLike, SpacingMM

if TYPE_CHECKING:
    from monai.data.meta_tensor import MetaTensor

__all__ = [
    "DEFAULT_MAX_BYTES",
    "NonFinitePolicy",
    "ShearPolicy",
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
            "medimg.io.read_image (or medimg.io.dicom; medimg dicom ls, medimg convert)"
        )
    if path.is_file() and not any(path.name.lower().endswith(s) for s in SUPPORTED_SUFFIXES):
        from medimg.io.dicom.seg import is_seg_file

        if is_seg_file(path):  # a DICOM SEG: its label map (medimg.io.dicom.seg)
            return "dicom-seg"
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
    if fmt == "dicom-seg":
        from medimg.io.dicom.seg import read_seg_header

        return read_seg_header(path)
    if fmt in ("nifti", "analyze"):
        geometry = nibabel_header(path, fmt)[0]
    else:
        geometry = sitk_header(path, fmt)[0]
    if verify:
        verify_streams(path, fmt, geometry)
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
        A ``.nii``, ``.nii.gz``, ``.hdr``/``.img``, ``.nrrd``/``.nhdr`` or ``.mha``/``.mhd`` file,
        or a DICOM SEG file (its label map on the referenced grid: :mod:`medimg.io.dicom.seg`).
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
    if fmt == "dicom-seg":
        from medimg.io.dicom.seg import load_seg_volume

        return load_seg_volume(path, ndim=ndim, max_bytes=limit)
    if fmt in ("nifti", "analyze"):
        geometry, array = read_nibabel(path, fmt, limit)
    else:
        geometry, array = read_sitk(path, fmt, limit)
    check_shear(geometry, shear)
    array = to_channel_first(array, geometry, ndim)
    geometry = squeeze_geometry(geometry, array.ndim - 1)
    array = apply_nonfinite_policy(array, path, nonfinite)
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
    geometry, img = nibabel_header(path, fmt)
    slope, inter = nibabel_scaling(img.dataobj)
    scaled = (slope, inter) != (1.0, 0.0)
    out_dtype = np.dtype(np.float32) if scaled else np.dtype(geometry.dtype)
    check_memory(path, tuple(img.shape), out_dtype, limit)
    check_uncompressed_size(path, img)
    chunks = voxel_chunks(path, img)
    if scaled:
        chunks = (scaled_chunk(c, slope, inter) for c in chunks)
    return _finite_range(chunks)


def _finite_range(chunks: Iterable[NDArray[Any]]) -> tuple[float, float]:
    lo, hi = math.inf, -math.inf
    for chunk in chunks:
        values = chunk[np.isfinite(chunk)] if chunk.dtype.kind == "f" else chunk
        if values.size:
            lo, hi = min(lo, float(values.min())), max(hi, float(values.max()))
    if lo > hi:
        return math.nan, math.nan
    return lo, hi
