"""Real scanner DICOM against published ground truths (see ../shared/realdata/README.md).

dicom2nifti cases: icometrix/dicom2nifti tests/data @ d68253ef3b17 (MIT); each ``X`` folder has
``X_ground_truth.nii.gz`` written by dicom2nifti. TotalSegmentator: wasserth/TotalSegmentator
tests/reference_files @ 0e65a448d557. dcmqi: QIICR/dcmqi data/segmentations @ b6137d9ee8cf.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medimg.errors import DicomSeriesError
from medimg.io import load_volume
from medimg.io.dicom import (
    DicomReadOptions,
    SelectionRules,
    load_dicom_series,
    read_dicom_header,
    read_series,
    scan_dicom_folder,
)

pytestmark = pytest.mark.realdata

_CASES = [
    "anatomical/001",
    "anatomical/001_implicit",
    "ge/anatomical/001",
    "ge/anatomical/001_implicit",
    "ge/anatomical/001_single_slice",
    "ge/dti/001",
    "generic/anatomical/001",
    "generic/anatomical/001_implicit",
    "generic/anatomical/002_non_isotropic",
    "generic/compressed/001",
    "generic/compressed_j2k/001",
    "generic/compressed_jpeg/001",
    "generic/compressed_jpegls/001",
    "generic/compressed_rle/001",
    "hitachi/anatomical/001",
    "hyperfine/anatomical/001",
    "philips/anatomical/001",
    "philips_enhanced/anatomical/001",
    "siemens/anatomical/001",
    "siemens_multiframe/anatomical/001",
]


def test_case_list_is_complete(realdata):
    root = realdata / "dicom" / "dicom2nifti"
    found = {
        str(p.relative_to(root))[: -len("_ground_truth.nii.gz")]
        for p in root.rglob("*_ground_truth.nii.gz")
        if p.relative_to(root).parts[0] != "failing"
    }
    assert found == {*_CASES, "siemens/fmri/001"}


def _ground_truth(path: Path) -> list[np.ndarray]:
    """The ground truth in RAS order, one array per volume (4D files give several)."""
    gt = load_volume(path, ndim=None)
    if gt.array.shape[0] == 1 and gt.array.ndim == 3:  # a single slice: keep 3 axes
        gt = load_volume(path, ndim=3)
    ras = gt.to_ras()
    return [ras.array[k] for k in range(ras.array.shape[0])], ras.affine


@pytest.mark.parametrize("case", _CASES)
def test_matches_dicom2nifti_ground_truth(realdata, case):
    folder = realdata / "dicom" / "dicom2nifti" / case
    expected, expected_affine = _ground_truth(folder.parent / f"{folder.name}_ground_truth.nii.gz")
    # the single-slice case is one slice by design: allow it explicitly
    options = DicomReadOptions(min_slices=1 if case.endswith("single_slice") else 3)
    scan = scan_dicom_folder(folder, pixels=True)
    assert len(scan.series) == len(expected)
    for part, values in enumerate(expected, start=1):
        volume = load_dicom_series(folder, rules=SelectionRules(part=part), options=options)
        ras = volume.to_ras()
        assert ras.array[0].shape == values.shape
        if values.dtype.kind == "f":  # rescaled values
            np.testing.assert_allclose(ras.array[0], values, rtol=1e-5, atol=1e-4)
        else:
            np.testing.assert_array_equal(ras.array[0], values)
        np.testing.assert_allclose(ras.affine, expected_affine, atol=1e-3)
        geometry = read_dicom_header(folder, SelectionRules(part=part), options)
        np.testing.assert_allclose(geometry.affine, volume.affine, atol=1e-9)


def test_single_slice_refused_by_default(realdata):
    folder = realdata / "dicom" / "dicom2nifti" / "ge" / "anatomical" / "001_single_slice"
    with pytest.raises(DicomSeriesError, match=r"needs at least 3 slices, found 1"):
        load_dicom_series(folder)


def _failing(realdata: Path, name: str) -> Path:
    return realdata / "dicom" / "dicom2nifti" / "failing" / name / "001"


def test_failing_gantry_tilt(realdata):
    with pytest.raises(DicomSeriesError, match=r"gantry tilt of 14\.00 degrees"):
        load_dicom_series(_failing(realdata, "gantrytilting"))
    volume = load_dicom_series(
        _failing(realdata, "gantrytilting"), options=DicomReadOptions(gantry_tilt="resample")
    )
    cols = volume.affine[:3, :3] / np.linalg.norm(volume.affine[:3, :3], axis=0)
    np.testing.assert_allclose(cols.T @ cols, np.eye(3), atol=1e-9)
    assert volume.array.shape[3] == 4


def test_failing_not_a_volume(realdata):
    with pytest.raises(DicomSeriesError, match=r"found 4 slices at LPS position"):
        load_dicom_series(_failing(realdata, "notavolume"))


def test_failing_slice_count(realdata):
    with pytest.raises(DicomSeriesError, match=r"needs at least 3 slices, found 2"):
        load_dicom_series(_failing(realdata, "slicecount"))


def test_failing_slice_orientation(realdata):
    folder = _failing(realdata, "sliceorientation")
    scan = scan_dicom_folder(folder)
    assert [s.split_reason for s in scan.series] == ["split by image orientation"] * 2
    with pytest.raises(DicomSeriesError, match=r"must leave one volume, 2 remain"):
        load_dicom_series(folder)
    for part in (1, 2):
        with pytest.raises(DicomSeriesError, match=r"needs at least 3 slices, found 2"):
            load_dicom_series(folder, rules=SelectionRules(part=part))


def test_failing_slice_increment_missing_slice(realdata):
    folder = realdata / "dicom" / "dicom2nifti" / "failing" / "sliceincrement"
    with pytest.raises(DicomSeriesError, match=r"10\.000 mm between .* \(1 missing slice"):
        load_dicom_series(folder / "001")
    with pytest.raises(DicomSeriesError, match=r"gantry tilt of 15\.50 degrees"):
        load_dicom_series(folder / "002")


def test_failing_slice_increment_corrected_against_ground_truth(realdata):
    """Tilt plus a missing slice, corrected; dicom2nifti's own correction is the reference.

    Both resample, with different interpolation, onto grids that differ by up to a voxel, so
    we compare inside the shared field of view in world space: the grids must overlap and the
    median absolute difference over body voxels must stay small (measured: see the report).
    """
    folder = realdata / "dicom" / "dicom2nifti" / "failing" / "sliceincrement"
    options = DicomReadOptions(gantry_tilt="resample", uneven_spacing="resample")
    volume = load_dicom_series(folder / "002", options=options).to_ras()
    gt = load_volume(folder / "002_ground_truth.nii.gz").to_ras()
    assert volume.spatial_shape[2] == gt.spatial_shape[2] == 5
    np.testing.assert_allclose(volume.spacing_mm[:2], gt.spacing_mm[:2], atol=1e-3)
    # planes 0.778 mm apart along z are 0.778 * cos(15.5 deg) = 0.750 mm apart along their
    # normal; dicom2nifti keeps 0.778 mm as the slice spacing after its shift correction
    assert volume.spacing_mm[2] == pytest.approx(0.750, abs=1e-3)
    assert gt.spacing_mm[2] == pytest.approx(0.778, abs=1e-3)
    diff = _compare_on_gt_grid(volume, gt)
    assert diff < 20.0  # HU, median over voxels both grids cover


def _compare_on_gt_grid(volume, gt) -> float:
    from scipy.ndimage import map_coordinates

    shape = gt.spatial_shape
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), 0).reshape(3, -1)
    world = gt.affine[:3, :3] @ ijk + gt.affine[:3, 3:4]
    src = np.linalg.inv(volume.affine)[:3] @ np.vstack([world, np.ones(world.shape[1])])
    # dicom2nifti's planes sit up to 0.15 slice away from ours (its 0.778 mm step): snap z
    top = volume.spatial_shape[2] - 1
    src[2] = np.where((src[2] > -0.25) & (src[2] < top + 0.25), np.clip(src[2], 0, top), src[2])
    ours = map_coordinates(volume.array[0].astype(np.float32), src, order=1, cval=np.nan)
    ref = gt.array[0].reshape(-1).astype(np.float32)
    # dicom2nifti pads shifted slices with 0, we with the minimum: compare where neither pads
    keep = np.isfinite(ours) & (ref != 0) & (ours > volume.array.min())
    assert keep.mean() > 0.2
    delta = np.abs(ours[keep] - ref[keep])
    return float(np.median(delta))


def test_totalsegmentator_jpeg2000_ct_on_segmentation_grid(realdata):
    root = realdata / "dicom" / "totalsegmentator_ct"
    volume = load_dicom_series(root / "example_ct_dicom")
    seg = load_volume(root / "example_seg_dicom.nii.gz")
    ras, seg_ras = volume.to_ras(), seg.to_ras()
    assert ras.spatial_shape == seg_ras.spatial_shape == (512, 512, 20)
    np.testing.assert_allclose(ras.affine, seg_ras.affine, atol=1e-3)
    assert ras.array.min() >= -1024
    assert ras.array.max() <= 1839
    assert ras.array.dtype == np.int16


def test_dcmqi_feet_first_ct_on_label_grid(realdata):
    root = realdata / "dicom" / "dcmqi"
    volume = load_dicom_series(root / "ct-3slice").to_ras()
    for name in ("liver_seg.nrrd", "spine_seg.nrrd", "heart_seg.nrrd"):
        label = load_volume(root / name).to_ras()
        assert label.spatial_shape == volume.spatial_shape
        np.testing.assert_allclose(label.affine, volume.affine, atol=1e-3)


def test_dicomdir_tree_is_scanned_through_dicomdir(realdata):
    folder = realdata / "dicom" / "pydicom" / "dicomdirtests"
    scan = scan_dicom_folder(folder)
    modalities = {s.modality for s in scan.series}
    assert {"CT", "MR"} <= modalities
    assert all(f.path.is_file() for s in scan.series for f in s.frames)
    # the files the DICOMDIR lists, not the DICOMDIR variants beside it
    assert not any("DICOMDIR" in f.path.name for s in scan.series for f in s.frames)


def test_every_dicomdir_candidate_reads_or_is_refused_with_reason(realdata):
    scan = scan_dicom_folder(realdata / "dicom" / "pydicom" / "dicomdirtests", pixels=True)
    outcomes: list[str] = []
    for series in scan.series:
        try:
            volume = read_series(series, DicomReadOptions(min_slices=1))
            outcomes.append(f"ok {volume.array.ndim}")
        except DicomSeriesError as exc:
            outcomes.append(str(exc))
    refused = [o for o in outcomes if not o.startswith("ok")]
    # one CT series of that sample keeps 5 slices of a 1.25 mm series 202.5 mm apart
    assert len(refused) == 1
    assert "202.500 mm between slices" in refused[0]
    assert set(outcomes) - set(refused) == {"ok 3", "ok 4"}
