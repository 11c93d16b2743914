"""The one read path: read_image / read_image_header on files and DICOM series folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medimg.errors import DicomSeriesError, GeometryError, ImageTooLargeError, NonFiniteError
from medimg.io import load_volume, read_image, read_image_header, save_volume
from medimg.io.dicom import SelectionRules
from medimg.io.integrity import file_identity, input_files, path_identities
from medimg.synthetic import grid_affine
from medimg.synthetic.dicom import DicomSeriesSpec, write_dicom_series

SHAPE = (7, 5, 4)  # X = columns, Y = rows, Z = slices
SPACING_MM = (0.8, 1.1, 2.5)


def _values() -> np.ndarray:
    # value = 100 x + 10 y + z: any axis swap or flip changes it
    x, y, z = np.meshgrid(*[np.arange(n) for n in SHAPE], indexing="ij")
    return (100 * x + 10 * y + z).astype(np.int16)


@pytest.fixture
def series(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """An oblique, LPS-stored, anisotropic CT series in shuffled file order, and its affine."""
    affine = grid_affine(SHAPE, SPACING_MM, axcodes="LPS", rotation_deg=(10.0, -6.0, 25.0))
    folder = tmp_path / "ct"
    write_dicom_series(_values(), affine, folder, DicomSeriesSpec(seed=1), shuffle_seed=3)
    return folder, affine


def test_a_series_folder_reads_in_stored_order_on_its_affine(
    series: tuple[Path, np.ndarray],
) -> None:
    folder, affine = series
    volume = read_image(folder)
    assert volume.array.shape == (1, *SHAPE)
    assert volume.array.dtype == np.int16  # slope 1, intercept 0: the stored integers
    np.testing.assert_array_equal(volume.array[0], _values())
    np.testing.assert_allclose(volume.affine, affine, atol=1e-6)
    assert (volume.source.format, volume.source.path) == ("dicom", folder)
    assert volume.source.shape == SHAPE
    np.testing.assert_allclose(volume.source.affine, affine, atol=1e-6)


def test_the_header_twin_gives_the_same_grid_without_pixels(
    series: tuple[Path, np.ndarray],
) -> None:
    folder, affine = series
    header = read_image_header(folder)
    assert (header.shape, header.format, header.dtype) == (SHAPE, "dicom", "<i2")
    np.testing.assert_allclose(header.affine, read_image(folder).affine, atol=0)
    np.testing.assert_allclose(header.affine, affine, atol=1e-6)


def test_a_file_goes_to_the_file_reader(tmp_path: Path) -> None:
    path = save_volume(_values()[None], tmp_path / "x.nii.gz", like=np.diag([*SPACING_MM, 1]))
    volume, reference = read_image(path), load_volume(path)
    np.testing.assert_array_equal(volume.array, reference.array)
    assert volume.array.dtype == np.int16  # the file reader keeps the stored dtype
    assert read_image_header(path).shape == SHAPE


def test_a_prediction_saved_like_the_source_lies_on_the_slices(
    series: tuple[Path, np.ndarray], tmp_path: Path
) -> None:
    folder, affine = series
    source = read_image(folder).source
    out = save_volume(np.ones((1, *SHAPE), np.uint8), tmp_path / "c.nii.gz", like=source)
    written = load_volume(out)
    assert written.spatial_shape == SHAPE
    np.testing.assert_allclose(written.affine, affine, atol=1e-5)


def test_the_decode_limit_is_checked_from_the_headers(series: tuple[Path, np.ndarray]) -> None:
    folder, _ = series
    # 7 * 5 * 4 voxels * 4 bytes (float32) = 560 bytes
    read_image(folder, max_bytes=560)
    with pytest.raises(ImageTooLargeError, match=r"ct: .*over the limit of 0\.00 GiB"):
        read_image(folder, max_bytes=559)


def test_dimensionality_is_the_reader_policy(series: tuple[Path, np.ndarray]) -> None:
    folder, _ = series
    assert read_image(folder, ndim=None).spatial_shape == SHAPE
    with pytest.raises(
        GeometryError,
        match=r"ct: expected a 2D image, the DICOM series is a slice stack, 3D \(shape \(7, 5, 4\)\)",
    ):
        read_image(folder, ndim=2)


def test_nonfinite_voxels_after_rescale_follow_the_policy(tmp_path: Path) -> None:
    # stored 1 and 2 times a slope of 3e38 overflow float32 (max 3.4e38) on the value 2
    values = np.ones(SHAPE) * 3e38
    values[0, 0, 0] = 6e38
    spec = DicomSeriesSpec(rescale_slope=3e38)
    write_dicom_series(values, np.diag([*SPACING_MM, 1.0]), tmp_path / "s", spec)
    with pytest.raises(NonFiniteError, match=r"s: 0 NaN and 1 infinite voxels \(first at voxel"):
        read_image(tmp_path / "s")
    assert read_image(tmp_path / "s", nonfinite="zero").array[0, 0, 0, 0] == 0


def test_a_folder_of_two_series_is_refused_with_the_list_unless_rules_choose(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "study"
    affine = np.diag([*SPACING_MM, 1.0])
    write_dicom_series(_values(), affine, folder / "a", DicomSeriesSpec(series_number=1, seed=1))
    spec = DicomSeriesSpec(series_number=2, description="thin", seed=2)
    write_dicom_series(_values() + 1, affine, folder / "b", spec)
    for read in (read_image, read_image_header):
        with pytest.raises(DicomSeriesError) as err:
            read(folder)
        text = str(err.value)
        assert text.startswith(f"{folder}: holds 2 DICOM volumes (series 1 'synthetic' (")
        assert "series 2 'thin' (" in text
        assert "CT, 4 images" in text
        assert "move each series into its own folder (medimg dicom ls lists them)" in text
    chosen = read_image(folder, rules=SelectionRules(series_number=2))
    np.testing.assert_array_equal(chosen.array[0], _values() + 1)
    assert read_image_header(folder, rules=SelectionRules(series_number=2)).shape == SHAPE


def test_path_identities_cover_every_visible_file_of_a_folder(
    series: tuple[Path, np.ndarray], tmp_path: Path
) -> None:
    folder, _ = series
    (folder / ".DS_Store").write_bytes(b"x")
    (folder / "sub").mkdir()
    (folder / "sub" / "extra.dcm").write_bytes(b"y")
    files = input_files(folder)
    assert [p.relative_to(folder).as_posix() for p in files] == [
        "0001.dcm", "0002.dcm", "0003.dcm", "0004.dcm", "sub/extra.dcm",
    ]  # fmt: skip
    identities = path_identities(folder)
    assert [i.path for i in identities] == [str(p.resolve()) for p in files]
    by_path = {i.path: i for i in identities}
    assert path_identities(folder, previous=by_path) == identities
    # one slice changed: only its identity changes
    first = files[0]
    first.write_bytes(first.read_bytes()[:-1] + b"\x01")
    changed = [
        new.path for old, new in zip(identities, path_identities(folder), strict=True)
        if not new.same_content(old)
    ]  # fmt: skip
    assert changed == [str(first.resolve())]
    single = tmp_path / "one.bin"
    single.write_bytes(b"z")
    assert path_identities(single) == (file_identity(single),)
    with pytest.raises(FileNotFoundError):
        path_identities(tmp_path / "missing")
