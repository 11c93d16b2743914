"""Fuzz the DICOM series reader with mutated copies of one slice of a small valid series.

Run (from the repository root)::

    .venv/bin/python fuzz/fuzz_dicom.py -atheris_runs=5000

Each input is decoded into a few edits of the middle slice of a 3-slice synthetic CT (bytes
overwritten, inserted or cut off, or one header tag given a raw value from a list of
troublesome ones: ``nan``, ``1e400``, zero-length vectors, huge or zero sizes, unknown transfer
syntaxes...); with its first byte odd, the input bytes themselves are the slice file. The
folder then goes through the reader entry points that ``medimg dicom ls``, ``medimg convert``
and a manifest's series folder use: :func:`~medimg.io.dicom.scan_dicom_folder` (headers only
and with pixels), :func:`~medimg.io.dicom.read_dicom_header`,
:func:`~medimg.io.dicom.load_dicom_series` and :func:`~medimg.io.dicom.read_series` on every
candidate. A :class:`~medimg.errors.MedimgError` is the expected outcome of a bad input; any
other exception is a finding (atheris stops and writes the crashing input). When no error is
raised, the volume's affine must be finite and its spacing > 0 (an AssertionError otherwise).

Importing this module does nothing; the temporary folder is made on the first input.
"""

from __future__ import annotations

import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

_STATE: dict[str, Any] = {}
_EDIT_ERRORS: tuple[type[BaseException], ...] = ()

_TAGS = (
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "PixelSpacing",
    "SliceThickness",
    "Rows",
    "Columns",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "SamplesPerPixel",
    "NumberOfFrames",
    "RescaleSlope",
    "RescaleIntercept",
    "TransferSyntaxUID",
    "SOPInstanceUID",
    "SeriesInstanceUID",
    "Modality",
    "PhotometricInterpretation",
    "InstanceNumber",
    "PixelData",
)
_VALUES = (
    None,
    b"",
    b"0",
    b"-1",
    b"nan",
    b"1e400",
    b"-inf",
    b"abc",
    b"0\\0\\0",
    b"nan\\0\\0",
    b"1\\0\\0\\0\\0\\0",
    b"1\\0\\0\\1\\0\\0",
    b"0\\0\\0\\0\\0\\0",
    b"1\\2",
    b"1\\2\\3",
    b"2147483647",
    b"\x00\x00",
    b"\x01\x00",
    b"\xff\xff",
    b"\x0c\x00",
    b"\x20\x00",
    b"1.2.3.4",
    b"1.2.840.10008.1.2.4.100",
    b"1.2.840.10008.1.2.5",
    b"1.2.840.10008.1.2.2",
    b"CT",
    b"DX",
    b"MONOCHROME1",
    b"\x00" * 7,
)


def _setup() -> tuple[Path, Path, bytes]:
    """A 3-slice oblique CT in a temporary folder; returns (folder, middle slice, its bytes)."""
    import numpy as np

    from medimg.synthetic import grid_affine
    from medimg.synthetic.dicom import DicomSeriesSpec, write_dicom_series

    folder = Path(tempfile.mkdtemp(prefix="medimg_fuzz_dicom_"))
    shape = (5, 4, 3)
    affine = grid_affine(shape, (0.8, 0.9, 2.5), axcodes="LPS", rotation_deg=(10.0, 0.0, 5.0))
    values = np.arange(np.prod(shape)).reshape(shape) - 20
    paths = write_dicom_series(values, affine, folder, DicomSeriesSpec(rescale_intercept=-1024))
    return folder, paths[1], paths[1].read_bytes()


def _edit_errors() -> tuple[type[BaseException], ...]:
    import struct

    from pydicom.errors import InvalidDicomError

    return (
        InvalidDicomError,
        ValueError,
        TypeError,
        KeyError,
        AttributeError,
        IndexError,
        OverflowError,
        EOFError,
        OSError,
        NotImplementedError,
        struct.error,
    )


def _mutate(data: bytes, good: bytes, target: Path) -> None:
    import atheris

    from medimg.synthetic.dicom import set_raw_tag

    fdp = atheris.FuzzedDataProvider(data)
    if fdp.ConsumeIntInRange(0, 7) == 7:
        target.write_bytes(fdp.ConsumeBytes(fdp.remaining_bytes()))
        return
    target.write_bytes(good)
    for _ in range(fdp.ConsumeIntInRange(1, 3)):
        op = fdp.ConsumeIntInRange(0, 4)
        if op <= 1:  # a raw tag value (or its removal)
            keyword = _TAGS[fdp.ConsumeIntInRange(0, len(_TAGS) - 1)]
            value = _VALUES[fdp.ConsumeIntInRange(0, len(_VALUES) - 1)]
            try:
                set_raw_tag(target, keyword, value)
            except _EDIT_ERRORS:
                return  # pydicom cannot re-read or re-write an earlier edit: keep what is there
            continue
        blob = bytearray(target.read_bytes())
        at = fdp.ConsumeIntInRange(0, max(len(blob) - 1, 0))
        if op == 2:
            chunk = fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 8))
            blob[at : at + len(chunk)] = chunk
        elif op == 3:
            blob[at:at] = fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 8))
        else:
            del blob[at:]
        target.write_bytes(bytes(blob))


def _check_volume(volume: Any) -> None:
    import numpy as np

    affine = np.asarray(volume.affine, dtype=np.float64)
    assert np.isfinite(affine).all(), affine
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    assert (spacing > 0).all(), spacing


def run_one(folder: Path) -> None:
    """Every reader entry point on ``folder``; only MedimgError may escape (and is caught)."""
    from medimg.errors import MedimgError
    from medimg.io.dicom import (
        load_dicom_series,
        read_dicom_header,
        read_series,
        scan_dicom_folder,
    )

    try:
        scan_dicom_folder(folder, pixels=False)
    except MedimgError:
        pass
    try:
        read_dicom_header(folder)
    except MedimgError:
        pass
    try:
        _check_volume(load_dicom_series(folder))
    except MedimgError:
        pass
    try:
        scan = scan_dicom_folder(folder, pixels=True)
    except MedimgError:
        return
    for series in scan.series:
        try:
            _check_volume(read_series(series))
        except MedimgError:
            pass


def TestOneInput(data: bytes) -> None:
    """One fuzz input: mutate the middle slice, then read the folder."""
    if not _STATE:
        _STATE["folder"], _STATE["target"], _STATE["good"] = _setup()
        global _EDIT_ERRORS
        _EDIT_ERRORS = _edit_errors()
    _mutate(data, _STATE["good"], _STATE["target"])
    run_one(_STATE["folder"])


def main() -> None:
    """Run atheris on :func:`TestOneInput` with ``sys.argv``."""
    import logging

    import atheris

    logging.disable(logging.CRITICAL)
    warnings.simplefilter("ignore")  # pydicom's value warnings are not findings
    with atheris.instrument_imports(include=["medimg"]):
        import medimg.io.dicom  # instrumented for coverage guidance
        import medimg.synthetic.dicom  # noqa: F401
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
