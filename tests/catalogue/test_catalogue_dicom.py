"""Bad DICOM folders through ``medimg dicom ls`` and ``medimg convert``, pinned to code and message.

``dicom ls`` exits 2 when every series is refused (or the folder holds no DICOM image) and 1
when only some are; ``convert`` exits 1 when any series is refused or fails, 2 on a usage
error. Each refusal is an ``error:`` line naming the file, the tag, the reason and the fix.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
from catalogue_helpers import BadInput, check_bad_input

from medimg.synthetic import grid_affine
from medimg.synthetic.dicom import DicomSeriesSpec, set_raw_tag, write_dicom_series

SHAPE = (5, 4, 4)


def _series(folder: Path, modality: str = "CT", series_number: int = 1) -> list[Path]:
    affine = grid_affine(SHAPE, (0.8, 0.9, 2.5), axcodes="LPS", rotation_deg=(0.0, 8.0, 0.0))
    spec = DicomSeriesSpec(modality=modality, series_number=series_number, seed=series_number)
    return write_dicom_series(np.zeros(SHAPE), affine, folder, spec)


def _edited(
    keyword: str, raw: bytes | None, *, every: bool = False, command: str = "ls"
) -> Callable[[Path], Sequence[str]]:
    def make(tmp: Path) -> Sequence[str]:
        paths = _series(tmp / "in")
        for path in paths if every else paths[1:2]:
            set_raw_tag(path, keyword, raw)
        if command == "ls":
            return ["dicom", "ls", tmp / "in"]
        return ["convert", tmp / "in", tmp / "out"]

    return make


def _truncated(cut: int, command: str) -> Callable[[Path], Sequence[str]]:
    def make(tmp: Path) -> Sequence[str]:
        paths = _series(tmp / "in")
        paths[2].write_bytes(paths[2].read_bytes()[:cut])
        if command == "ls":
            return ["dicom", "ls", tmp / "in"]
        return ["convert", tmp / "in", tmp / "out"]

    return make


def _one_good_one_refused(tmp: Path) -> Sequence[str]:
    _series(tmp / "in" / "ct", series_number=1)
    mr = _series(tmp / "in" / "mr", modality="MR", series_number=2)
    set_raw_tag(mr[0], "ImageOrientationPatient", b"1\\0\\0\\1\\0\\0")
    return ["dicom", "ls", tmp / "in"]


def _not_dicom(tmp: Path) -> Sequence[str]:
    (tmp / "in").mkdir()
    (tmp / "in" / "notes.txt").write_text("not dicom")
    return ["dicom", "ls", tmp / "in"]


_FIX = r"fix the header or re-export the series"

CATALOGUE = [
    BadInput(
        "dicom_ct_without_image_position",
        _edited("ImagePositionPatient", None, every=True, command="convert"),
        1,
        r"error: {tmp}/in: .*refused: {tmp}/in/0001\.dcm: ImagePositionPatient \(0020,0032\) "
        r"is missing \(4 of 4 images.*the geometry is not guessed\. Re-export the series",
    ),
    BadInput(
        "dicom_slice_without_orientation",
        _edited("ImageOrientationPatient", None),
        2,
        r"error: .*{tmp}/in/0002\.dcm: ImageOrientationPatient \(0020,0037\) is missing "
        r"\(1 of 4 images.*only projection modalities",
    ),
    BadInput(
        "dicom_slice_without_pixel_spacing",
        _edited("PixelSpacing", None, command="convert"),
        1,
        r"error: .*0002\.dcm: PixelSpacing \(0028,0030\) is missing.*Re-export",
    ),
    BadInput(
        "dicom_header_truncated",
        _truncated(500, "ls"),
        2,
        r"error: .*{tmp}/in/0003\.dcm: truncated/unreadable DICOM header: .* the file ends at "
        r"byte 500.*re-copy the file",
    ),
    BadInput(
        "dicom_header_unparsable",
        _truncated(153, "convert"),
        1,
        r"error: .*0003\.dcm: truncated/unreadable DICOM header \(pydicom: error: unpack.*"
        r"re-copy the file",
    ),
    BadInput(
        "dicom_pixel_data_truncated",
        _truncated(-10, "ls"),
        2,
        r"error: .*0003\.dcm: truncated pixel data: PixelData \(7FE0,0010\) must hold 40 bytes"
        r".*re-copy it",
    ),
    BadInput(
        "dicom_position_nan",
        _edited("ImagePositionPatient", b"nan\\0\\0"),
        2,
        r"0002\.dcm: ImagePositionPatient \(0020,0032\) must be finite, got 'nan.*" + _FIX,
    ),
    BadInput(
        "dicom_spacing_overflow",
        _edited("PixelSpacing", b"1e400\\1", command="convert"),
        1,
        r"0002\.dcm: PixelSpacing \(0028,0030\) must be finite, got '1e400.*" + _FIX,
    ),
    BadInput(
        "dicom_orientation_zero_vector",
        _edited("ImageOrientationPatient", b"0\\0\\0\\0\\1\\0"),
        2,
        r"0002\.dcm: ImageOrientationPatient \(0020,0037\) must hold two unit vectors.*" + _FIX,
    ),
    BadInput(
        "dicom_orientation_not_orthogonal",
        _one_good_one_refused,
        1,
        r"error: .*refused: .*mr/0001\.dcm: ImageOrientationPatient \(0020,0037\) must hold two "
        r"orthogonal vectors, got an angle of 0\.00 degrees",
    ),
    BadInput(
        "dicom_rows_zero",
        _edited("Rows", b"\x00\x00"),
        2,
        r"0002\.dcm: Rows \(0028,0010\) must be >= 1, got 0.*" + _FIX,
    ),
    BadInput(
        "dicom_rows_do_not_match_pixel_data",
        _edited("Columns", b"\x02\x00", command="convert"),
        1,
        r"0002\.dcm: PixelData \(7FE0,0010\) must hold 16 bytes .* found 40; Rows/Columns do "
        r"not match the pixel data",
    ),
    BadInput(
        "dicom_bits_stored_over_allocated",
        _edited("BitsStored", b"\x11\x00"),
        2,
        r"0002\.dcm: BitsStored \(0028,0101\) must be between 1 and BitsAllocated \(16\), "
        r"got 17.*" + _FIX,
    ),
    BadInput(
        "dicom_pixel_representation_invalid",
        _edited("PixelRepresentation", b"\x07\x00"),
        2,
        r"PixelRepresentation \(0028,0103\) must be 0 \(unsigned\) or 1 \(signed\), got 7",
    ),
    BadInput(
        "dicom_unknown_transfer_syntax",
        _edited("TransferSyntaxUID", b"1.2.3.4", command="convert"),
        1,
        r"0002\.dcm: TransferSyntaxUID \(0002,0010\) must be a DICOM transfer syntax, got "
        r"'1\.2\.3\.4'; re-export the file",
    ),
    BadInput(
        "dicom_rescale_slope_zero",
        _edited("RescaleSlope", b"0"),
        2,
        r"RescaleSlope \(0028,1053\) must be a finite, non-zero number, got '0'.*" + _FIX,
    ),
    BadInput(
        "dicom_undecodable_value",
        _edited("NumberOfFrames", b"1e400"),
        2,
        r"0002\.dcm: NumberOfFrames \(0028,0008\) holds a value that cannot be decoded "
        r"\(pydicom: OverflowError.*" + _FIX,
    ),
    BadInput(
        "dicom_folder_without_images",
        _not_dicom,
        2,
        r"error: {tmp}/in: holds no DICOM image \(1 files left out, e\.g\. .*notes\.txt: not a "
        r"DICOM file\); point to the folder",
    ),
]


@pytest.mark.parametrize("entry", CATALOGUE, ids=lambda e: e.kind)
def test_dicom_bad_input(entry: BadInput, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    check_bad_input(entry, tmp_path, capsys)
    assert not list(tmp_path.glob("out/*.nii.gz"))  # a refused series is never written
