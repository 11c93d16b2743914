"""Which files of a folder to read, and reading one DICOM header tolerantly."""

from __future__ import annotations

import logging
import struct
from pathlib import Path
from typing import Any

from medimg.io.dicom._validity import convert_errors

__all__ = ["candidate_files", "not_an_image", "read_header"]

logger = logging.getLogger(__name__)

_NOT_IMAGES = frozenset({"SEG", "RTSTRUCT", "RTPLAN", "RTDOSE", "SR", "PR", "KO", "REG", "DOC"})


def candidate_files(root: Path, left_out: list[str]) -> list[Path]:
    """The files to read under ``root``: those its DICOMDIR lists, else every visible file."""
    dicomdir = root / "DICOMDIR"
    if dicomdir.is_file():
        listed = _dicomdir_files(dicomdir, left_out)
        if listed is not None:
            return listed
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and not p.name.startswith(".") and p.name.upper() != "DICOMDIR"
    )


def _dicomdir_files(dicomdir: Path, left_out: list[str]) -> list[Path] | None:
    """Files the DICOMDIR's records reference (ReferencedFileID, relative to its folder)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        records = pydicom.dcmread(dicomdir).DirectoryRecordSequence
    except (InvalidDicomError, OSError, ValueError, KeyError, AttributeError) as exc:
        left_out.append(f"{dicomdir}: unreadable DICOMDIR ({exc}); scanned the folder instead")
        return None
    files: set[Path] = set()
    for record in records:
        file_id = record.get("ReferencedFileID")
        if not file_id:
            continue
        parts = [file_id] if isinstance(file_id, str) else [str(p) for p in file_id]
        path = dicomdir.parent.joinpath(*parts)
        if path.is_file():
            files.add(path)
        else:
            left_out.append(f"{path}: listed in DICOMDIR but missing")
    logger.debug("%s lists %d files", dicomdir, len(files))
    return sorted(files)


_READ_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ValueError,
    EOFError,
    struct.error,
    KeyError,
    TypeError,
    AttributeError,
    NotImplementedError,
)


def read_header(
    path: Path, *, pixels: bool, left_out: list[str], broken: list[tuple[Path, str]]
) -> Any:
    """Parse one file's header; None (with the reason in ``left_out``) when it is not DICOM.

    A file with the ``DICM`` prefix that pydicom fails to parse is also added to ``broken``
    as ``(path, "truncated/unreadable DICOM header (pydicom: ...)")``: the series it belonged
    to cannot be trusted complete. Call inside :func:`~medimg.io.dicom._validity.quiet_pydicom`.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    options: dict[str, Any] = {"defer_size": 2048} if pixels else {"stop_before_pixels": True}
    read_errors = (*_READ_ERRORS, *convert_errors())
    try:
        return pydicom.dcmread(path, **options)
    except InvalidDicomError:
        pass  # no preamble / 'DICM' prefix: some archives strip it; try once more below
    except read_errors as exc:
        detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        reason = f"truncated/unreadable DICOM header (pydicom: {type(exc).__name__}: {detail})"
        left_out.append(f"{path}: {reason}; re-copy the file")
        broken.append((path, reason))
        return None
    forced_errors: tuple[type[BaseException], ...] = (InvalidDicomError, *read_errors)
    try:
        ds = pydicom.dcmread(path, force=True, **options)
        if "SOPClassUID" not in ds or "SeriesInstanceUID" not in ds:
            raise InvalidDicomError("no SOPClassUID/SeriesInstanceUID")
        _set_transfer_syntax(ds)
    except forced_errors:
        left_out.append(f"{path}: not a DICOM file")
        return None
    return ds


def _set_transfer_syntax(ds: Any) -> None:
    """Give a file read without its meta header the transfer syntax it was parsed with."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    if "TransferSyntaxUID" in getattr(ds, "file_meta", {}):
        return
    implicit, little = ds.original_encoding
    if not little:
        uid = ExplicitVRBigEndian
    else:
        uid = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    meta = ds.file_meta if isinstance(getattr(ds, "file_meta", None), FileMetaDataset) else None
    if meta is None:
        meta = FileMetaDataset()
        ds.file_meta = meta
    meta.TransferSyntaxUID = uid


def not_an_image(ds: Any) -> str:
    """Why ``ds`` is not an image medimg reads ('' when it is one)."""
    modality = str(ds.get("Modality", "") or "")
    if modality in _NOT_IMAGES:
        return f"a {modality} object, not an image"
    if "Rows" not in ds or "Columns" not in ds:
        return "no image (no Rows/Columns)"
    return ""
