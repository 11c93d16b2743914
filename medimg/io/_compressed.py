"""Compressed image data read in bounded chunks, with every integrity check the format has.

nibabel reads a ``.nii.gz`` only as far as the voxels it needs and never reaches the gzip
trailer, and ITK reads compressed NRRD and MetaImage without failing on a flipped bit (measured
on SimpleITK 2.5: of 200 single-bit flips in a zlib-compressed ``.mha``, 199 decoded to wrong
voxels with exit status 0; of 200 in a gzip ``.nrrd``, 20). So medimg decompresses itself:

* **gzip** (``.nii.gz``; NRRD ``encoding: gzip``): every member's CRC-32 and ISIZE trailer is
  checked by zlib; concatenated members and zero padding after the last one are accepted.
* **zlib** (MetaImage ``CompressedData = True``): the Adler-32 trailer, and the decoded length
  against the header's grid.
* **bzip2** (NRRD ``encoding: bzip2``): the block and stream CRCs.

gzip and zlib streams are inflated with ISA-L (``isal.isal_zlib``, 2-3 times faster than zlib
here), which checks the same CRC-32/ISIZE and Adler-32 trailers. ISA-L reports a wrong CRC and a
wrong ISIZE alike ("Incorrect checksum"), so when it refuses a stream, the stream is decoded once
more with zlib to name exactly what is wrong; the messages are zlib's either way.

Decompression streams ``CHUNK_BYTES`` at a time, so verifying a file needs a few MiB however
large it decodes. Every failure is an :class:`~medimg.errors.ImageReadError` naming the file,
what is wrong (``CRC check failed``, ``length mismatch``, ``truncated``) and saying that the file
is damaged.
"""

from __future__ import annotations

import bz2
import logging
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
from numpy.typing import NDArray

from medimg.errors import ImageReadError

try:
    from isal import isal_zlib as _isal_zlib
except ImportError:  # pragma: no cover - isal is a dependency; zlib alone is correct too
    _isal_zlib = None  # type: ignore[assignment]

__all__ = [
    "CHUNK_BYTES",
    "CompressedData",
    "compressed_data",
    "iter_decompressed",
    "iter_file",
    "metaimage_fields",
    "nrrd_fields",
    "read_decompressed_range",
    "region_pieces",
    "verify_stream",
]

logger = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 22
"""Largest piece of compressed or decoded data held at once while streaming (4 MiB)."""

Codec = Literal["gzip", "zlib", "bzip2"]

_DAMAGED = "the file is damaged: re-copy, re-download or re-export it"


class CompressedData:
    """Where a compressed stream lies: file, first byte, codec and (if known) decoded size.

    Parameters
    ----------
    path : Path
        File holding the stream (the data file of a detached header).
    start : int
        Byte offset of the stream in ``path``.
    codec : {"gzip", "zlib", "bzip2"}
        Compression.
    decoded_bytes : int or None
        Exact decoded length the header promises, checked when given (zlib has no length field).
    """

    def __init__(
        self, path: Path, start: int, codec: Codec, decoded_bytes: int | None = None
    ) -> None:
        self.path = path
        self.start = start
        self.codec = codec
        self.decoded_bytes = decoded_bytes


def _stream_error(data: CompressedData, exc: Exception, member: int) -> ImageReadError:
    text = str(exc)
    what = {"gzip": "gzip stream", "zlib": "zlib stream", "bzip2": "bzip2 stream"}[data.codec]
    if "incorrect data check" in text:
        check = "CRC-32" if data.codec == "gzip" else "Adler-32"
        reason = (
            f"CRC check failed: the stored {check} of member {member} does not match the "
            "decoded data"
        )
    elif "incorrect length check" in text:
        reason = (
            f"length mismatch: the stored length (ISIZE) of member {member} does not match "
            "the decoded length"
        )
    elif data.codec == "bzip2":
        reason = f"CRC check failed or invalid data ({text})"
    else:
        reason = f"invalid compressed data ({text})"
    kind = "corrupt" if reason.startswith(("CRC", "length")) else "truncated or corrupt"
    return ImageReadError(f"{data.path}: {kind} {what}: {reason}; {_DAMAGED}")


_FAST_ERRORS: tuple[type[Exception], ...] = (
    () if _isal_zlib is None else (cast("type[Exception]", _isal_zlib.error),)
)


def _new_decompressor(codec: Codec, *, fast: bool) -> Any:
    """A decompressor for ``codec``: ISA-L's for gzip/zlib when ``fast`` and installed."""
    if codec == "bzip2":
        return bz2.BZ2Decompressor()
    module: Any = _isal_zlib if fast and _isal_zlib is not None else zlib
    return module.decompressobj(31 if codec == "gzip" else 15)


def _decode(dec: Any, chunk: bytes) -> Iterator[bytes]:
    """Decode ``chunk`` in pieces of at most ``CHUNK_BYTES`` (a bomb never decodes at once)."""
    if isinstance(dec, bz2.BZ2Decompressor):
        out = dec.decompress(chunk, CHUNK_BYTES)
        while True:
            if out:
                yield out
            if dec.eof or dec.needs_input:
                return
            out = dec.decompress(b"", CHUNK_BYTES)
    out = dec.decompress(chunk, CHUNK_BYTES)
    while True:
        if out:
            yield out
        if dec.eof or not dec.unconsumed_tail:
            return
        out = dec.decompress(dec.unconsumed_tail, CHUNK_BYTES)


def iter_decompressed(data: CompressedData) -> Iterator[bytes]:
    """Decoded bytes of ``data`` in pieces of at most ``CHUNK_BYTES``, every check applied.

    The last piece is yielded only after the stream's trailer has been verified, so a consumer
    that reaches the end has seen intact data.

    Raises
    ------
    ImageReadError
        On a failed CRC or length check, invalid compressed data, a stream cut short, or data
        after the last gzip member that is not zero padding.
    """
    try:
        yield from _iter_decoded(data, fast=True)
    except _FAST_ERRORS as exc:
        raise _zlib_verdict(data, exc) from None


def _zlib_verdict(data: CompressedData, exc: Exception) -> ImageReadError:
    """The error zlib reports for a stream ISA-L refused (which says less about why)."""
    try:
        for _piece in _iter_decoded(data, fast=False):
            pass
    except ImageReadError as precise:
        return precise
    logger.warning("%s: ISA-L refused a stream that zlib accepts (%s)", data.path, exc)
    return _stream_error(data, exc, 1)


def _iter_decoded(data: CompressedData, *, fast: bool) -> Iterator[bytes]:
    member = 1
    total = 0
    dec = _new_decompressor(data.codec, fast=fast)
    try:
        with data.path.open("rb") as f:
            f.seek(data.start)
            pending = f.read(CHUNK_BYTES)
            while pending:
                for piece in _decode(dec, pending):
                    total += len(piece)
                    yield piece
                pending = b""
                if dec.eof:
                    rest = dec.unused_data + f.read(CHUNK_BYTES)
                    if data.codec != "gzip" or not rest.strip(b"\0"):
                        while rest and not rest.strip(b"\0"):
                            rest = f.read(CHUNK_BYTES)
                        _check_trailing(data, rest, member)
                        break
                    member += 1  # concatenated gzip members (gzip -c a b > ab) are one stream
                    dec = _new_decompressor(data.codec, fast=fast)
                    pending = rest
                    continue
                pending = f.read(CHUNK_BYTES)
    except (zlib.error, OSError, EOFError) as exc:
        if isinstance(exc, OSError) and exc.errno:
            raise ImageReadError(f"{data.path}: cannot be read ({exc.strerror})") from None
        raise _stream_error(data, exc, member) from None
    if not dec.eof:
        raise ImageReadError(
            f"{data.path}: truncated or corrupt {data.codec} stream: the file ends before the "
            f"end of compressed member {member} (after {total} decoded bytes): the file is "
            f"cut short; {_DAMAGED}"
        )
    if data.decoded_bytes is not None and total != data.decoded_bytes:
        raise ImageReadError(
            f"{data.path}: length mismatch: the {data.codec} stream decodes to {total} bytes, "
            f"the header's grid needs {data.decoded_bytes}; {_DAMAGED}"
        )


def _check_trailing(data: CompressedData, rest: bytes, member: int) -> None:
    if data.codec == "gzip" and rest:
        raise ImageReadError(
            f"{data.path}: truncated or corrupt gzip stream: {len(rest)}+ bytes after gzip "
            f"member {member} are neither a gzip member nor zero padding; {_DAMAGED}"
        )


def verify_stream(data: CompressedData) -> int:
    """Decode ``data`` to its end, keeping nothing, and return the decoded length in bytes.

    Raises
    ------
    ImageReadError
        As :func:`iter_decompressed`.
    """
    return sum(len(piece) for piece in iter_decompressed(data))


def iter_file(path: Path, start: int) -> Iterator[bytes]:
    """Bytes of an uncompressed file from ``start`` to its end, ``CHUNK_BYTES`` at a time."""
    with path.open("rb") as f:
        f.seek(start)
        while piece := f.read(CHUNK_BYTES):
            yield piece


def region_pieces(pieces: Iterable[bytes], offset: int, nbytes: int) -> Iterator[bytes]:
    """The part ``[offset, offset + nbytes)`` of a stream given as ``pieces``.

    All of ``pieces`` is consumed (so a compressed stream's trailer is verified) before the
    last part is yielded; fewer than ``nbytes`` bytes in the region is the caller's to check.
    """
    pos = 0  # stream position of the start of the next piece
    held = b""
    for piece in pieces:
        lo = max(offset - pos, 0)
        hi = min(offset + nbytes - pos, len(piece))
        pos += len(piece)
        if hi > lo:
            if held:
                yield held
            held = piece if (lo, hi) == (0, len(piece)) else piece[lo:hi]  # no copy if whole
    if held:
        yield held


def read_decompressed_range(data: CompressedData, offset: int, nbytes: int) -> NDArray[np.uint8]:
    """Decoded bytes ``[offset, offset + nbytes)`` of ``data``, after verifying the whole stream.

    Only the returned buffer is held in full; the rest streams through in chunks. The buffer
    is allocated without zero-filling it (every byte is written or the read fails).

    Raises
    ------
    ImageReadError
        As :func:`iter_decompressed`, or when the stream decodes to fewer bytes than needed.
    """
    out = np.empty(nbytes, dtype=np.uint8)
    view = out.data
    filled = 0
    for part in region_pieces(iter_decompressed(data), offset, nbytes):
        view[filled : filled + len(part)] = part
        filled += len(part)
    if filled < nbytes:
        raise ImageReadError(
            f"{data.path}: file is truncated: the header promises {offset + nbytes} decoded "
            f"bytes (offset {offset} + voxels), the {data.codec} stream holds fewer; {_DAMAGED}"
        )
    return out


# --------------------------------------------------------------------------------------------
# where the compressed stream of a NRRD or MetaImage file lies


def compressed_data(path: Path, fmt: str, decoded_bytes: int | None) -> list[CompressedData]:
    """The compressed streams of a NIfTI, NRRD or MetaImage file (empty when uncompressed).

    Parameters
    ----------
    path : Path
        The image (or header) file.
    fmt : str
        Its format name (:func:`medimg.io.formats.format_of`).
    decoded_bytes : int or None
        Size of the voxel data from the header, checked against a MetaImage zlib stream.
    """
    if fmt == "nifti":
        return [CompressedData(path, 0, "gzip")] if path.name.lower().endswith(".gz") else []
    if fmt == "nrrd":
        return _nrrd_streams(path)
    if fmt == "metaimage":
        return _metaimage_streams(path, decoded_bytes)
    return []


def _header_lines(path: Path, *, stop_at_blank: bool) -> tuple[list[str], int]:
    """Text lines of a header and the byte offset just after it (at most 1 MiB is read)."""
    lines: list[str] = []
    with path.open("rb") as f:
        while f.tell() < (1 << 20):
            raw = f.readline()
            if not raw:
                break
            line = raw.decode("latin-1").rstrip("\r\n")
            if stop_at_blank and not line:
                break
            lines.append(line)
            if not stop_at_blank and line.split("=")[0].strip() == "ElementDataFile":
                break
        return lines, f.tell()


def metaimage_fields(path: Path) -> tuple[dict[str, str], int]:
    """The ``Key = Value`` fields of a MetaImage header and the offset of its first data byte."""
    lines, data_start = _header_lines(path, stop_at_blank=False)
    fields: dict[str, str] = {}
    for line in lines:
        key, sep, value = line.partition("=")
        if sep:
            fields[key.strip()] = value.strip()
    return fields, data_start


_NRRD_CODECS: dict[str, Codec] = {"gzip": "gzip", "gz": "gzip", "bzip2": "bzip2", "bz2": "bzip2"}


def nrrd_fields(path: Path) -> tuple[dict[str, str], int]:
    """NRRD header fields (keys lower case without spaces) and the offset after the header."""
    lines, data_start = _header_lines(path, stop_at_blank=True)
    fields: dict[str, str] = {}
    for line in lines[1:]:
        if line.startswith("#") or ":" not in line or ":=" in line:
            continue
        key, value = line.split(":", 1)
        fields[key.strip().lower().replace(" ", "")] = value.strip()
    return fields, data_start


def _nrrd_streams(path: Path) -> list[CompressedData]:
    fields, data_start = nrrd_fields(path)
    encoding = fields.get("encoding", "raw").lower()
    codec = _NRRD_CODECS.get(encoding)
    if codec is None:
        return []
    data_file = fields.get("datafile", "")
    if not data_file:
        return [CompressedData(path, data_start, codec)]
    if " " in data_file or data_file.upper() == "LIST":
        logger.warning(
            "%s: compressed data in several files (%r) is decoded by ITK without a trailer check",
            path,
            data_file,
        )
        return []
    target = (path.parent / data_file).resolve()
    skip = int(fields.get("lineskip", "0") or 0)
    return [CompressedData(target, _after_lines(target, skip), codec)]


def _after_lines(path: Path, n_lines: int) -> int:
    if n_lines <= 0 or not path.is_file():
        return 0
    with path.open("rb") as f:
        for _ in range(n_lines):
            f.readline()
        return f.tell()


def _metaimage_streams(path: Path, decoded_bytes: int | None) -> list[CompressedData]:
    fields, data_start = metaimage_fields(path)
    if fields.get("CompressedData", "False").lower() not in ("true", "1"):
        return []
    data_file = fields.get("ElementDataFile", "LOCAL")
    if data_file.upper() == "LOCAL":
        return [CompressedData(path, data_start, "zlib", decoded_bytes)]
    if " " in data_file or data_file.upper() == "LIST" or "%" in data_file:
        logger.warning(
            "%s: compressed data in several files (%r) is decoded by ITK without a trailer check",
            path,
            data_file,
        )
        return []
    return [CompressedData((path.parent / data_file).resolve(), 0, "zlib", decoded_bytes)]
