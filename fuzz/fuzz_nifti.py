"""Fuzz NIfTI-1 and NIfTI-2 bytes through ``read_header``, ``load_volume`` and ``intensity_range``.

Run (from the repository root)::

    .venv/bin/python fuzz/fuzz_nifti.py -atheris_runs=5000 -max_len=2048

Each input is written as ``.nii`` or, when its first byte is odd, gzip-compressed as
``.nii.gz``; inputs shorter than a header are spliced onto a valid NIfTI-1 or NIfTI-2 file (the
first bytes choose which and where), so most runs reach the field checks. A finding is any
exception that is not a :class:`medimg.errors.MedimgError` (and any crash); medimg errors are
the expected answer to a bad file.
"""

from __future__ import annotations

import gzip
import io
import sys
import tempfile
import warnings
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from medimg.errors import MedimgError
    from medimg.io import intensity_range, load_volume, read_header

_STATE: dict[str, object] = {}


def _valid(version: int) -> bytes:
    import nibabel as nib
    import numpy as np

    klass = nib.Nifti2Image if version == 2 else nib.Nifti1Image
    affine = np.array([[0.9, 0, 0, -4], [0, 0, -2.5, 3], [0, 1.5, 0, 7], [0, 0, 0, 1.0]])
    img = klass(np.arange(24, dtype=np.int16).reshape(4, 3, 2), affine)
    img.set_sform(affine, 1)
    img.set_qform(affine, 1)
    bio = io.BytesIO()
    img.to_file_map(klass.make_file_map({"image": bio, "header": bio}))
    return bio.getvalue()


def _bases() -> tuple[bytes, bytes]:
    if "bases" not in _STATE:
        _STATE["bases"] = (_valid(1), _valid(2))
    bases = _STATE["bases"]
    assert isinstance(bases, tuple)
    return bases


def _input(data: bytes) -> tuple[bytes, bool]:
    if len(data) < 4:
        return _bases()[0], False
    gz = bool(data[0] & 1)
    base = _bases()[data[1] & 1]
    if len(data) >= 348:
        return data[2:], gz
    raw = bytearray(base)
    pos = int.from_bytes(data[2:4], "little") % len(raw)
    patch = data[4:]
    raw[pos : pos + len(patch)] = patch
    return bytes(raw[: len(base)]), gz


def _work_dir() -> Path:
    """A temporary folder made on first use (importing this module creates nothing)."""
    if "dir" not in _STATE:
        _STATE["dir"] = Path(tempfile.mkdtemp(prefix="fuzz_nifti_"))
    folder = _STATE["dir"]
    assert isinstance(folder, Path)
    return folder


def TestOneInput(data: bytes) -> None:
    """Write one input and read it every way; only medimg errors may escape."""
    raw, gz = _input(data)
    path = _work_dir() / ("f.nii.gz" if gz else "f.nii")
    path.write_bytes(gzip.compress(raw, mtime=0) if gz else raw)
    for read in (read_header, load_volume, intensity_range):
        try:
            read(path)
        except MedimgError:
            pass


def main() -> None:
    """Run the fuzzer with atheris' command-line options."""
    warnings.simplefilter("ignore")  # warnings are not findings; exceptions are
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
