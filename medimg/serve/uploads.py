"""Checking an upload by its content: what it is, whether it is whole, and how large it decodes.

The file name a client sends is never trusted (nor logged: it may hold a patient's name). The
first bytes decide the format: gzip (a ``.nii.gz``), a NIfTI-1/2 header, ``NRRD``, a MetaImage
text header, or a zip (one DICOM series). The file is then renamed to the suffix medimg's
readers expect and its header goes through :func:`medimg.io.read_image_header`, whose field
checks apply; the decoded size is computed from the header and refused above the limit before
any voxel is read (a header claiming 5 GB costs nothing); a compressed body is verified to its
end (CRC, length) in one streaming pass, and an uncompressed one must be as long as its header
says. NRRD and MetaImage headers that point at another data file are refused.
"""

from __future__ import annotations

import gzip
import logging
import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medimg.errors import MedimgError
from medimg.serve._zipsafe import extract_dicom_zip
from medimg.serve.errors import UploadError

__all__ = ["CheckedInput", "UploadLimits", "check_upload", "sniff"]

logger = logging.getLogger(__name__)

_SUFFIX = {"nifti-gz": ".nii.gz", "nifti": ".nii", "nrrd": ".nrrd", "mha": ".mha"}
_TEXT_HEAD = 4096


@dataclass(frozen=True)
class UploadLimits:
    """How much an upload may decode to (bytes) and how many zip members it may hold."""

    max_decoded_bytes: int
    max_zip_members: int


@dataclass(frozen=True)
class CheckedInput:
    """An upload that passed: the path to predict on and what it is."""

    path: Path
    kind: str
    shape: tuple[int, ...]


def _nifti_magic(head: bytes) -> bool:
    if len(head) >= 348 and head[344:348] == b"n+1\0":
        return _sizeof_hdr(head) == 348
    if len(head) >= 540 and head[4:8] == b"n+2\0":
        return _sizeof_hdr(head) == 540
    return False


def _sizeof_hdr(head: bytes) -> int:
    little: int = struct.unpack("<i", head[:4])[0]
    big: int = struct.unpack(">i", head[:4])[0]
    return little if little in (348, 540) else big


def sniff(path: Path) -> str:
    """The upload's kind from its first bytes: nifti-gz, nifti, nrrd, mha or zip.

    Raises
    ------
    UploadError
        400 when the content is none of those (whatever the file name says).
    """
    with path.open("rb") as f:
        head = f.read(_TEXT_HEAD)
    if head[:2] == b"\x1f\x8b":
        try:
            with gzip.open(path, "rb") as g:
                inner = g.read(544)
        except (OSError, EOFError, zlib.error) as exc:
            raise UploadError(
                400,
                f"the upload is a damaged gzip stream ({exc}); upload the "
                "file again, or check it with `gzip -t`",
            ) from None
        if _nifti_magic(inner):
            return "nifti-gz"
        raise UploadError(
            400,
            "the upload is gzip-compressed but holds no NIfTI header; "
            "upload a .nii.gz, .nii, .nrrd or .mha file, or a zip of one "
            "DICOM series",
        )
    if head[:4] == b"PK\x03\x04":
        return "zip"
    if _nifti_magic(head):
        return "nifti"
    if head[:4] == b"NRRD":
        return "nrrd"
    text = head.split(b"\n", 1)[0].strip().lower()
    if text.startswith((b"objecttype", b"ndims")):
        return "mha"
    raise UploadError(
        400,
        "the upload is not a NIfTI, NRRD or MetaImage file nor a zip "
        "(its content was checked, not its name); upload a .nii.gz, .nii, "
        ".nrrd or .mha file, or a zip of one DICOM series",
    )


def _header_lines(path: Path) -> list[str]:
    with path.open("rb") as f:
        head = f.read(64 * 1024)
    end = head.find(b"\n\n") if head.startswith(b"NRRD") else head.find(b"ElementDataFile")
    text = head if end < 0 else head[: end + 200]
    return text.decode("latin-1").splitlines()


def _check_data_file(path: Path, kind: str) -> None:
    """Refuse NRRD/MetaImage headers whose voxels live in another file (read from our disk)."""
    for line in _header_lines(path):
        key, sep, value = line.partition(":" if kind == "nrrd" else "=")
        key = key.strip().lower()
        if kind == "nrrd" and sep and key in ("data file", "datafile"):
            raise UploadError(
                400,
                "the NRRD header names a separate data file; upload an "
                "attached .nrrd (data in the same file)",
            )
        if kind == "mha" and sep and key == "elementdatafile" and value.strip() != "LOCAL":
            raise UploadError(
                400,
                "the MetaImage header names a separate data file "
                f"({value.strip()!r}); upload a .mha with ElementDataFile = "
                "LOCAL",
            )


def _decoded_bytes(shape: tuple[int, ...], channels: int, dtype: str) -> int:
    return math.prod(shape) * channels * np.dtype(dtype).itemsize


def _check_length(path: Path, kind: str, needed: int) -> None:
    """An uncompressed body must hold every voxel its header promises."""
    size = path.stat().st_size
    if kind == "nifti":
        with path.open("rb") as f:
            raw = f.read(112)
        order = "<" if struct.unpack("<i", raw[:4])[0] in (348, 540) else ">"
        offset = int(struct.unpack(order + "f", raw[108:112])[0]) if len(raw) >= 112 else 352
        needed += offset
    if size < needed:
        raise UploadError(
            400,
            f"the upload is truncated: its header needs at least {needed} "
            f"bytes, the file has {size}; upload the whole file",
        )


def check_upload(raw: Path, folder: Path, limits: UploadLimits) -> CheckedInput:
    """Check the uploaded file `raw` and move it into `folder` under the name readers expect.

    Returns the path to predict on (a file, or for a zip the folder of its DICOM files).

    Raises
    ------
    UploadError
        400 for content that is not a readable volume (the reader's message, without the
        server's paths), 413 for one that decodes past ``limits.max_decoded_bytes``.
    """
    from medimg.io import read_image_header, verify_compressed

    kind = sniff(raw)
    if kind == "zip":
        target = folder / "dicom"
        extract_dicom_zip(
            raw, target, max_members=limits.max_zip_members, max_bytes=limits.max_decoded_bytes
        )
        raw.unlink()
    else:
        target = folder / f"input{_SUFFIX[kind]}"
        raw.replace(target)
        if kind in ("nrrd", "mha"):
            _check_data_file(target, kind)
    try:
        geometry = read_image_header(target)
        needed = _decoded_bytes(geometry.shape, geometry.n_channels, geometry.dtype)
        if needed > limits.max_decoded_bytes:
            raise UploadError(
                413,
                f"the upload's header claims a {geometry.shape} volume of "
                f"{np.dtype(geometry.dtype).name} ({needed} bytes decoded), at most "
                f"{limits.max_decoded_bytes}; crop or resample it, or ask for a "
                "larger --max-decoded-mb",
            )
        if kind != "zip":
            verify_compressed(target)
            if kind == "nifti" or _raw_body(target, kind):
                _check_length(target, kind, needed)
    except UploadError:
        raise
    except MedimgError as exc:
        message = str(exc).replace(str(target), "upload").replace(str(folder), "upload")
        raise UploadError(400, message) from None
    return CheckedInput(
        path=target, kind="dicom" if kind == "zip" else kind, shape=tuple(geometry.shape)
    )


def _raw_body(path: Path, kind: str) -> bool:
    """Whether an NRRD or MetaImage body is stored as plain binary (so its length is known)."""
    for line in _header_lines(path):
        key, _, value = line.partition(":" if kind == "nrrd" else "=")
        key, value = key.strip().lower(), value.strip().lower()
        if kind == "nrrd" and key == "encoding":
            return value == "raw"
        if kind == "mha" and key == "compresseddata":
            return value != "true"
    return kind == "mha"
