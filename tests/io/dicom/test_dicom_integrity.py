"""DICOM integrity (issue 12 item 5): geometry is never guessed, broken headers are named."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from medimg.cli import main
from medimg.errors import DicomSeriesError
from medimg.io.dicom import SelectionRules, load_dicom_series, read_dicom_header, scan_dicom_folder
from medimg.io.dicom.convert import convert_dicom_folder
from medimg.synthetic import grid_affine
from medimg.synthetic.dicom import DicomSeriesSpec, set_raw_tag, write_dicom_series

SHAPE = (5, 4, 6)  # columns, rows, slices: 5 x 4 x 2 bytes = 40 bytes of pixels per slice


def _series(folder: Path, *, modality: str = "CT", series_number: int = 1) -> list[Path]:
    affine = grid_affine(SHAPE, (0.8, 0.9, 2.5), axcodes="LPS", rotation_deg=(10.0, 0.0, 5.0))
    values = np.arange(np.prod(SHAPE)).reshape(SHAPE) - 50
    spec = DicomSeriesSpec(modality=modality, series_number=series_number, seed=series_number)
    return write_dicom_series(values, affine, folder, spec)


def test_ct_without_position_is_refused_not_read_as_projections(tmp_path):
    paths = _series(tmp_path / "ct")
    for path in paths:
        set_raw_tag(path, "ImagePositionPatient", None)
    message = r"0001\.dcm: ImagePositionPatient \(0020,0032\) is missing \(6 of 6 images"
    with pytest.raises(DicomSeriesError, match=message + r".*only projection modalities"):
        load_dicom_series(tmp_path / "ct")
    with pytest.raises(DicomSeriesError, match="the geometry is not guessed"):
        read_dicom_header(tmp_path / "ct")
    result = convert_dicom_folder(tmp_path / "ct", tmp_path / "out")
    assert result.written == ()
    assert len(result.failed) == 1
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize(
    ("modality", "keyword", "tag"),
    [
        ("MR", "ImageOrientationPatient", "(0020,0037)"),
        ("PT", "PixelSpacing", "(0028,0030)"),
        ("US", "ImagePositionPatient", "(0020,0032)"),
        ("OT", "ImageOrientationPatient", "(0020,0037)"),
    ],
)
def test_cross_sectional_slice_without_geometry_names_the_tag(tmp_path, modality, keyword, tag):
    paths = _series(tmp_path, modality="MR")
    for path in paths:
        set_raw_tag(path, "Modality", modality.encode())
    set_raw_tag(paths[2], keyword, None)  # one slice lacks it
    with pytest.raises(
        DicomSeriesError,
        match=rf"0003\.dcm: {keyword} \({tag[1:-1]}\) is missing \(1 of 6 images.* a {modality} ",
    ):
        load_dicom_series(tmp_path)


def test_projection_modality_without_position_still_reads_as_2d(tmp_path):
    paths = _series(tmp_path, modality="DX")
    for path in paths[1:]:
        path.unlink()
    set_raw_tag(paths[0], "ImagePositionPatient", None)
    set_raw_tag(paths[0], "ImagerPixelSpacing", b"0.9\\0.8")
    volume = load_dicom_series(tmp_path)
    assert volume.spatial_shape == (5, 4)


@pytest.mark.parametrize("cut", [150, 400, 700])
def test_slice_truncated_in_its_header_is_named(tmp_path, cut, capsys):
    paths = _series(tmp_path)
    paths[3].write_bytes(paths[3].read_bytes()[:cut])
    with pytest.raises(DicomSeriesError, match=r"0004\.dcm: truncated/unreadable DICOM header"):
        load_dicom_series(tmp_path)
    assert main(["dicom", "ls", str(tmp_path)]) == 2
    out = capsys.readouterr()
    assert "0004.dcm: truncated/unreadable DICOM header" in out.out
    assert "missing slice" not in out.out + out.err


def test_a_truncated_end_slice_leaves_no_gap_but_is_still_refused(tmp_path):
    paths = _series(tmp_path)
    paths[-1].write_bytes(paths[-1].read_bytes()[:300])
    with pytest.raises(DicomSeriesError, match=r"0006\.dcm: truncated/unreadable DICOM header"):
        read_dicom_header(tmp_path)


def test_header_pydicom_cannot_parse_gives_its_reason(tmp_path):
    paths = _series(tmp_path)
    paths[1].write_bytes(paths[1].read_bytes()[:153])  # pydicom: struct.error in the meta
    scan = scan_dicom_folder(tmp_path)
    (series,) = scan.series
    assert "0002.dcm: truncated/unreadable DICOM header (pydicom: error: unpack" in series.refused
    assert any("0002.dcm: truncated/unreadable DICOM header" in line for line in scan.left_out)


def test_truncated_pixel_data_is_seen_from_headers_alone(tmp_path):
    paths = _series(tmp_path)
    paths[2].write_bytes(paths[2].read_bytes()[:-20])
    with pytest.raises(DicomSeriesError, match=r"0003\.dcm: .*PixelData \(7FE0,0010\)"):
        read_dicom_header(tmp_path)  # headers only
    with pytest.raises(DicomSeriesError, match=r"0003\.dcm: .*PixelData \(7FE0,0010\)"):
        load_dicom_series(tmp_path)


@pytest.mark.parametrize(
    ("keyword", "raw", "match"),
    [
        (
            "ImagePositionPatient",
            b"nan\\0\\0",
            r"ImagePositionPatient \(0020,0032\) must be finite",
        ),
        ("ImagePositionPatient", b"1e400\\0\\0", r"\(0020,0032\) must be finite, got '1e400"),
        ("ImagePositionPatient", b"abc\\0\\0", r"\(0020,0032\) must be 3 numbers, got 'abc"),
        ("ImagePositionPatient", b"1\\2", r"\(0020,0032\) must be 3 numbers, got 2"),
        ("ImageOrientationPatient", b"0\\0\\0\\0\\1\\0", r"\(0020,0037\) must hold two unit"),
        ("ImageOrientationPatient", b"1\\0\\0\\0.6\\0.8\\0", r"orthogonal vectors, got .* 53\.13"),
        ("PixelSpacing", b"0\\1", r"PixelSpacing \(0028,0030\) must be > 0 mm"),
        ("PixelSpacing", b"-1\\1", r"PixelSpacing \(0028,0030\) must be > 0 mm"),
        ("PixelSpacing", b"inf\\1", r"PixelSpacing \(0028,0030\) must be finite"),
        ("Rows", b"\x00\x00", r"Rows \(0028,0010\) must be >= 1, got 0"),
        ("Rows", b"\x08\x00", r"PixelData \(7FE0,0010\) must hold 80 bytes .* found 40"),
        ("Rows", b"\x02\x00", r"must hold 20 bytes .* found 40; Rows/Columns do not match"),
        ("BitsAllocated", b"\x0c\x00", r"BitsAllocated \(0028,0100\) must be 1, 8, 16, 32 or 64"),
        ("BitsStored", b"\x11\x00", r"BitsStored \(0028,0101\) must be between 1 and"),
        ("HighBit", b"\x03\x00", r"HighBit \(0028,0102\) must be BitsStored - 1 \(15\), got 3"),
        ("PixelRepresentation", b"\x02\x00", r"PixelRepresentation \(0028,0103\) must be 0"),
        ("BitsAllocated", None, r"BitsAllocated \(0028,0100\) is missing"),
        ("TransferSyntaxUID", b"1.2.3.4", r"TransferSyntaxUID \(0002,0010\) must be a DICOM"),
        ("TransferSyntaxUID", b"1.2.840.10008.1.2.4.100", r"MPEG2.* has no pixel decoder"),
        ("RescaleSlope", b"0", r"RescaleSlope \(0028,1053\) must be a finite, non-zero"),
        ("RescaleIntercept", b"nan", r"RescaleIntercept \(0028,1052\) must be finite"),
        ("NumberOfFrames", b"2000000000", r"PixelData \(7FE0,0010\) must hold 80000000000 "),
        ("NumberOfFrames", b"0", r"NumberOfFrames \(0028,0008\) must be >= 1, got 0"),
        ("NumberOfFrames", b"x", r"NumberOfFrames \(0028,0008\) must be an integer, got 'x"),
    ],
)
def test_invalid_header_value_refuses_the_series_naming_file_and_tag(tmp_path, keyword, raw, match):
    paths = _series(tmp_path)
    set_raw_tag(paths[1], keyword, raw)
    with pytest.raises(DicomSeriesError, match=r"0002\.dcm: .*" + match):
        load_dicom_series(tmp_path)
    # the scan already refuses it (with pixels deferred: headers only cannot see a pixel
    # data element longer than Rows x Columns, only one the file is too short for)
    (series,) = scan_dicom_folder(tmp_path, pixels=True).series
    assert "0002.dcm" in series.refused
    assert "fix the header or re-export the series" in series.refused


def test_anonymised_files_without_uids_still_read(tmp_path):
    paths = _series(tmp_path)
    for path in paths:
        set_raw_tag(path, "SOPInstanceUID", None)
        set_raw_tag(path, "SeriesInstanceUID", None)
    volume = load_dicom_series(tmp_path)
    assert volume.spatial_shape == SHAPE
    (series,) = scan_dicom_folder(tmp_path).series
    assert "no SeriesInstanceUID" in series.label


def test_duplicate_instance_names_the_sop_instance_uid(tmp_path):
    paths = _series(tmp_path)
    shutil.copy(paths[0], tmp_path / "copy.dcm")
    with pytest.raises(DicomSeriesError, match=r"share SOPInstanceUID \(0008,0018\) .* copies"):
        load_dicom_series(tmp_path)


def test_refused_series_is_never_chosen_but_counts_when_rules_match(tmp_path):
    _series(tmp_path / "ct", modality="CT", series_number=1)
    mr = _series(tmp_path / "mr", modality="MR", series_number=2)
    set_raw_tag(mr[0], "ImageOrientationPatient", None)
    with pytest.raises(DicomSeriesError, match=r"2 remain .*refused \(.*0001\.dcm: Image"):
        load_dicom_series(tmp_path)
    assert load_dicom_series(tmp_path, rules=SelectionRules(modality="CT")).spatial_shape == SHAPE
    with pytest.raises(DicomSeriesError, match=r"the volume the rules select is refused: .*"):
        load_dicom_series(tmp_path, rules=SelectionRules(modality="MR"))


def test_ls_exit_status_all_some_none_refused(tmp_path, capsys):
    _series(tmp_path / "ct", series_number=1)
    assert main(["dicom", "ls", str(tmp_path)]) == 0
    mr = _series(tmp_path / "mr", modality="MR", series_number=2)
    set_raw_tag(mr[0], "PixelSpacing", b"nan\\1")
    capsys.readouterr()
    assert main(["dicom", "ls", str(tmp_path)]) == 1
    out = capsys.readouterr()
    assert "1 volume(s), 1 series refused" in out.out
    assert "refused: " in out.out
    assert "error: " in out.err
    assert "PixelSpacing (0028,0030) must be finite" in out.err
    shutil.rmtree(tmp_path / "ct")
    assert main(["dicom", "ls", str(tmp_path)]) == 2
    assert "none of its 1 series can be read" in capsys.readouterr().err


def test_convert_writes_the_good_series_and_reports_the_refused(tmp_path, capsys):
    _series(tmp_path / "in" / "ct", series_number=1)
    mr = _series(tmp_path / "in" / "mr", modality="MR", series_number=2)
    for path in mr:
        set_raw_tag(path, "ImagePositionPatient", None)
    assert main(["convert", str(tmp_path / "in"), str(tmp_path / "out")]) == 1
    captured = capsys.readouterr()
    assert "1 converted, 1 failed" in captured.out
    assert "error: " in captured.err
    assert "ImagePositionPatient (0020,0032) is missing" in captured.err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "s001_synthetic.json",
        "s001_synthetic.nii.gz",
    ]
