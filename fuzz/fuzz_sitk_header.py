"""Fuzz NRRD and MetaImage header text through ``read_header``, ``load_volume`` and ``info``.

Run (from the repository root)::

    .venv/bin/python fuzz/fuzz_sitk_header.py -atheris_runs=5000 -max_len=1024

The first byte chooses NRRD or MetaImage and whether the body is compressed; the rest replaces
a stretch of a valid header's text (keeping its data), so the fuzzer mutates field names,
values, counts and separators. A finding is any exception that is not a
:class:`medimg.errors.MedimgError`, and any crash of the process (ITK segfaults on some headers,
which is why medimg checks counts before ITK reads them).
"""

from __future__ import annotations

import bz2
import sys
import tempfile
import warnings
import zlib
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from medimg.errors import MedimgError
    from medimg.io import intensity_range, load_volume, read_header

_STATE: dict[str, object] = {}
_BODY = bytes(range(48))  # 4 x 3 x 2 int16

_NRRD = (
    "NRRD0004\ntype: short\ndimension: 3\nspace: left-posterior-superior\nsizes: 4 3 2\n"
    "space directions: (0.9,0,0) (0,1.2,0.9) (0,-1.5,2.0)\nkinds: domain domain domain\n"
    "endian: little\nencoding: {encoding}\nspace origin: (10,-5,30)\n"
)
_MHA = (
    "ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\n"
    "CompressedData = {compressed}\nTransformMatrix = 0.6 0.8 0 -0.8 0.6 0 0 0 1\n"
    "Offset = 10 -5 30\nElementSpacing = 1 1.5 2.5\nDimSize = 4 3 2\nElementType = MET_SHORT\n"
)


def _file(data: bytes) -> tuple[str, bytes]:
    mode = data[0] if data else 0
    text = data[3:].decode("latin-1")
    pos = int.from_bytes(data[1:3], "little") if len(data) >= 3 else 0
    if mode & 1:
        compressed = bool(mode & 2)
        header = _MHA.format(compressed="True" if compressed else "False")
        body = zlib.compress(_BODY) if compressed else _BODY
        pos %= len(header)
        header = header[:pos] + text + header[pos + len(text) :]
        return "f.mha", (header + "ElementDataFile = LOCAL\n").encode("latin-1") + body
    encoding = ("raw", "gzip", "bzip2", "raw")[(mode >> 1) & 3]
    body = {"raw": _BODY, "gzip": zlib.compress(_BODY, wbits=31), "bzip2": bz2.compress(_BODY)}
    header = _NRRD.format(encoding=encoding)
    pos %= len(header)
    header = header[:pos] + text + header[pos + len(text) :]
    return "f.nrrd", (header + "\n").encode("latin-1") + body[encoding]


def _work_dir() -> Path:
    """A temporary folder made on first use (importing this module creates nothing)."""
    if "dir" not in _STATE:
        _STATE["dir"] = Path(tempfile.mkdtemp(prefix="fuzz_sitk_"))
    folder = _STATE["dir"]
    assert isinstance(folder, Path)
    return folder


def TestOneInput(data: bytes) -> None:
    """Write one header and read it every way; only medimg errors may escape."""
    name, raw = _file(data)
    path = _work_dir() / name
    path.write_bytes(raw)
    for read in (read_header, load_volume, intensity_range):
        try:
            read(path)
        except MedimgError:
            pass


def main() -> None:
    """Run the fuzzer with atheris' command-line options."""
    warnings.simplefilter("ignore")
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
