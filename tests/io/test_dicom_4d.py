"""4D DICOM series: one 4D NIfTI by default, ``--split-4d`` files that sort in time order."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medimg.cli import main
from medimg.io import load_volume
from medimg.synthetic import grid_affine
from medimg.synthetic.dicom import DicomSeriesSpec, write_dicom_series
from medimg.synthetic.dicom_mosaic import write_mosaic_series

SHAPE = (5, 4, 3)


def _classic_4d(folder: Path, n_time: int) -> tuple[np.ndarray, np.ndarray]:
    """``n_time`` volumes of one series (TemporalPositionIdentifier 1..n), values t*100 + k."""
    affine = grid_affine(SHAPE, (0.8, 0.9, 2.5), axcodes="LPS", rotation_deg=(0.0, 8.0, 0.0))
    base = np.arange(np.prod(SHAPE), dtype=np.float64).reshape(SHAPE)
    values = np.stack([base + 100 * t for t in range(n_time)])
    for t in range(n_time):
        spec = DicomSeriesSpec(modality="MR", temporal_position=t + 1, seed=5)
        write_dicom_series(values[t], affine, folder, spec)
    return values, affine


def test_convert_writes_one_4d_file_by_default(tmp_path: Path) -> None:
    values, affine = _classic_4d(tmp_path / "in", 3)
    assert main(["convert", str(tmp_path / "in"), str(tmp_path / "out")]) == 0
    (written,) = sorted((tmp_path / "out").glob("*.nii.gz"))
    volume = load_volume(written, ndim=None)
    assert volume.array.shape == (3, *SHAPE)
    np.testing.assert_array_equal(volume.array, values)  # stored order: written as it was read
    np.testing.assert_allclose(volume.affine, affine, atol=1e-4)
    sidecar = json.loads(written.with_suffix("").with_suffix(".json").read_text())
    assert sidecar["medimg"]["time_points"] == 3
    assert sidecar["medimg"]["images"] == 3 * SHAPE[2]


def test_split_4d_names_sort_in_time_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    values, _ = _classic_4d(tmp_path / "in", 11)
    assert main(["convert", str(tmp_path / "in"), str(tmp_path / "out"), "--split-4d"]) == 0
    names = sorted(p.name for p in (tmp_path / "out").glob("*.nii.gz"))
    assert names == [f"s001_synthetic_t{t:03d}.nii.gz" for t in range(1, 12)]
    for t, name in enumerate(names):
        np.testing.assert_array_equal(load_volume(tmp_path / "out" / name).array[0], values[t])


def test_mosaic_series_converts_to_one_4d_file(tmp_path: Path) -> None:
    affine = grid_affine((4, 3, 5), (2.0, 2.0, 3.0), axcodes="LPS")
    values = np.random.default_rng(1).integers(0, 1000, size=(2, 4, 3, 5)).astype(np.float64)
    write_mosaic_series(values, affine, tmp_path / "in", descending=True)
    assert main(["convert", str(tmp_path / "in"), str(tmp_path / "out")]) == 0
    (written,) = (tmp_path / "out").glob("*.nii.gz")
    volume = load_volume(written, ndim=None)
    np.testing.assert_array_equal(volume.array, values)
    np.testing.assert_allclose(volume.affine, affine, atol=1e-4)
    assert json.loads(written.with_suffix("").with_suffix(".json").read_text())["medimg"]["mosaic"]


def test_ge_dti_is_one_4d_file_equal_to_its_ground_truth(realdata: Path, tmp_path: Path) -> None:
    """dicom2nifti's ge/dti/001: 8 files, 2 volumes of 4 slices at repeated positions."""
    folder = realdata / "dicom" / "dicom2nifti" / "ge" / "dti" / "001"
    assert main(["convert", str(folder), str(tmp_path / "out")]) == 0
    (written,) = (tmp_path / "out").glob("*.nii.gz")
    ours = load_volume(written, ndim=None).to_ras()
    gt = load_volume(folder.parent / "001_ground_truth.nii.gz", ndim=None).to_ras()
    assert ours.array.shape == gt.array.shape == (2, 128, 128, 4)
    np.testing.assert_array_equal(ours.array, gt.array)
    np.testing.assert_allclose(ours.affine, gt.affine, atol=1e-3)
