"""Fuzz the Siemens CSA header parser and the mosaic reader built on it.

Run (from the repository root)::

    .venv/bin/python fuzz/fuzz_csa.py -atheris_runs=5000

Each input is used three ways: as a CSA header block on its own
(:func:`medimg.io.dicom._csa.parse_csa`, and its text through
:func:`~medimg.io.dicom._csa.ascconv`); spliced over a valid CSA2 image header (bytes
overwritten from an offset the input chooses); and, mutated that way, as the (0029,1010) image
header and (0029,1020) series header of a valid synthetic mosaic, whose slices are then made by
:func:`medimg.io.dicom._frames.frames_of` (the scan's entry point). A
:class:`~medimg.errors.MedimgError` is the expected answer to a bad header; any other exception
is a finding. When the mosaic is accepted, every slice must have a finite position and a tile
inside the mosaic (an AssertionError otherwise).

Importing this module does nothing; the synthetic mosaic is made on the first input.
"""

from __future__ import annotations

import math
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

_STATE: dict[str, Any] = {}


def _setup() -> dict[str, Any]:
    import numpy as np
    import pydicom

    from medimg.synthetic import grid_affine
    from medimg.synthetic.dicom_mosaic import write_mosaic_series

    folder = Path(tempfile.mkdtemp(prefix="medimg-fuzz-csa-"))
    affine = grid_affine((4, 3, 5), (2.0, 2.0, 3.0), axcodes="LPS", rotation_deg=(5.0, 0, 0))
    (path,) = write_mosaic_series(np.zeros((1, 4, 3, 5)), affine, folder)
    ds = pydicom.dcmread(path)
    return {
        "path": path,
        "ds": ds,
        "image": bytes(ds[0x00291010].value),
        "series": bytes(ds[0x00291020].value),
    }


def _splice(good: bytes, data: bytes) -> bytes:
    if not data:
        return good
    at = data[0] * len(good) // 256
    body = data[1:]
    cut = bool(data[0] & 1)
    return good[:at] + body + (b"" if cut else good[at + len(body) :])


def _check(frames: list[Any]) -> None:
    for frame in frames:
        if frame.problems or frame.tile is None:
            continue
        assert all(math.isfinite(v) for v in frame.position_lps)
        row0, col0 = frame.tile
        assert 0 <= row0
        assert row0 + frame.rows <= int(frame.dataset.Rows)
        assert 0 <= col0
        assert col0 + frame.columns <= int(frame.dataset.Columns)


def TestOneInput(data: bytes) -> None:
    """One fuzz input: parse it, splice it into a valid header, read a mosaic with it."""
    from medimg.errors import MedimgError
    from medimg.io.dicom._csa import ascconv, parse_csa
    from medimg.io.dicom._frames import frames_of

    if not _STATE:
        _STATE.update(_setup())
    for block in (data, _splice(_STATE["image"], data)):
        try:
            tags = parse_csa(block, "fuzz")
            for values in tags.values():
                for value in values:
                    ascconv(value, "fuzz")
        except MedimgError:
            pass
    ds = _STATE["ds"]
    which = 0x00291010 if not data or data[-1] & 1 else 0x00291020
    ds[0x00291010].value = _STATE["image"]
    ds[0x00291020].value = _STATE["series"]
    good = _STATE["image"] if which == 0x00291010 else _STATE["series"]
    ds[which].value = _splice(good, data)
    try:
        _check(frames_of(ds, _STATE["path"]))
    except MedimgError:
        pass


def main() -> None:
    """Run atheris on :func:`TestOneInput` with ``sys.argv``."""
    import logging

    import atheris

    logging.disable(logging.CRITICAL)
    warnings.simplefilter("ignore")
    with atheris.instrument_imports(include=["medimg"]):
        import medimg.io.dicom._csa
        import medimg.io.dicom._mosaic  # noqa: F401
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
