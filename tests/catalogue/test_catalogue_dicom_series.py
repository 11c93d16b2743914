"""Series-level DICOM refusals (issue 16) through ``medimg dicom ls`` and ``medimg convert``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pydicom
import pytest
from catalogue_helpers import BadInput, check_bad_input

from medimg.synthetic import grid_affine
from medimg.synthetic.dicom import DicomSeriesSpec, set_raw_tag, write_dicom_series
from medimg.synthetic.dicom_mosaic import write_mosaic_series

SHAPE = (5, 4, 5)


def _tilted_with_gap(tmp: Path) -> Sequence[str]:
    affine = grid_affine(SHAPE, (1.0, 1.0, 2.0), axcodes="LPS")
    affine[:3, 2] += [0.0, 0.7, 0.0]
    paths = write_dicom_series(np.zeros(SHAPE), affine, tmp / "in", DicomSeriesSpec())
    paths[2].unlink()
    return ["convert", tmp / "in", tmp / "out"]


def _mosaic_without_count(tmp: Path) -> Sequence[str]:
    affine = grid_affine((4, 3, 5), (2.0, 2.0, 3.0), axcodes="LPS")
    (path,) = write_mosaic_series(np.zeros((1, 4, 3, 5)), affine, tmp / "in", image_header=False)
    ds = pydicom.dcmread(path)
    del ds[0x00291020]
    ds.save_as(path)
    return ["dicom", "ls", tmp / "in"]


def _multiframe_without_position(tmp: Path) -> Sequence[str]:
    affine = grid_affine((4, 3, 1), (1.0, 1.0, 2.0))
    spec = DicomSeriesSpec(modality="MR")
    (path,) = write_dicom_series(np.zeros((4, 3, 1)), affine, tmp / "in", spec)
    ds = pydicom.dcmread(path)
    ds.NumberOfFrames = 4
    ds.PixelData = ds.PixelData * 4
    del ds.ImagePositionPatient
    ds.save_as(path)
    return ["dicom", "ls", tmp / "in"]


def _partial_single_slice(tmp: Path) -> Sequence[str]:
    affine = grid_affine((4, 3, 1), (1.0, 1.0, 2.0))
    (path,) = write_dicom_series(np.zeros((4, 3, 1)), affine, tmp / "in", DicomSeriesSpec())
    set_raw_tag(path, "InstanceNumber", b"17")
    return ["convert", tmp / "in", tmp / "out"]


def _repeat_differing_in_image_type(tmp: Path) -> Sequence[str]:
    affine = grid_affine(SHAPE, (1.0, 1.0, 2.0), axcodes="LPS")
    paths = write_dicom_series(np.zeros(SHAPE), affine, tmp / "in", DicomSeriesSpec())
    copy = tmp / "in" / "copy.dcm"
    copy.write_bytes(paths[1].read_bytes())
    set_raw_tag(copy, "ImageType", b"DERIVED\\SECONDARY")
    return ["convert", tmp / "in", tmp / "out"]


CATALOGUE = [
    BadInput(
        "dicom_tilt_and_gap_at_once",
        _tilted_with_gap,
        1,
        r"error: .*gantry tilt of .* degrees .*; and slice steps must be even .*missing "
        r"slice.*--resample-tilt.* and .*--resample-uneven",
    ),
    BadInput(
        "dicom_mosaic_without_slice_count",
        _mosaic_without_count,
        2,
        r"error: .*mosaic_001\.dcm: Siemens MOSAIC: NumberOfImagesInMosaic is missing: it is "
        r"in neither the CSA image header \(0029,1010\) nor the protocol",
    ),
    BadInput(
        "dicom_multiframe_without_position",
        _multiframe_without_position,
        2,
        r"error: .*0001\.dcm: ImagePositionPatient \(0020,0032\) is missing \(1 multi-frame "
        r"file\(s\) of 4 frames in all lack geometry",
    ),
    BadInput(
        "dicom_partial_single_slice",
        _partial_single_slice,
        1,
        r"error: .*needs at least 3 slices, found 1 \(0001\.dcm\); its InstanceNumber "
        r"\(0020,0013\) is 17: one image of a longer series",
    ),
    BadInput(
        "dicom_repeat_differing_in_image_type",
        _repeat_differing_in_image_type,
        1,
        r"error: .*found 2 slices at LPS position .*; they differ in ImageType "
        r"\(\(absent\) vs DERIVED\\SECONDARY\)",
    ),
]


@pytest.mark.parametrize("entry", CATALOGUE, ids=[e.kind for e in CATALOGUE])
def test_catalogue_dicom_series(entry: BadInput, tmp_path: Path, capsys) -> None:
    check_bad_input(entry, tmp_path, capsys)
