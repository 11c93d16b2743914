"""Siemens CSA headers: the private (0029,1010) image and (0029,1020) series header blocks.

Both blocks use one little-endian layout in two versions. *CSA2* starts with ``b"SV10"``,
four unused bytes, then ``uint32 n_tags`` and ``uint32`` 77; *CSA1* (older software) starts
directly with ``n_tags`` and 77. Each tag is 84 bytes: a NUL-terminated 64-byte name, ``int32
vm``, a 4-byte VR, ``int32 syngodt``, ``int32 n_items`` and ``int32`` 77 or 205. Each item is
four ``int32`` followed by its value, padded to 4 bytes; the value length is the second
integer in CSA2 and, in CSA1, the first minus the first tag's ``n_items`` (as SPM and AFNI
read it). Values are NUL-terminated text.

Parsing is bounded: at most :data:`MAX_TAGS` tags and :data:`MAX_ITEMS` items per tag, every
length checked against the bytes left, so a damaged or hostile header fails with a
:class:`~medimg.errors.DicomSeriesError` naming the file, the header and the offset, never
with an ``IndexError`` or a huge allocation. The series header's ``MrPhoenixProtocol`` holds
the protocol as text; :func:`ascconv` reads its ``### ASCCONV BEGIN`` section (``key = value``
lines) with the same care.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping

from medimg.errors import DicomSeriesError

__all__ = ["MAX_ITEMS", "MAX_TAGS", "ascconv", "parse_csa"]

MAX_TAGS = 1024
"""More tags than any Siemens header holds (about 100): more is a damaged header."""
MAX_ITEMS = 4096
"""Most items one tag may hold."""
_MAX_ASCCONV_LINES = 100_000

_TAG = struct.Struct("<64si4s3i")
_ITEM = struct.Struct("<4i")


def _fail(where: str, what: str) -> DicomSeriesError:
    return DicomSeriesError(
        f"{where}: Siemens CSA header {what}; the private header is damaged (re-export the "
        "series from the scanner, or convert it with the vendor's tools)"
    )


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("latin-1").strip()


def parse_csa(data: bytes, where: str) -> dict[str, tuple[str, ...]]:
    """The tags of one CSA header block, as text values.

    Parameters
    ----------
    data : bytes
        Value of (0029,1010) or (0029,1020).
    where : str
        Names the file and element in error messages.

    Returns
    -------
    dict of str to tuple of str
        Tag name to its non-empty item values (text, stripped), in order.

    Raises
    ------
    DicomSeriesError
        When the block is cut short, claims more tags or items than :data:`MAX_TAGS` /
        :data:`MAX_ITEMS`, or an item runs past the end.

    Examples
    --------
    >>> parse_csa(b"SV10" + bytes(12), "x.dcm (0029,1010)")
    {}
    """
    data = bytes(data)
    csa2 = data[:4] == b"SV10"
    offset = 8 if csa2 else 0
    if len(data) < offset + 8:
        raise _fail(where, f"must hold at least {offset + 8} bytes, got {len(data)}")
    n_tags, _check = struct.unpack_from("<2I", data, offset)
    if n_tags > MAX_TAGS:
        raise _fail(where, f"claims {n_tags} tags (at most {MAX_TAGS} are read)")
    offset += 8
    tags: dict[str, tuple[str, ...]] = {}
    first_items: int | None = None
    for index in range(n_tags):
        if offset + _TAG.size > len(data):
            raise _fail(where, f"ends inside tag {index + 1} of {n_tags} (offset {offset})")
        name_raw, _vm, _vr, _syngodt, n_items, _xx = _TAG.unpack_from(data, offset)
        offset += _TAG.size
        name = _text(name_raw)
        if not 0 <= n_items <= MAX_ITEMS:
            raise _fail(where, f"tag {name!r} claims {n_items} items (0..{MAX_ITEMS} allowed)")
        if first_items is None:
            first_items = n_items
        values: list[str] = []
        for item in range(n_items):
            if offset + _ITEM.size > len(data):
                raise _fail(where, f"ends inside item {item + 1} of tag {name!r}")
            xx = _ITEM.unpack_from(data, offset)
            offset += _ITEM.size
            length = xx[1] if csa2 else xx[0] - first_items
            if length < 0 or offset + length > len(data):
                raise _fail(
                    where,
                    f"item {item + 1} of tag {name!r} must fit the {len(data)} bytes, got "
                    f"length {length} at offset {offset}",
                )
            text = _text(data[offset : offset + length])
            if text:
                values.append(text)
            offset += length + (-length % 4)
        tags[name] = tuple(values)
    return tags


def ascconv(protocol: str, where: str) -> Mapping[str, str]:
    """The ``key = value`` lines of a protocol's ASCCONV section (empty when it has none).

    Raises
    ------
    DicomSeriesError
        When the section has more than 100,000 lines (a damaged header).

    Examples
    --------
    >>> text = ["### ASCCONV BEGIN ###", "sSliceArray.lSize = 3", "### ASCCONV END ###"]
    >>> dict(ascconv(chr(10).join(text), "x.dcm"))
    {'sSliceArray.lSize': '3'}
    """
    begin = protocol.find("### ASCCONV BEGIN")
    end = protocol.find("### ASCCONV END", begin + 1)
    if begin < 0 or end < 0:
        return {}
    lines = protocol[begin:end].splitlines()[1:]
    if len(lines) > _MAX_ASCCONV_LINES:
        raise _fail(where, f"ASCCONV section has {len(lines)} lines (damaged protocol)")
    out: dict[str, str] = {}
    for line in lines:
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.split("#", 1)[0].strip().strip('"')
    return out
