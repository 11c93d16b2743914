"""Header fields checked before any library interprets them.

nibabel and ITK each accept some damaged headers silently (nibabel resets an invalid
``qform_code`` to 0 and reads voxels from offset 0 when ``vox_offset`` is 0; ITK's MetaImage
reader turns an unparsable ``Offset = inf 0 0`` into 0 and ``ElementSpacing = nan 1 1`` into 0)
and fail on others with their own exceptions (``HeaderDataError``, numpy's ``LinAlgError`` from
a NaN affine). Here each field is checked against the format's rules first, and each failure is
a medimg error naming the file, the field and its value.
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medimg.errors import GeometryError, ImageNotFoundError, ImageReadError

__all__ = [
    "affine_field",
    "check_affine",
    "check_metaimage_text",
    "check_nifti_fields",
    "check_nrrd_text",
    "check_sitk_geometry",
]

_FIX = "the header is damaged or was written by a faulty tool: re-export the image"


def _read_head(path: Path, n: int) -> bytes:
    try:
        if path.name.lower().endswith(".gz"):
            with gzip.open(path, "rb") as f:
                return f.read(n)
        with path.open("rb") as f:
            return f.read(n)
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise ImageReadError(
            f"{path}: truncated or corrupt gzip stream ({type(exc).__name__}: {exc}); the file "
            "is damaged: re-copy, re-download or re-export it"
        ) from None


def _nifti_struct(path: Path, raw: bytes) -> tuple[Any, str, int]:
    """The header as a numpy record, its kind (nifti1/nifti2/analyze) and its size."""
    import nibabel as nib

    if len(raw) < 348:
        raise ImageReadError(
            f"{path}: file is truncated: {len(raw)} bytes, shorter than a NIfTI/Analyze header "
            "(348 bytes); the file is damaged: re-copy or re-export it"
        )
    for order in "<>":
        size = int(np.frombuffer(raw[:4], dtype=f"{order}i4")[0])
        if size in (348, 540):
            break
    else:
        raise ImageReadError(
            f"{path}: header field sizeof_hdr must be 348 (NIfTI-1, Analyze) or 540 (NIfTI-2), "
            f"got {int(np.frombuffer(raw[:4], dtype='<i4')[0])}; this is not a NIfTI/Analyze "
            "header, or it is damaged: re-export the image"
        )
    if size == 540:
        if len(raw) < 540:
            raise ImageReadError(
                f"{path}: file is truncated: {len(raw)} bytes, shorter than a NIfTI-2 header "
                "(540 bytes); the file is damaged: re-copy or re-export it"
            )
        klass: Any = nib.Nifti2Header
        kind = "nifti2"
    elif raw[344:347] in (b"n+1", b"ni1"):
        klass, kind = nib.Nifti1Header, "nifti1"
    else:
        klass, kind = nib.AnalyzeHeader, "analyze"
    dtype = klass.template_dtype.newbyteorder(order)
    return np.frombuffer(raw[: dtype.itemsize], dtype=dtype)[0], kind, size


def check_nifti_fields(path: Path) -> None:
    """Check a NIfTI-1, NIfTI-2 or Analyze header's fields before nibabel interprets them.

    Parameters
    ----------
    path : Path
        A ``.nii``, ``.nii.gz``, ``.hdr`` or ``.img`` file (the ``.hdr`` of an ``.img`` is read).

    Raises
    ------
    ImageReadError
        For a bad ``sizeof_hdr``, ``dim``, ``datatype``, ``vox_offset``, ``scl_slope``,
        ``scl_inter``, ``pixdim``, ``qform_code`` or ``sform_code``.
    GeometryError
        For a non-finite ``srow_*`` (sform) or quaternion (qform) in use.
    """
    header_file = path.with_suffix(".hdr") if path.suffix.lower() == ".img" else path
    if not header_file.is_file():
        return  # nibabel reports the missing header file
    h, kind, size = _nifti_struct(path, _read_head(header_file, 540))
    dim = [int(v) for v in h["dim"]]
    if not 1 <= dim[0] <= 7:
        _bad(path, "dim[0]", dim[0], "be 1..7 (the number of dimensions)")
    for i in range(1, dim[0] + 1):
        if dim[i] < 1:
            _bad(path, f"dim[{i}]", dim[i], "be >= 1 (a voxel count)")
    _check_datatype(path, int(h["datatype"]))
    offset = float(h["vox_offset"])
    single = kind != "analyze" and bytes(h["magic"])[:3] in (b"n+1", b"n+2")
    least = size + 4 if single else 0
    if not math.isfinite(offset) or offset < least:
        _bad(
            path,
            "vox_offset",
            offset,
            f"be finite and >= {least}" + (" in a single-file NIfTI" if single else ""),
        )
    pixdim = [float(v) for v in h["pixdim"][: dim[0] + 1]]
    if not all(math.isfinite(v) for v in pixdim):
        _bad(path, "pixdim", pixdim, "be finite (voxel sizes)")
    if kind == "analyze":
        return
    _check_scaling(path, float(h["scl_slope"]), float(h["scl_inter"]))
    _check_xform(path, h)


def _bad(path: Path, field: str, value: object, rule: str) -> None:
    raise ImageReadError(f"{path}: header field {field} must {rule}, got {value}; {_FIX}")


def _check_datatype(path: Path, code: int) -> None:
    from nibabel.nifti1 import data_type_codes

    if code == 0 or code not in data_type_codes.value_set("code"):
        _bad(path, "datatype", code, "be a NIfTI data type code (e.g. 4 int16, 16 float32)")


def _check_scaling(path: Path, slope: float, inter: float) -> None:
    if not math.isfinite(slope):
        _bad(path, "scl_slope", slope, "be finite (0 means no scaling)")
    if slope != 0 and not math.isfinite(inter):
        _bad(path, "scl_inter", inter, "be finite when scl_slope is set")


def _check_xform(path: Path, h: Any) -> None:
    from nibabel.nifti1 import xform_codes

    valid = xform_codes.value_set("code")
    for name in ("qform_code", "sform_code"):
        if int(h[name]) not in valid:
            _bad(path, name, int(h[name]), f"be one of {sorted(valid)}")
    if int(h["sform_code"]) > 0:
        rows = np.concatenate([h["srow_x"], h["srow_y"], h["srow_z"]])
        if not np.isfinite(rows).all():
            raise GeometryError(
                f"{path}: the sform (srow_x, srow_y, srow_z) holds non-finite values "
                f"{rows.reshape(3, 4).tolist()}; {_FIX}"
            )
    elif int(h["qform_code"]) > 0:
        names = ("quatern_b", "quatern_c", "quatern_d", "qoffset_x", "qoffset_y", "qoffset_z")
        values = [float(h[n]) for n in names]
        if not all(math.isfinite(v) for v in values):
            raise GeometryError(
                f"{path}: the qform ({', '.join(names)}) holds non-finite values {values}; {_FIX}"
            )
        b, c, d = values[:3]
        if b * b + c * c + d * d > 1.0 + 1e-6:
            raise GeometryError(
                f"{path}: the qform quaternion (quatern_b, quatern_c, quatern_d) = {values[:3]} "
                f"has norm > 1, so it is no rotation; {_FIX}"
            )


def affine_field(header: Any) -> str:
    """Which header fields a nibabel image's affine came from (for messages)."""
    sform_code = int(header["sform_code"]) if "sform_code" in header else 0
    qform_code = int(header["qform_code"]) if "qform_code" in header else 0
    if sform_code > 0:
        return "sform (srow_x, srow_y, srow_z)"
    if qform_code > 0:
        return "qform (quatern_b/c/d, qoffset_x/y/z, pixdim[1:4])"
    return "pixdim (no sform or qform set)"


def check_affine(path: Path, affine: NDArray[np.float64], field: str, ndim: int) -> None:
    """Refuse an affine that is non-finite or singular, naming the header ``field`` it came from.

    Raises
    ------
    GeometryError
        When an entry is NaN or infinite, a voxel axis has zero length, or the axes are
        linearly dependent.
    """
    a = np.asarray(affine, dtype=np.float64)
    if not np.isfinite(a).all():
        raise GeometryError(
            f"{path}: the affine from the {field} is not finite ({a[:3].round(4).tolist()}); {_FIX}"
        )
    cols = a[:3, :3]
    with np.errstate(over="ignore", invalid="ignore"):
        norms = np.linalg.norm(cols, axis=0)
        det = float(np.linalg.det(cols))
        volume = float(np.prod(norms))
    if not (np.isfinite(norms).all() and math.isfinite(det) and math.isfinite(volume)):
        raise GeometryError(
            f"{path}: the affine from the {field} has entries too large to compute with "
            f"({cols.tolist()}); {_FIX}"
        )
    for i in range(min(ndim, 3)):
        if norms[i] == 0:
            raise GeometryError(
                f"{path}: the affine from the {field} is singular: voxel axis {i} has zero "
                f"length (column norms {norms.round(6).tolist()}); {_FIX}"
            )
    if ndim >= 3 and abs(det) <= 1e-9 * volume:
        raise GeometryError(
            f"{path}: the affine from the {field} is singular: its voxel axes are linearly "
            f"dependent ({cols.round(4).tolist()}); {_FIX}"
        )


# --------------------------------------------------------------------------------------------
# NRRD and MetaImage (read by ITK)

_SITK_FIELDS = {
    "nrrd": {"size": "sizes", "spacing": "space directions", "origin": "space origin"},
    "metaimage": {"size": "DimSize", "spacing": "ElementSpacing", "origin": "Offset"},
}


def check_sitk_geometry(
    path: Path,
    fmt: str,
    size: tuple[int, ...],
    spacing: tuple[float, ...],
    origin: tuple[float, ...],
    direction: tuple[float, ...],
) -> None:
    """Check the grid ITK read from a NRRD or MetaImage header.

    Raises
    ------
    ImageReadError
        For a zero, negative (wrapped around) or absurd size.
    GeometryError
        For a non-finite or non-positive spacing, a non-finite origin, or a non-finite or
        singular direction matrix.
    """
    names = _SITK_FIELDS.get(fmt, _SITK_FIELDS["nrrd"])
    if any(n < 1 or n >= 2**31 for n in size):
        _bad(path, names["size"], list(size), "be voxel counts >= 1 (and < 2**31)")
    k = len(size)
    if not all(math.isfinite(s) and s > 0 for s in spacing):
        raise GeometryError(
            f"{path}: header field {names['spacing']} gives voxel spacing {list(spacing)}; "
            f"spacing must be finite and > 0 mm; {_FIX}"
        )
    if not all(math.isfinite(o) for o in origin):
        raise GeometryError(
            f"{path}: header field {names['origin']} must be finite, got {list(origin)}; {_FIX}"
        )
    d = np.asarray(direction, dtype=np.float64).reshape(k, k)
    if not np.isfinite(d).all() or abs(float(np.linalg.det(d))) < 1e-6:
        what = "space directions" if fmt == "nrrd" else "TransformMatrix"
        raise GeometryError(
            f"{path}: header field {what} gives a direction matrix {d.round(4).tolist()} that is "
            f"not finite or singular (determinant 0); {_FIX}"
        )


_METAIMAGE_NUMERIC = (
    "DimSize",
    "ElementSpacing",
    "ElementSize",
    "Offset",
    "Origin",
    "Position",
    "TransformMatrix",
    "Rotation",
    "Orientation",
    "CenterOfRotation",
)


def _count_field(path: Path, field: str, text: str | None, rule: range) -> int:
    try:
        value = int(text or "")
    except ValueError:
        value = -1
    if value not in rule:
        _bad(path, field, text, f"be an integer {rule.start}..{rule.stop - 1}")
    return value


def _sizes_field(path: Path, field: str, text: str | None, ndim: int) -> None:
    try:
        sizes = [int(v) for v in (text or "").split()]
    except ValueError:
        sizes = []
    if len(sizes) != ndim or any(n < 1 for n in sizes):
        _bad(path, field, text, f"be {ndim} voxel counts >= 1")


def check_nrrd_text(path: Path, fields: dict[str, str]) -> None:
    """Check a NRRD header's ``dimension`` and ``sizes`` before ITK reads it.

    Raises
    ------
    ImageReadError
        Naming the field and its text.
    ImageNotFoundError
        When the detached data file is missing.
    """
    ndim = _count_field(path, "dimension", fields.get("dimension"), range(1, 17))
    _sizes_field(path, "sizes", fields.get("sizes"), ndim)
    _data_file_exists(path, "data file", fields.get("datafile", ""))


def _data_file_exists(path: Path, field: str, name: str) -> None:
    """A detached header's single data file must exist (lists and patterns are left to ITK)."""
    if not name or name.upper() in ("LOCAL", "LIST") or " " in name or "%" in name:
        return
    target = path.parent / name
    if not target.is_file():
        raise ImageNotFoundError(
            f"{path}: header field {field} names the data file {name!r}, but {target} does not "
            "exist; copy the data file next to the header or correct the field"
        )


def check_metaimage_text(path: Path, fields: dict[str, str]) -> None:
    """Check a MetaImage header's counts and numbers before ITK reads it.

    ITK crashes the process on a negative ``NDims`` and turns an unparsable ``Offset`` into 0.

    Raises
    ------
    ImageReadError
        For a bad ``NDims``, ``DimSize`` or ``ElementNumberOfChannels``.
    ImageNotFoundError
        When the ``ElementDataFile`` is missing.
    GeometryError
        For a numeric geometry field that is not finite numbers, naming the field and its text.
    """
    ndim = _count_field(path, "NDims", fields.get("NDims"), range(1, 9))
    _sizes_field(path, "DimSize", fields.get("DimSize"), ndim)
    _data_file_exists(path, "ElementDataFile", fields.get("ElementDataFile", ""))
    if "ElementNumberOfChannels" in fields:
        _count_field(
            path, "ElementNumberOfChannels", fields["ElementNumberOfChannels"], range(1, 2**16)
        )
    for key in _METAIMAGE_NUMERIC:
        text = fields.get(key)
        if text is None:
            continue
        try:
            values = [float(v) for v in text.split()]
        except ValueError:
            values = [math.nan]
        if not values or not all(math.isfinite(v) for v in values):
            raise GeometryError(
                f"{path}: header field {key} must be finite numbers, got {text!r}; {_FIX}"
            )
