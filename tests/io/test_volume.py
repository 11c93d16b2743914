"""load_volume / save_volume / read_header on synthetic files with known answers."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from medimg.errors import (
    GeometryError,
    ImageNotFoundError,
    ImageReadError,
    ImageTooLargeError,
    NonFiniteError,
    OutputExistsError,
    UnsupportedFormatError,
)
from medimg.io import Volume, load_volume, read_header, reorient, save_volume
from medimg.synthetic import ct_phantom, grid_affine

# Oblique, anisotropic grids: one stored RAS-ish, one LPS (DICOM-like), one permuted.
GRIDS = {
    "oblique_ras": {"axcodes": "RAS", "rotation_deg": (12.0, -7.0, 25.0)},
    "oblique_lps": {"axcodes": "LPS", "rotation_deg": (-5.0, 9.0, 14.0)},
    "permuted_sar": {"axcodes": "SAR", "rotation_deg": (0.0, 0.0, 0.0)},
}
SHAPE = (12, 10, 8)
SPACING = (1.0, 1.5, 2.5)


def _phantom(name: str) -> Volume:
    affine = grid_affine(SHAPE, SPACING, **GRIDS[name])  # type: ignore[arg-type]
    return ct_phantom(SHAPE, affine=affine, seed=3).image


@pytest.mark.parametrize("grid", sorted(GRIDS))
@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_nifti_round_trip_is_exact(tmp_path: Path, grid: str, suffix: str) -> None:
    image = _phantom(grid)
    path = save_volume(image.array, tmp_path / f"x{suffix}", like=image)
    back = load_volume(path)
    np.testing.assert_array_equal(back.array, image.array)
    np.testing.assert_array_equal(back.affine, image.affine)
    assert back.array.dtype == np.float32
    assert back.source.shape == SHAPE


@pytest.mark.parametrize("grid", sorted(GRIDS))
@pytest.mark.parametrize("suffix", [".nrrd", ".mha"])
def test_itk_formats_round_trip(tmp_path: Path, grid: str, suffix: str) -> None:
    image = _phantom(grid)
    back = load_volume(save_volume(image.array, tmp_path / f"x{suffix}", like=image))
    np.testing.assert_array_equal(back.array, image.array)
    # ITK stores spacing and a unit direction matrix separately: equal to double rounding.
    np.testing.assert_allclose(back.affine, image.affine, atol=1e-9)


def test_label_map_round_trip_keeps_integers(tmp_path: Path) -> None:
    phantom = ct_phantom(SHAPE, affine=grid_affine(SHAPE, SPACING, axcodes="LPS"), seed=1)
    back = load_volume(phantom.write(tmp_path, "c")[1])
    assert back.array.dtype == np.uint8
    np.testing.assert_array_equal(back.array, phantom.label.array)


def test_lps_storage_reorients_by_flipping_first_two_axes() -> None:
    # LPS -> RAS flips x and y and keeps z: voxel [0, 0, k] moves to [X-1, Y-1, k].
    affine = grid_affine(SHAPE, SPACING, axcodes="LPS")
    array = np.arange(np.prod(SHAPE), dtype=np.int32).reshape(1, *SHAPE)
    ras, ras_affine = reorient(array, affine)
    np.testing.assert_array_equal(ras, array[:, ::-1, ::-1, :])
    # The world position of every voxel is unchanged: corner (0,0,0) of the RAS array is
    # stored voxel (11, 9, 0).
    np.testing.assert_allclose(ras_affine @ [0, 0, 0, 1], affine @ [11, 9, 0, 1])


def test_phantom_is_the_same_anatomy_on_every_grid() -> None:
    # The liver is defined in world mm, so its volume in mm^3 does not depend on the grid.
    volumes = []
    for name in GRIDS:
        affine = grid_affine((48, 40, 24), (3.5, 3.5, 5.0), **GRIDS[name])  # type: ignore[arg-type]
        label = ct_phantom((48, 40, 24), affine=affine, seed=5).label.array
        volumes.append(float((label == 1).sum()) * 3.5 * 3.5 * 5.0)
    assert max(volumes) / min(volumes) < 1.06


def test_header_only_read_matches_full_read(tmp_path: Path) -> None:
    image = _phantom("oblique_lps")
    path = save_volume(image.array, tmp_path / "x.nii.gz", like=image)
    header = read_header(path)
    assert header.shape == SHAPE
    assert header.axcodes == image.axcodes
    np.testing.assert_allclose(header.spacing_mm, SPACING, rtol=1e-6)
    assert header == load_volume(path).source


def test_nifti_scaling_is_applied_in_float32(tmp_path: Path) -> None:
    data = np.arange(24, dtype=np.int16).reshape(4, 3, 2)
    img = nib.Nifti1Image(data, np.diag([2.0, 2.0, 3.0, 1.0]))
    img.header.set_slope_inter(0.5, -10.0)
    nib.save(img, tmp_path / "scaled.nii")
    volume = load_volume(tmp_path / "scaled.nii")
    assert volume.array.dtype == np.float32
    np.testing.assert_array_equal(volume.array[0], data * 0.5 - 10.0)


def test_to_metatensor_keeps_affine() -> None:
    image = _phantom("oblique_lps")
    tensor = image.to_metatensor()
    np.testing.assert_array_equal(tensor.affine.numpy(), image.affine)
    assert tuple(tensor.shape) == (1, *SHAPE)


# ------------------------------------------------------------------------------------------
# errors


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImageNotFoundError, match=r"nope\.nii\.gz: no such file"):
        load_volume(tmp_path / "nope.nii.gz")


def test_folder_instead_of_file(tmp_path: Path) -> None:
    folder = tmp_path / "series.nii"
    folder.mkdir()
    with pytest.raises(ImageReadError, match=r"series\.nii: is a folder, not an image file"):
        load_volume(folder)


def test_unknown_extension_lists_supported(tmp_path: Path) -> None:
    path = tmp_path / "scan.png"
    path.write_bytes(b"x")
    with pytest.raises(
        UnsupportedFormatError,
        match=r"scan\.png: unknown image extension '\.png'; supported: \.nii\.gz, \.nii,",
    ):
        load_volume(path)


def test_truncated_gzip(tmp_path: Path) -> None:
    image = _phantom("oblique_ras")
    good = save_volume(image.array, tmp_path / "good.nii.gz", like=image)
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ImageReadError, match=r"bad\.nii\.gz: truncated or corrupt gzip stream"):
        load_volume(bad)


def test_corrupt_gzip(tmp_path: Path) -> None:
    bad = tmp_path / "garbage.nii.gz"
    bad.write_bytes(gzip.compress(b"\x00" * 64)[:10] + b"not a deflate stream at all" * 20)
    with pytest.raises(
        ImageReadError,
        match=r"garbage\.nii\.gz: (truncated or corrupt gzip stream|cannot be read as an image)",
    ):
        load_volume(bad)


def test_truncated_uncompressed_nifti(tmp_path: Path) -> None:
    image = _phantom("oblique_ras")
    good = save_volume(image.array, tmp_path / "good.nii", like=image)
    bad = tmp_path / "bad.nii"
    bad.write_bytes(good.read_bytes()[:-100])
    with pytest.raises(
        ImageReadError, match=r"bad\.nii: file is truncated: the header promises 4192 bytes"
    ):
        load_volume(bad)


def test_header_that_needs_too_much_memory(tmp_path: Path) -> None:
    # 12*10*8 float32 voxels = 3840 bytes; a 1000-byte limit must refuse before reading.
    image = _phantom("oblique_ras")
    path = save_volume(image.array, tmp_path / "x.nii.gz", like=image)
    with pytest.raises(
        ImageTooLargeError,
        match=r"x\.nii\.gz: decoding shape \(12, 10, 8\) as float32 needs 0\.00 GiB, over the limit",
    ):
        load_volume(path, max_bytes=1000)


def test_too_large_nrrd_is_refused_before_reading(tmp_path: Path) -> None:
    image = _phantom("oblique_ras")
    path = save_volume(image.array, tmp_path / "x.nrrd", like=image)
    with pytest.raises(ImageTooLargeError, match=r"x\.nrrd: decoding shape \(12, 10, 8, 1\)"):
        load_volume(path, max_bytes=100)


def _with_nonfinite(tmp_path: Path) -> Path:
    data = np.ones((4, 3, 2), dtype=np.float32)
    data[1, 2, 0] = np.nan
    data[3, 0, 1] = np.inf
    path = tmp_path / "nan.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    return path


def test_nonfinite_refused_by_default(tmp_path: Path) -> None:
    with pytest.raises(
        NonFiniteError,
        match=r"nan\.nii\.gz: 1 NaN and 1 infinite voxels \(first at voxel \(1, 2, 0\)\)",
    ):
        load_volume(_with_nonfinite(tmp_path))


def test_nonfinite_zero_and_keep(tmp_path: Path) -> None:
    path = _with_nonfinite(tmp_path)
    zeroed = load_volume(path, nonfinite="zero").array
    assert zeroed[0, 1, 2, 0] == 0
    assert zeroed[0, 3, 0, 1] == 0
    assert zeroed.sum() == 22
    kept = load_volume(path, nonfinite="keep").array
    assert np.isnan(kept[0, 1, 2, 0])
    assert np.isinf(kept[0, 3, 0, 1])


def test_vector_pixels_refused(tmp_path: Path) -> None:
    rgb = sitk.Image([5, 4, 3], sitk.sitkVectorUInt8, 3)
    sitk.WriteImage(rgb, str(tmp_path / "rgb.mha"))
    with pytest.raises(
        ImageReadError,
        match=r"rgb\.mha: pixel type 'vector of 8-bit unsigned integer' with 3 components",
    ):
        load_volume(tmp_path / "rgb.mha")


def test_complex_dtype_refused(tmp_path: Path) -> None:
    data = np.ones((3, 3, 3), dtype=np.complex64)
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "c.nii")
    with pytest.raises(ImageReadError, match=r"c\.nii: voxel dtype complex64 is not supported"):
        load_volume(tmp_path / "c.nii")


def test_synthetic_shear_refused_and_kept(tmp_path: Path) -> None:
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    affine[0, 1] = 0.5  # y axis tilted towards x: 26.565 degrees off orthogonal
    path = save_volume(np.zeros((1, 4, 4, 4), np.float32), tmp_path / "shear.nii.gz", like=affine)
    with pytest.raises(GeometryError, match=r"voxel axes deviate 26\.565 degrees from orthogonal"):
        load_volume(path)
    np.testing.assert_array_equal(load_volume(path, shear="keep").affine, affine)
    with pytest.raises(GeometryError, match=r"NRRD/MetaImage cannot store a sheared affine"):
        save_volume(np.zeros((4, 4, 4), np.float32), tmp_path / "shear.nrrd", like=affine)


def test_save_refuses_to_overwrite(tmp_path: Path) -> None:
    image = _phantom("oblique_ras")
    path = save_volume(image.array, tmp_path / "x.nii.gz", like=image)
    before = path.read_bytes()
    with pytest.raises(
        OutputExistsError, match=r"x\.nii\.gz: exists; pass overwrite=True \(--force\)"
    ):
        save_volume(image.array * 2, path, like=image)
    assert path.read_bytes() == before
    save_volume(image.array * 2, path, like=image, overwrite=True)
    np.testing.assert_array_equal(load_volume(path).array, image.array * 2)


def test_save_leaves_no_temporary_files_on_failure(tmp_path: Path) -> None:
    image = _phantom("oblique_ras")
    with pytest.raises(GeometryError, match=r"NRRD/MetaImage output takes one channel, got 2"):
        save_volume(np.zeros((2, *SHAPE), np.float32), tmp_path / "two.nrrd", like=image)
    assert list(tmp_path.iterdir()) == []


def test_save_checks_the_grid_shape(tmp_path: Path) -> None:
    image = _phantom("oblique_ras")
    with pytest.raises(
        GeometryError,
        match=r"array spatial shape \(12, 10, 7\) does not match the target grid \(12, 10, 8\)",
    ):
        save_volume(np.zeros((1, 12, 10, 7)), tmp_path / "x.nii.gz", like=image)


def test_save_rejects_bad_arrays_and_formats(tmp_path: Path) -> None:
    with pytest.raises(
        GeometryError,
        match=r"array must be \(C, X, Y\[, Z\]\) or \(X, Y\[, Z\]\), got shape \(5,\)",
    ):
        save_volume(np.zeros(5), tmp_path / "x.nii.gz", like=np.eye(4))
    with pytest.raises(
        GeometryError,
        match=r"like must be a Volume, SourceGeometry or 4x4 affine, got shape \(3, 3\)",
    ):
        save_volume(np.zeros((2, 2, 2)), tmp_path / "x.nii.gz", like=np.eye(3))
    with pytest.raises(
        GeometryError, match=r"x\.hdr: medimg writes nifti, nrrd, metaimage, not analyze"
    ):
        save_volume(np.zeros((2, 2, 2)), tmp_path / "x.hdr", like=np.eye(4))


def test_save_converts_bool_and_int64(tmp_path: Path) -> None:
    mask = np.zeros((3, 3, 3), dtype=bool)
    mask[1, 1, 1] = True
    assert (
        load_volume(save_volume(mask, tmp_path / "m.nii.gz", like=np.eye(4))).array.dtype
        == np.uint8
    )
    labels = np.arange(27, dtype=np.int64).reshape(3, 3, 3)
    back = load_volume(save_volume(labels, tmp_path / "l.nii.gz", like=np.eye(4)))
    assert back.array.dtype == np.int32
    np.testing.assert_array_equal(back.array[0], labels)


def test_2d_image_round_trip(tmp_path: Path) -> None:
    from medimg.synthetic import xray_phantom

    xray = xray_phantom(label=1, seed=2)
    path = xray.write(tmp_path, "cxr")
    back = load_volume(path, ndim=2)
    assert back.array.shape == (1, 64, 80)
    np.testing.assert_array_equal(back.array, xray.image.array)
    assert back.axcodes == ("L", "S")
    with pytest.raises(
        GeometryError, match=r"cxr_image\.nii\.gz: expected a 3D image, got shape \(64, 80\) \(2D\)"
    ):
        load_volume(path)


def test_2d_coronal_image_reorients_in_plane() -> None:
    # A radiograph stored L (x) then S (y): to RAS order flips the first axis only.
    from medimg.synthetic import xray_phantom

    xray = xray_phantom(label=0, seed=1).image
    assert xray.axcodes == ("L", "S")
    ras = xray.to_ras()
    assert ras.axcodes == ("R", "S")
    np.testing.assert_array_equal(ras.array, xray.array[:, ::-1, :])
    # Same world position for the first stored voxel, now at the end of the x axis.
    np.testing.assert_allclose(ras.affine @ [63, 0, 0, 1], xray.affine @ [0, 0, 0, 1])
