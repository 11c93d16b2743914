"""The package format: member names, the manifest, and reading a zip without trusting it.

A package is a zip archive written only by :func:`medimg.packages.pack_model`: members in the
order ``MANIFEST.json``, ``SIGNATURE`` (when signed), then the manifest's ``members`` list; no
folders, no comments, no extra fields, every member dated :data:`ZIP_DATE`. :func:`read_members`
refuses anything else before a byte of any member is interpreted: a path outside the archive,
a duplicate or odd name, a symlink, an over-large member or one that inflates too much.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import stat
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from medimg.errors import PackageError

__all__ = [
    "CARD",
    "CONTRACT",
    "FINGERPRINT",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "MANIFEST",
    "MAX_MEMBERS",
    "MAX_MEMBER_BYTES",
    "MAX_METADATA_BYTES",
    "MODEL_RECORD",
    "ONNX",
    "PACKAGE_SUFFIX",
    "READABLE_FORMATS",
    "SIGNATURE",
    "WEIGHTS",
    "ZIP_DATE",
    "canonical_json",
    "check_member_info",
    "parse_json_member",
    "read_members",
]

PACKAGE_SUFFIX = ".medimg"
"""The file extension of a model package (a zip archive)."""

FORMAT_NAME = "medimg-model-package"
FORMAT_VERSION = 1
"""The package format this medimg writes."""
READABLE_FORMATS = (1,)
"""The package formats this medimg reads."""

MANIFEST = "MANIFEST.json"
SIGNATURE = "SIGNATURE"
MODEL_RECORD = "model.json"
WEIGHTS = "weights.safetensors"
FINGERPRINT = "fingerprint.json"
CONTRACT = "contract.json"
CARD = "card.md"
ONNX = "network.onnx"

ZIP_DATE = (1980, 1, 1, 0, 0, 0)
"""The date of every member: a package's bytes depend on its contents only."""

MAX_MEMBERS = 256
MAX_MEMBER_BYTES = 16 * 1024**3
"""Largest member (weights or ONNX) read, uncompressed."""
MAX_METADATA_BYTES = 64 * 1024**2
"""Largest member other than the weights and the ONNX network."""
_MAX_RATIO = 200
"""Largest uncompressed/compressed ratio of a member over 1 MiB (a zip bomb inflates more)."""

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)*")
_FIX = "get the package again from whoever made it (medimg model pack writes it)"


def canonical_json(value: Mapping[str, Any]) -> bytes:
    r"""The canonical bytes of a JSON object: sorted keys, no spaces, ASCII, a final newline.

    Examples
    --------
    >>> canonical_json({"b": 1, "a": [1, 2]})
    b'{"a":[1,2],"b":1}\n'
    """
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return text.encode("ascii") + b"\n"


def _size_limit(name: str) -> int:
    return MAX_MEMBER_BYTES if name in (WEIGHTS, ONNX) else MAX_METADATA_BYTES


def check_member_info(package: Path, info: zipfile.ZipInfo) -> None:
    """Refuse one zip entry whose name, type, size or compression a package never has."""
    name = info.filename
    where = f"{package}: member {name!r}"
    if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name) or "\\" in name:
        raise PackageError(f"{where} has an absolute path, outside the package; {_FIX}")
    if ".." in name.split("/"):
        raise PackageError(f"{where} points outside the package ('..'); {_FIX}")
    if not _NAME.fullmatch(name) or len(name) > 200:
        raise PackageError(
            f"{where} is not a member name a package holds (letters, digits, '_', '-', '.', "
            f"'/' between folders, at most 200 characters); {_FIX}"
        )
    mode = info.external_attr >> 16
    if info.is_dir() or (stat.S_IFMT(mode) and not stat.S_ISREG(mode)):
        kind = "a symbolic link" if stat.S_ISLNK(mode) else "not a regular file"
        raise PackageError(f"{where} is {kind}; a package holds regular files only; {_FIX}")
    if info.flag_bits & 0x1:
        raise PackageError(f"{where} uses zip encryption, which packages never use; {_FIX}")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise PackageError(
            f"{where} is compressed with zip method {info.compress_type}; a package uses only "
            f"stored or deflated members; {_FIX}"
        )
    if info.file_size > _size_limit(name):
        raise PackageError(
            f"{where} would inflate to {info.file_size} bytes, over the limit of "
            f"{_size_limit(name)} bytes; {_FIX}"
        )
    if info.file_size > 1 << 20 and info.file_size > _MAX_RATIO * max(info.compress_size, 1):
        raise PackageError(
            f"{where} inflates {info.file_size / max(info.compress_size, 1):.0f}-fold "
            f"(at most {_MAX_RATIO}-fold is accepted: a zip bomb inflates more); {_FIX}"
        )


def read_members(package: Path) -> tuple[list[zipfile.ZipInfo], dict[str, bytes], str]:
    """The entries and bytes of every member of ``package``, and the file's SHA-256.

    The file is read once; every entry is checked (:func:`check_member_info`) before any is
    read; each is then read with zip's CRC-32 check and never past its declared size.

    Raises
    ------
    PackageError
        When ``package`` is no zip archive (or was cut short), has a duplicate name, a path
        outside itself, a symlink, a folder, too many members, an over-large member, or a
        member whose bytes fail the zip's CRC-32.
    OSError
        When the file cannot be read.
    """
    whole = package.read_bytes()
    try:
        archive = zipfile.ZipFile(io.BytesIO(whole))
    except zipfile.BadZipFile as exc:
        raise PackageError(
            f"{package}: not a medimg package: not a complete zip archive ({exc}); it is "
            f"truncated or not a package; {_FIX}"
        ) from None
    with archive:
        infos = archive.infolist()
        if len(infos) > MAX_MEMBERS:
            raise PackageError(
                f"{package}: holds {len(infos)} members, more than a package has "
                f"({MAX_MEMBERS}); {_FIX}"
            )
        seen: set[str] = set()
        for info in infos:
            if info.filename in seen:
                raise PackageError(f"{package}: member {info.filename!r} appears twice; {_FIX}")
            seen.add(info.filename)
            check_member_info(package, info)
        data: dict[str, bytes] = {}
        for info in infos:
            try:
                with archive.open(info) as f:
                    data[info.filename] = f.read(info.file_size + 1)
            except (zipfile.BadZipFile, EOFError, ValueError) as exc:  # CRC, truncated, bad header
                raise PackageError(
                    f"{package}: member {info.filename!r} is damaged ({exc}); {_FIX}"
                ) from None
            if len(data[info.filename]) != info.file_size:
                raise PackageError(
                    f"{package}: member {info.filename!r} holds {len(data[info.filename])} "
                    f"bytes, its zip entry declares {info.file_size}; {_FIX}"
                )
    return infos, data, hashlib.sha256(whole).hexdigest()


def parse_json_member(package: Path, name: str, data: bytes) -> dict[str, Any]:
    """A member's JSON object; :class:`PackageError` naming the package and member."""
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PackageError(
            f"{package}: member {name!r} is not UTF-8 JSON ({exc}); {_FIX}"
        ) from None
    if not isinstance(value, dict):
        raise PackageError(
            f"{package}: member {name!r} must hold a JSON object, got {type(value).__name__}; "
            f"{_FIX}"
        )
    return value
