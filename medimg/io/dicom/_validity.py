"""Whether one DICOM file's header can be trusted: truncation and pixel-module sanity.

These checks run on every file during the scan, before any pixel is decoded, so that
``medimg dicom ls`` (headers only) already says why a series will be refused. Each problem is
one phrase naming the tag by keyword and ``(gggg,eeee)``, what was found and what it must be;
the scan turns them into the refusal of the file's series.

Missing UIDs are not refused: anonymised exports often strip them (the TotalSegmentator example
CT has neither SOPInstanceUID nor SeriesInstanceUID). Such images are grouped by study, series
number and modality, and the stand-in series name, which every message carries, says
``no SeriesInstanceUID``; copies are then told apart by position (see
:mod:`medimg.io.dicom.checks`).

Projection modalities
---------------------
Only these are read as 2D images without ImagePositionPatient/ImageOrientationPatient: the
projection X-ray modalities of the Modality defined terms (DICOM PS3.3 C.7.3.1.1.1), whose
IODs (CR Image, DX Image, Digital Mammography, Digital Intra-Oral, X-Ray Angiographic,
X-Ray RF) have no Image Plane module: CR, DX, MG, IO, PX (panoramic), XA, RF, RG
(conventional radiographic film digitised) and BMD (bone densitometry, DXA). Every other
modality (CT, MR, PT, NM, US, OT...) needs the patient geometry to be placed in a volume.
"""

from __future__ import annotations

import math
import struct
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = [
    "PROJECTION_MODALITIES",
    "convert_errors",
    "decode_values",
    "header_extent",
    "header_problems",
    "quiet_pydicom",
    "tag_label",
    "truncation",
]

PROJECTION_MODALITIES = frozenset({"CR", "DX", "MG", "IO", "PX", "XA", "RF", "RG", "BMD"})
"""Modalities read as 2D projection images when they carry no patient position."""

_BITS_ALLOCATED = (1, 8, 16, 32, 64)
_UNDEFINED = 0xFFFFFFFF


def tag_label(keyword: str) -> str:
    """``"ImagePositionPatient (0020,0032)"`` for a DICOM keyword.

    Examples
    --------
    >>> tag_label("PixelSpacing")
    'PixelSpacing (0028,0030)'
    """
    from pydicom.datadict import tag_for_keyword

    tag = tag_for_keyword(keyword)
    if tag is None:
        return keyword
    return f"{keyword} ({tag >> 16:04X},{tag & 0xFFFF:04X})"


@contextmanager
def quiet_pydicom() -> Iterator[None]:
    """Silence pydicom's value-validation warnings: invalid values are our checks' job."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        yield


_CONVERT_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    OverflowError,
    TypeError,
    LookupError,
    AttributeError,
    NotImplementedError,
    EOFError,
    struct.error,
)


def convert_errors() -> tuple[type[BaseException], ...]:
    """What pydicom raises when it parses or converts a corrupt value."""
    from pydicom.errors import BytesLengthException

    return (*_CONVERT_ERRORS, BytesLengthException)


_MAX_DEPTH = 8


def decode_values(ds: Any, *, depth: int = 0) -> list[str]:
    """Convert every element of ``ds`` (and its sequences) now; drop those pydicom cannot.

    pydicom converts a value when it is first accessed, and a corrupt value (``IS`` of
    ``1e400``, a sequence with a broken item) raises there, deep in any later code. Each
    element that fails is removed and named in the returned problems, so that the rest of
    medimg reads only values that decoded. Pixel data are left deferred.
    """
    problems: list[str] = []
    datasets = [ds] if depth else [getattr(ds, "file_meta", None), ds]
    for dataset in datasets:
        if dataset is None:
            continue
        for tag in list(dataset.keys()):
            if tag in (0x7FE00010, 0x7FE00008, 0x7FE00009) or tag >= 0xFFFA0000:
                continue
            try:
                element = dataset[tag]
                items = list(element.value) if element.VR == "SQ" else []
            except convert_errors() as exc:
                problems.append(_undecodable(tag, exc))
                del dataset[tag]
                continue
            if depth >= _MAX_DEPTH and items:
                problems.append(f"{_tag_text(tag)} nests sequences deeper than {_MAX_DEPTH}")
                del dataset[tag]
                continue
            for item in items:
                problems.extend(decode_values(item, depth=depth + 1))
    return problems


def _tag_text(tag: int) -> str:
    from pydicom.datadict import keyword_for_tag

    return f"{keyword_for_tag(tag) or 'element'} ({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _undecodable(tag: int, exc: BaseException) -> str:
    detail = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else ""
    return (
        f"{_tag_text(tag)} holds a value that cannot be decoded "
        f"(pydicom: {type(exc).__name__}: {detail})"
    )


def header_extent(ds: Any) -> int:
    """Largest end offset (bytes) of the not yet converted elements of ``ds``."""
    from pydicom.dataelem import RawDataElement

    end = 0
    for tag in list(ds.keys()):
        element = ds.get_item(tag, keep_deferred=True)
        if isinstance(element, RawDataElement) and element.length != _UNDEFINED:
            if element.value_tell is not None:
                end = max(end, int(element.value_tell) + int(element.length))
    return end


def _straddler(ds: Any, size: int) -> str:
    """The first element whose value runs past the end of the file, as a phrase ('' if none)."""
    from pydicom.datadict import keyword_for_tag
    from pydicom.dataelem import RawDataElement

    for dataset in (getattr(ds, "file_meta", None), ds):
        if dataset is None:
            continue
        for tag in list(dataset.keys()):
            element = dataset.get_item(tag, keep_deferred=True)
            if not isinstance(element, RawDataElement) or element.length == _UNDEFINED:
                continue
            start = int(element.value_tell or 0)
            if start + int(element.length) > size:
                name = keyword_for_tag(tag) or "element"
                return (
                    f"{name} ({tag >> 16:04X},{tag & 0xFFFF:04X}) at byte {start} needs "
                    f"{element.length} bytes, but the file ends at byte {size}"
                )
    return ""


def _is_image_class(ds: Any) -> bool:
    from pydicom.uid import UID

    try:
        uid = ds.get("SOPClassUID") or getattr(ds, "file_meta", {}).get("MediaStorageSOPClassUID")
    except convert_errors():
        return False
    return bool(uid) and "Image Storage" in UID(str(uid)).name


def truncation(ds: Any, path: Path, *, pixels: bool) -> str:
    """Why ``ds`` (just read from ``path``, nothing accessed yet) is cut short ('' if it is not).

    pydicom returns what it parsed when a file ends early, so a cut is found here: an element
    whose declared length runs past the end of the file, an image without Rows/Columns or (when
    pixels were read) without PixelData, or a file with the ``DICM`` prefix and nothing after
    its meta header.
    """
    size = path.stat().st_size
    straddler = _straddler(ds, size)
    if straddler:
        return f"truncated/unreadable DICOM header: {straddler}"
    if len(ds) == 0:
        return "truncated/unreadable DICOM header: nothing after the file meta header"
    if _is_image_class(ds):
        if "Rows" not in ds or "Columns" not in ds:
            return (
                f"truncated/unreadable DICOM header: an image must have {tag_label('Rows')} and "
                f"{tag_label('Columns')}, the header ends at byte {size} without them"
            )
        has_pixels = any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"))
        if pixels and not has_pixels:
            return (
                f"truncated pixel data: an image must have {tag_label('PixelData')}, the file "
                f"ends at byte {size} without it"
            )
    return ""


def _integer(ds: Any, keyword: str, problems: list[str]) -> int | None:
    """A required integer tag, or None (with a problem) when absent or not an integer."""
    value = ds.get(keyword)
    if value is None or value == "":
        problems.append(f"{tag_label(keyword)} is missing")
        return None
    try:
        number = float(str(value))
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or number != int(number):
        problems.append(f"{tag_label(keyword)} must be an integer, got {str(value)[:40]!r}")
        return None
    return int(number)


def _syntax_problem(ds: Any) -> str:
    from pydicom.pixels.decoders.base import get_decoder
    from pydicom.uid import UID

    raw = getattr(ds, "file_meta", {}).get("TransferSyntaxUID")
    if raw is None:
        return f"{tag_label('TransferSyntaxUID')} is missing"
    uid = UID(str(raw))
    if not uid.is_transfer_syntax:
        return (
            f"{tag_label('TransferSyntaxUID')} must be a DICOM transfer syntax, got "
            f"{str(raw)[:64]!r}; re-export the file (e.g. uncompressed, explicit VR little endian)"
        )
    if uid.is_compressed:
        try:
            get_decoder(uid)
        except NotImplementedError:
            return (
                f"{tag_label('TransferSyntaxUID')} {uid} ({uid.name}) has no pixel decoder "
                "(video and JPIP syntaxes are not images medimg reads); re-export the series "
                "uncompressed"
            )
    return ""


def _bits_problems(ds: Any, problems: list[str]) -> tuple[int, int] | None:
    """Check the Image Pixel module's bit layout; return (BitsAllocated, SamplesPerPixel)."""
    allocated = _integer(ds, "BitsAllocated", problems)
    stored = _integer(ds, "BitsStored", problems)
    representation = _integer(ds, "PixelRepresentation", problems)
    if allocated is not None and allocated not in _BITS_ALLOCATED:
        problems.append(f"{tag_label('BitsAllocated')} must be 1, 8, 16, 32 or 64, got {allocated}")
        allocated = None
    if stored is not None and allocated is not None and not 1 <= stored <= allocated:
        problems.append(
            f"{tag_label('BitsStored')} must be between 1 and BitsAllocated ({allocated}), "
            f"got {stored}"
        )
    if "HighBit" in ds and stored is not None:
        high = _integer(ds, "HighBit", problems)
        if high is not None and high != stored - 1:
            problems.append(
                f"{tag_label('HighBit')} must be BitsStored - 1 ({stored - 1}), got {high}"
            )
    if representation is not None and representation not in (0, 1):
        problems.append(
            f"{tag_label('PixelRepresentation')} must be 0 (unsigned) or 1 (signed), "
            f"got {representation}"
        )
    samples = _integer(ds, "SamplesPerPixel", problems) if "SamplesPerPixel" in ds else 1
    if samples is not None and samples < 1:
        problems.append(f"{tag_label('SamplesPerPixel')} must be >= 1, got {samples}")
        samples = None
    if allocated is None or samples is None:
        return None
    return allocated, samples


def _frame_count(ds: Any, problems: list[str]) -> int | None:
    if "NumberOfFrames" not in ds:
        return 1
    n = _integer(ds, "NumberOfFrames", problems)
    if n is not None and n < 1:
        problems.append(f"{tag_label('NumberOfFrames')} must be >= 1, got {n}")
        return None
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if n is not None and per_frame is not None and len(per_frame) != n:
        problems.append(
            f"{tag_label('PerFrameFunctionalGroupsSequence')} must have one item per frame "
            f"(NumberOfFrames {n}), got {len(per_frame)}"
        )
        return None
    return n


def _pixel_length_problem(ds: Any, path: Path, expected: int, header_end: int) -> str:
    """Compare the native pixel data length with what Rows, Columns, frames and bits need."""
    from pydicom.dataelem import RawDataElement

    sizes = f"{tag_label('Rows')} x {tag_label('Columns')} x frames x bits"
    element = ds.get_item(0x7FE00010, keep_deferred=True) if "PixelData" in ds else None
    length = None
    if isinstance(element, RawDataElement) and element.length != _UNDEFINED:
        length = int(element.length)
    elif element is not None and not isinstance(element, RawDataElement):
        value = element.value  # already read (short or empty): its real length
        length = len(value) if isinstance(value, bytes) else 0
    if length is not None:
        if length < expected:
            return (
                f"{tag_label('PixelData')} must hold {expected} bytes for {sizes}, found "
                f"{length}; the file is truncated (or Rows/Columns are wrong): re-copy it"
            )
        if length > expected + 1:
            return (
                f"{tag_label('PixelData')} must hold {expected} bytes for {sizes}, found "
                f"{length}; Rows/Columns do not match the pixel data: fix the header or "
                "re-export the file"
            )
        return ""
    after = path.stat().st_size - header_end - 8  # the pixel data element's own tag/length
    if element is None and after < expected:
        return (
            f"truncated pixel data: {tag_label('PixelData')} must hold {expected} bytes for "
            f"{sizes}, the file has only {max(after, 0)} bytes after its header; re-copy it"
        )
    return ""


def header_problems(ds: Any, path: Path, header_end: int) -> list[str]:
    """What makes the header of one image file unusable (empty when nothing does).

    Checks, before any pixel is decoded: a transfer syntax medimg can decode, Rows/Columns
    >= 1, a sane bit layout (BitsAllocated 1, 8, 16, 32 or 64; 1 <= BitsStored <=
    BitsAllocated; HighBit = BitsStored - 1; PixelRepresentation 0 or 1), NumberOfFrames >= 1
    (one functional-group item per frame),
    and, for uncompressed data, a pixel data length that matches them (``header_end``, from
    :func:`header_extent` before the values were decoded, is where the pixel data can start).
    """
    problems: list[str] = []
    syntax = _syntax_problem(ds)
    if syntax:
        problems.append(syntax)
    rows = _integer(ds, "Rows", problems)
    columns = _integer(ds, "Columns", problems)
    for keyword, value in (("Rows", rows), ("Columns", columns)):
        if value is not None and value < 1:
            problems.append(f"{tag_label(keyword)} must be >= 1, got {value}")
    layout = _bits_problems(ds, problems)
    frames = _frame_count(ds, problems)
    if problems or layout is None or frames is None or rows is None or columns is None:
        return problems
    from pydicom.uid import UID

    if UID(str(ds.file_meta.TransferSyntaxUID)).is_compressed:
        return problems
    bits, samples = layout
    expected = (frames * rows * columns * samples * bits + 7) // 8
    length = _pixel_length_problem(ds, path, expected, header_end)
    return [length] if length else []
