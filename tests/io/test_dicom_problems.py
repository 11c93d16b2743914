"""Every problem of a series at once, the background of resampled voxels, series identity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from medimg.errors import DicomSeriesError
from medimg.io.dicom import DicomReadOptions, load_dicom_series, scan_dicom_folder
from medimg.synthetic import grid_affine
from medimg.synthetic.dicom import DicomSeriesSpec, set_raw_tag, write_dicom_series

SHAPE = (6, 5, 6)


def _tilted(folder: Path, value: float = 100.0, modality: str = "CT") -> list[Path]:
    affine = grid_affine(SHAPE, (1.0, 1.0, 2.0), axcodes="LPS")
    affine[:3, 2] += [0.0, 0.7, 0.0]  # slices drift 0.7 mm along y per slice: ~19 degrees
    spec = DicomSeriesSpec(modality=modality, rescale_intercept=-1024.0 if modality == "CT" else 0)
    return write_dicom_series(np.full(SHAPE, value), affine, folder, spec)


def test_tilt_and_missing_slice_reported_together(tmp_path: Path) -> None:
    paths = _tilted(tmp_path)
    paths[3].unlink()
    with pytest.raises(DicomSeriesError) as info:
        load_dicom_series(tmp_path)
    message = str(info.value)
    assert "gantry tilt of 19.29 degrees" in message
    assert "1 missing slice(s)" in message
    assert "--resample-tilt" in message
    assert "--resample-uneven" in message
    both = DicomReadOptions(gantry_tilt="resample", uneven_spacing="resample")
    assert load_dicom_series(tmp_path, options=both).array.shape[3] == 6


def test_outside_a_resampled_ct_is_air(tmp_path: Path) -> None:
    _tilted(tmp_path, value=100.0)
    volume = load_dicom_series(tmp_path, options=DicomReadOptions(gantry_tilt="resample"))
    # the tilt widens the grid: its corners lie outside every slice and get -1024 HU (air),
    # not the stack's minimum (100 HU everywhere here)
    assert set(np.unique(volume.array).tolist()) == {-1024.0, 100.0}


def test_outside_a_resampled_mr_is_zero(tmp_path: Path) -> None:
    _tilted(tmp_path, value=300.0, modality="MR")
    volume = load_dicom_series(tmp_path, options=DicomReadOptions(gantry_tilt="resample"))
    assert set(np.unique(volume.array).tolist()) == {0.0, 300.0}


def _two_series_one_uid(tmp_path: Path) -> None:
    affine = grid_affine(SHAPE, (1.0, 1.0, 2.0), axcodes="LPS")
    first = write_dicom_series(np.zeros(SHAPE), affine, tmp_path / "a", DicomSeriesSpec())
    second = write_dicom_series(
        np.ones(SHAPE), affine, tmp_path / "b", DicomSeriesSpec(series_number=2, seed=1)
    )
    uid = str(pydicom.dcmread(first[0]).SeriesInstanceUID).encode()
    for path in second:
        set_raw_tag(path, "SeriesInstanceUID", uid)


def test_series_numbers_under_one_uid_are_split(tmp_path: Path) -> None:
    _two_series_one_uid(tmp_path)
    scan = scan_dicom_folder(tmp_path)
    assert [(s.series_number, s.split_reason) for s in scan.series] == [
        (1, "split by series number"),
        (2, "split by series number"),
    ]
    assert {len(s.frames) for s in scan.series} == {6}


def test_repeats_that_cannot_be_told_apart_say_how_they_differ(tmp_path: Path) -> None:
    affine = grid_affine(SHAPE, (1.0, 1.0, 2.0), axcodes="LPS")
    paths = write_dicom_series(np.zeros(SHAPE), affine, tmp_path, DicomSeriesSpec())
    copy = tmp_path / "copy.dcm"
    copy.write_bytes(paths[2].read_bytes())
    set_raw_tag(copy, "ImageType", b"DERIVED\\SECONDARY")
    with pytest.raises(DicomSeriesError, match=r"2 slices at LPS position .* differ in ImageType"):
        load_dicom_series(tmp_path)


def test_multiframe_without_geometry_says_what_is_missing_once(tmp_path: Path) -> None:
    affine = grid_affine((4, 3, 1), (1.0, 1.0, 2.0))
    (path,) = write_dicom_series(
        np.zeros((4, 3, 1)), affine, tmp_path, DicomSeriesSpec(modality="MR")
    )
    ds = pydicom.dcmread(path)
    ds.NumberOfFrames = 5
    ds.PixelData = ds.PixelData * 5
    del ds.ImagePositionPatient
    ds.save_as(path)
    scan = scan_dicom_folder(tmp_path)
    (series,) = scan.series
    assert series.refused.count("missing") == 1
    assert "ImagePositionPatient (0020,0032) is missing (1 multi-frame file(s) of 5 frames" in (
        series.refused
    )
    assert "projection" not in series.refused.split(";")[0]


def test_true_single_slice_reads_and_partial_is_refused(tmp_path: Path) -> None:
    affine = grid_affine((4, 3, 1), (1.0, 1.0, 2.0))
    spec = DicomSeriesSpec(modality="MR")
    (path,) = write_dicom_series(np.full((4, 3, 1), 7.0), affine, tmp_path / "one", spec)
    volume = load_dicom_series(tmp_path / "one")
    assert volume.array.shape == (1, 4, 3, 1)
    np.testing.assert_allclose(np.abs(volume.affine[:3, 2]), [0, 0, 2.0], atol=1e-6)
    set_raw_tag(path, "InstanceNumber", b"17")
    with pytest.raises(DicomSeriesError, match=r"InstanceNumber \(0020,0013\) is 17: one image of"):
        load_dicom_series(tmp_path / "one")
    set_raw_tag(path, "ImagesInAcquisition", b"1 ")
    assert load_dicom_series(tmp_path / "one").array.shape == (1, 4, 3, 1)
