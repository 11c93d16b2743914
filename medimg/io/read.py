"""The one read path: :func:`read_image` and :func:`read_image_header` for files and DICOM folders.

Manifest checks, the dataset fingerprint, the preprocessing chains' loader and inference all
read a case image through these two functions, so a path that one of them accepts the others
accept too. A path is read as

* an **image file** (NIfTI, Analyze, NRRD, MetaImage) by :func:`~medimg.io.load_volume` and
  :func:`~medimg.io.read_header`;
* a **DICOM series folder** by :mod:`medimg.io.dicom` (:func:`~medimg.io.dicom.read_series`
  and :func:`~medimg.io.dicom.read_dicom_header`), with the same policies: non-finite voxels,
  shear, dimensionality and the decode limit (:func:`~medimg.io.default_max_bytes` when none
  is given, checked from the headers before any pixel is decoded). The volume holds the
  rescaled values (the stored integers when the rescale is integral, else float32),
  ``(1, columns, rows, slices)`` in the stored slice order, and its
  :class:`~medimg.io.SourceGeometry` (format ``"dicom"``, path the series folder) is the
  series' grid, so a prediction written onto it as NIfTI (:func:`~medimg.io.save_volume`
  with ``like=source``) lies on the DICOM slices.

A folder must hold one volume. When it holds several (series, or the parts of a 4D series),
the read is refused with the list of candidates unless ``rules``
(:class:`~medimg.io.dicom.SelectionRules`) choose one; a manifest cannot carry rules, so its
case must name a folder with one series (move the others out, or convert the chosen one
with ``medimg convert``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from medimg.errors import DicomSeriesError, GeometryError
from medimg.io._policies import NonFinitePolicy, ShearPolicy, apply_nonfinite_policy, check_shear
from medimg.io.geometry import SourceGeometry
from medimg.io.volume import Volume, default_max_bytes, load_volume, read_header
from medimg.typing import PathLike

if TYPE_CHECKING:
    from medimg.io.dicom import DicomScan, DicomSeries, SelectionRules

__all__ = ["read_image", "read_image_header"]

logger = logging.getLogger(__name__)

_DIMS = {2: "2D", 3: "3D"}


def read_image(
    path: PathLike,
    *,
    ndim: int | None = 3,
    nonfinite: NonFinitePolicy = "error",
    shear: ShearPolicy = "error",
    max_bytes: int | None = None,
    rules: SelectionRules | None = None,
) -> Volume:
    """Read an image file or a DICOM series folder into a channel-first array.

    Parameters
    ----------
    path : path-like
        An image file (see :func:`~medimg.io.load_volume`) or a folder of DICOM files.
    ndim : {3, 2, None}
        Spatial dimensions expected (a DICOM slice stack is 3D, a projection image 2D).
    nonfinite : {"error", "zero", "keep"}
        What to do with NaN or infinite voxels.
    shear : {"error", "keep"}
        What to do with a sheared affine.
    max_bytes : int or None
        Largest decoded size in bytes, checked before voxels are read; ``None`` means
        :func:`~medimg.io.default_max_bytes` (computed now).
    rules : SelectionRules, optional
        For a folder holding several volumes: which one to read.

    Returns
    -------
    Volume
        Stored voxel order, voxel-to-RAS affine, and the source grid.

    Raises
    ------
    ImageNotFoundError, UnsupportedFormatError, ImageReadError, ImageTooLargeError,
    NonFiniteError, GeometryError, DicomSeriesError
        Each names the file or folder and what is wrong.
    """
    path = Path(path)
    limit = default_max_bytes() if max_bytes is None else max_bytes
    if not path.is_dir():
        return load_volume(path, ndim=ndim, nonfinite=nonfinite, shear=shear, max_bytes=limit)
    from medimg.io.dicom import DicomReadOptions, read_series, scan_dicom_folder

    series = _one_series(scan_dicom_folder(path, pixels=True), path, rules)
    volume = read_series(series, DicomReadOptions(max_bytes=limit))
    check_shear(volume.source, shear)
    _check_ndim(path, volume.source, ndim)
    array = apply_nonfinite_policy(volume.array, path, nonfinite)
    logger.debug("loaded %s: %s -> %s", path, series.label, array.shape)
    return Volume(array=array, affine=volume.affine, source=volume.source)


def read_image_header(
    path: PathLike, *, verify: bool = False, rules: SelectionRules | None = None
) -> SourceGeometry:
    """The grid :func:`read_image` would return, without reading voxels.

    For a DICOM folder every header is read and every geometric check of the series runs
    (a folder that passes fails later only on pixel decoding); ``dtype`` is the stored pixel
    type (the volume's may differ: see the module docstring).

    Parameters
    ----------
    path : path-like
        An image file or a folder of DICOM files.
    verify : bool
        For a file, also check its compressed body (:func:`~medimg.io.verify_compressed`).
    rules : SelectionRules, optional
        For a folder holding several volumes: which one.

    Returns
    -------
    SourceGeometry

    Raises
    ------
    ImageNotFoundError, UnsupportedFormatError, ImageReadError, GeometryError,
    DicomSeriesError
        As :func:`read_image`, for what headers show.
    """
    path = Path(path)
    if not path.is_dir():
        return read_header(path, verify=verify)
    from medimg.io.dicom import read_dicom_header, scan_dicom_folder

    _one_series(scan_dicom_folder(path, pixels=False), path, rules)  # the refusal, with the list
    return read_dicom_header(path, rules)


def _one_series(scan: DicomScan, folder: Path, rules: SelectionRules | None) -> DicomSeries:
    """The volume ``rules`` pick; without rules the folder must hold exactly one."""
    from medimg.io.dicom import select_series

    if rules is None and len(scan.series) > 1:
        listing = "; ".join(
            f"{s.label}: {s.modality}, {len(s.frames)} images"
            + (f", refused ({s.refused})" if s.refused else "")
            for s in scan.series[:8]
        )
        more = f" and {len(scan.series) - 8} more" if len(scan.series) > 8 else ""
        raise DicomSeriesError(
            f"{folder}: holds {len(scan.series)} DICOM volumes ({listing}{more}), an image "
            "must be one; move each series into its own folder (medimg dicom ls lists them), "
            "or convert the one to use with medimg convert and name the converted file; "
            "in Python pass rules=SelectionRules(...) to choose one"
        )
    return select_series(scan.series, rules, where=str(folder))


def _check_ndim(folder: Path, source: SourceGeometry, ndim: int | None) -> None:
    if ndim is None or len(source.shape) == ndim:
        return
    got = _DIMS.get(len(source.shape), f"{len(source.shape)}D")
    kind = "a projection image (X-ray)" if len(source.shape) == 2 else "a slice stack"
    raise GeometryError(
        f"{folder}: expected a {_DIMS.get(ndim, f'{ndim}D')} image, the DICOM series is {kind}, "
        f"{got} (shape {tuple(source.shape)}); give a series of the expected kind, or fix "
        "the modality"
    )
