"""Image IO on real third-party files (../shared/realdata; skipped when absent)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from medimg.errors import GeometryError, ImageReadError
from medimg.io import load_volume, read_header

pytestmark = pytest.mark.realdata


def _nifti_space(realdata: Path) -> list[Path]:
    files = sorted((realdata / "orientation/niivue/nifti_space").glob("*.nii.gz"))
    assert len(files) == 48
    return files


def test_all_48_axis_orders_agree_in_ras(realdata: Path) -> None:
    files = _nifti_space(realdata)
    reference = load_volume(files[0]).to_ras()
    assert reference.axcodes == ("R", "A", "S")
    seen_codes = set()
    for path in files:
        volume = load_volume(path)
        seen_codes.add("".join(volume.axcodes))
        # The file name is the stored axis order (e.g. ASR.nii.gz).
        assert "".join(volume.axcodes) == path.name.split(".")[0]
        ras = volume.to_ras()
        np.testing.assert_array_equal(ras.array, reference.array, err_msg=path.name)
        np.testing.assert_allclose(ras.affine, reference.affine, atol=1e-4, err_msg=path.name)
    assert len(seen_codes) == 48


def test_flair_nifti_equals_nrrd(realdata: Path) -> None:
    nii = load_volume(realdata / "orientation/niivue/FLAIR.nii.gz").to_ras()
    nrrd = load_volume(realdata / "orientation/niivue/FLAIR.nrrd").to_ras()
    np.testing.assert_array_equal(nii.array, nrrd.array)
    np.testing.assert_allclose(nii.affine, nrrd.affine, atol=1e-4)


def test_shear_is_refused_by_default(realdata: Path) -> None:
    with pytest.raises(
        GeometryError,
        match=r"shear\.nii\.gz: the affine is sheared: voxel axes deviate 18\.500 degrees",
    ):
        load_volume(realdata / "orientation/niivue/shear.nii.gz")


def test_shear_keep_keeps_the_sform_exactly(realdata: Path) -> None:
    import nibabel as nib

    path = realdata / "orientation/niivue/shear.nii.gz"
    volume = load_volume(path, shear="keep")
    np.testing.assert_array_equal(volume.affine, nib.load(path).get_sform())


def test_rgb_nifti_is_refused(realdata: Path) -> None:
    with pytest.raises(
        ImageReadError, match=r"ct_perfusion\.nii\.gz: voxel type is a structured dtype \(R,G,B\)"
    ):
        load_volume(realdata / "orientation/niivue/ct_perfusion.nii.gz")


def test_metaimage_and_analyze_headers(realdata: Path) -> None:
    mha = read_header(realdata / "orientation/niivue/mha.mha")
    # ITK direction diag(1, -1, 1) in LPS is (L, A, S) in RAS letters.
    assert mha.axcodes == ("L", "A", "S")
    assert mha.shape == (64, 64, 37)
    pair = load_volume(realdata / "orientation/niivue/ras.hdr")
    assert pair.spatial_shape == (62, 41, 34)
    assert pair.axcodes == ("R", "A", "S")


def test_4d_file_where_3d_expected(realdata: Path) -> None:
    path = realdata / "orientation/nibabel/example4d.nii.gz"
    with pytest.raises(
        GeometryError, match=r"expected a 3D image, got shape \(128, 96, 24, 2\) \(4D\)"
    ):
        load_volume(path)
    assert load_volume(path, ndim=None).array.shape == (2, 128, 96, 24)


def _baseline(realdata: Path, name: str) -> dict[str, dict[str, float]]:
    """Rows of a pyradiomics baseline CSV as {feature: {case: value}} (original columns)."""
    rows: dict[str, dict[str, float]] = {}
    with open(realdata / "labelled/pyradiomics/baseline" / name, newline="") as f:
        for row in csv.DictReader(f):
            feature = row.pop("featureName")
            if feature.startswith("original_"):
                rows[feature] = {k: float(v) for k, v in row.items()}
    return rows


@pytest.mark.parametrize("case", ["brain1", "brain2", "breast1"])
def test_pyradiomics_published_figures(realdata: Path, case: str) -> None:
    # Published by pyradiomics (data/baseline/*.csv, "original" columns, label 1, no resampling).
    shape = _baseline(realdata, "baseline_shape.csv")
    first = _baseline(realdata, "baseline_firstorder.csv")
    image = load_volume(realdata / f"labelled/pyradiomics/{case}_image.nrrd")
    label = load_volume(realdata / f"labelled/pyradiomics/{case}_label.nrrd")
    assert label.source.same_grid(image.source)
    mask = label.array[0] == 1
    voxels = image.array[0][mask].astype(np.float64)
    voxel_mm3 = float(np.prod(image.spacing_mm))
    assert mask.sum() * voxel_mm3 == pytest.approx(
        shape["original_shape_VoxelVolume"][case], rel=1e-9
    )
    assert voxels.mean() == pytest.approx(first["original_firstorder_Mean"][case], rel=1e-9)
    assert np.median(voxels) == first["original_firstorder_Median"][case]
    assert voxels.min() == first["original_firstorder_Minimum"][case]
    assert voxels.max() == first["original_firstorder_Maximum"][case]


def test_pyradiomics_voxel_counts(realdata: Path) -> None:
    # diagnostics_Mask-original_VoxelNum in baseline_shape.csv: 4137, 453, 143.
    expected = {"brain1": 4137, "brain2": 453, "breast1": 143}
    for case, count in expected.items():
        label = load_volume(realdata / f"labelled/pyradiomics/{case}_label.nrrd")
        assert int((label.array == 1).sum()) == count
