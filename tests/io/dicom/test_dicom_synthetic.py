"""Reading synthetic DICOM series whose arrays and affines are known exactly."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import linear_z  # type: ignore[import-not-found]

from medimg.errors import ConfigError, DicomSeriesError
from medimg.io.dicom import (
    DicomReadOptions,
    SelectionRules,
    load_dicom_series,
    read_dicom_header,
    scan_dicom_folder,
)
from medimg.synthetic import grid_affine, mri_phantom, xray_phantom
from medimg.synthetic.dicom import DicomSeriesSpec, write_dicom_series, write_xray_dicom


def test_oblique_shuffled_ct_gives_back_array_and_affine(oblique_ct):
    folder, expected, affine = oblique_ct
    volume = load_dicom_series(folder)
    assert volume.array.shape == (1, *expected.shape)
    assert volume.array.dtype == np.int16  # HU after the -1024 intercept, integral
    np.testing.assert_array_equal(volume.array[0], expected)
    np.testing.assert_allclose(volume.affine, affine, atol=1e-4)
    assert volume.source.format == "dicom"
    assert volume.source.path == folder
    ras = volume.to_ras()
    assert ras.axcodes == ("R", "A", "S")


def test_files_and_instance_numbers_are_shuffled(oblique_ct):
    # the fixture's slice order is not the order of file names or InstanceNumbers
    folder, _, _ = oblique_ct
    scan = scan_dicom_folder(folder)
    instances = [f.instance for f in scan.series[0].frames]
    z = [f.position_lps for f in scan.series[0].frames]
    assert instances != sorted(instances) or z != sorted(z)


def test_header_only_matches_the_loaded_grid_without_pixels(oblique_ct):
    folder, expected, affine = oblique_ct
    geometry = read_dicom_header(folder)
    assert geometry.shape == expected.shape
    np.testing.assert_allclose(geometry.affine, affine, atol=1e-4)
    assert geometry.dtype == "<i2"
    scan = scan_dicom_folder(folder, pixels=False)
    assert all("PixelData" not in f.dataset for f in scan.series[0].frames)


def test_two_series_in_one_folder_need_rules(tmp_path, caplog):
    affine = grid_affine((8, 6, 4), (1.5, 1.2, 3.0), axcodes="LPS", rotation_deg=(0, 15, 0))
    mr = mri_phantom((8, 6, 4), affine=affine, seed=1)
    values = np.round(mr.image.array[0])
    write_dicom_series(values, affine, tmp_path, DicomSeriesSpec(modality="MR", series_number=2))
    ct = np.full((8, 6, 4), 40.0)
    write_dicom_series(
        ct, affine, tmp_path / "sub", DicomSeriesSpec(modality="CT", rescale_intercept=-1024)
    )
    scan = scan_dicom_folder(tmp_path)
    assert [s.modality for s in scan.series] == ["CT", "MR"]
    with pytest.raises(DicomSeriesError, match=r"must leave one volume, 2 remain"):
        load_dicom_series(tmp_path)
    with caplog.at_level(logging.INFO, logger="medimg.io.dicom.selection"):
        volume = load_dicom_series(tmp_path, rules=SelectionRules(modality="MR"))
    np.testing.assert_array_equal(volume.array[0], values)
    assert "chose series 2" in caplog.text
    assert "modality 'CT' not in ['MR']" in caplog.text
    with pytest.raises(DicomSeriesError, match=r"none of 2 candidates does"):
        load_dicom_series(tmp_path, rules=SelectionRules(modality="PT"))


def test_prefer_thinnest_and_description(tmp_path):
    thick = grid_affine((6, 5, 4), (1.0, 1.0, 5.0), axcodes="LPS")
    thin = grid_affine((6, 5, 8), (1.0, 1.0, 2.0), axcodes="LPS")
    spec = DicomSeriesSpec(rescale_intercept=-1024)
    write_dicom_series(np.zeros((6, 5, 4)), thick, tmp_path / "a", spec)
    thin_spec = DicomSeriesSpec(rescale_intercept=-1024, series_number=5, description="THIN")
    write_dicom_series(np.ones((6, 5, 8)), thin, tmp_path / "b", thin_spec)
    chosen = load_dicom_series(tmp_path, rules=SelectionRules(prefer=("thinnest",)))
    assert chosen.spatial_shape == (6, 5, 8)
    chosen = load_dicom_series(tmp_path, rules=SelectionRules(description="^synth"))
    assert chosen.spatial_shape == (6, 5, 4)
    chosen = load_dicom_series(tmp_path, rules=SelectionRules(orientation="axial", min_slices=5))
    assert chosen.spatial_shape == (6, 5, 8)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"orientation": "oblique"}, "orientation must be axial, coronal or sagittal"),
        ({"prefer": ("newest",)}, "prefer must list thinnest, most_slices or latest"),
        ({"description": "("}, "description must be a regular expression"),
    ],
)
def test_selection_rules_are_validated(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        SelectionRules(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"min_slices": 0}, "min_slices must be >= 1"),
        ({"tilt_tolerance_deg": -1}, "must be >= 0"),
        ({"gantry_tilt": "fix"}, "gantry_tilt must be 'error' or 'resample'"),
    ],
)
def test_read_options_are_validated(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        DicomReadOptions(**kwargs)


def test_4d_series_becomes_two_volumes(tmp_path):
    affine = grid_affine((6, 5, 4), (2.0, 2.0, 3.0), axcodes="LPS", rotation_deg=(5, 0, 0))
    rng = np.random.default_rng(0)
    volumes = [np.round(rng.uniform(0, 1000, (6, 5, 4))) for _ in range(2)]
    for t, values in enumerate(volumes, start=1):
        spec = DicomSeriesSpec(modality="MR", signed=False, temporal_position=t, seed=9)
        write_dicom_series(values, affine, tmp_path, spec, shuffle_seed=t)
    scan = scan_dicom_folder(tmp_path)
    assert [(s.part, s.n_parts) for s in scan.series] == [(1, 2), (2, 2)]
    assert scan.series[0].split_reason == "split by temporal position"
    for part, values in enumerate(volumes, start=1):
        volume = load_dicom_series(tmp_path, rules=SelectionRules(part=part))
        np.testing.assert_array_equal(volume.array[0], values)
        np.testing.assert_allclose(volume.affine, affine, atol=1e-4)


def test_float_rescale_gives_float32(tmp_path):
    affine = grid_affine((5, 4, 3), (1.0, 1.0, 1.0), axcodes="LPS")
    values = np.arange(60, dtype=np.float64).reshape(5, 4, 3) * 0.5 + 3.0
    spec = DicomSeriesSpec(modality="MR", rescale_slope=0.5, rescale_intercept=3.0)
    write_dicom_series(values, affine, tmp_path, spec)
    volume = load_dicom_series(tmp_path)
    assert volume.array.dtype == np.float32
    np.testing.assert_allclose(volume.array[0], values)


def test_monochrome1_xray_gives_back_array_and_affine(tmp_path):
    phantom = xray_phantom((40, 50), (0.5, 0.6), seed=2)
    expected = phantom.image.array[0]  # uint16, 0..4095
    spec = DicomSeriesSpec(modality="DX", photometric="MONOCHROME1", signed=False, bits_stored=12)
    path = write_xray_dicom(expected, phantom.image.affine, tmp_path / "dx" / "img.dcm", spec)
    stored = path.read_bytes()
    assert b"MONOCHROME1" in stored
    volume = load_dicom_series(tmp_path / "dx")
    assert volume.array.shape == (1, 40, 50)
    np.testing.assert_array_equal(volume.array[0], expected)
    np.testing.assert_allclose(volume.affine, phantom.image.affine, atol=1e-6)
    geometry = read_dicom_header(tmp_path / "dx")
    assert geometry.shape == (40, 50)
    np.testing.assert_allclose(geometry.affine, phantom.image.affine, atol=1e-6)


def test_xray_voi_window_applied_on_request(tmp_path):
    # Window centre 2048, width 4096 on 12-bit data: y = ((x - 2047.5) / 4095 + 0.5) * 4095 = x
    # (DICOM PS3.3 C.11.2.1.2.1), so the windowed MONOCHROME1 image is the phantom again.
    phantom = xray_phantom((20, 24), (1.0, 1.0), seed=4)
    expected = phantom.image.array[0].astype(np.float64)
    spec = DicomSeriesSpec(modality="CR", photometric="MONOCHROME1", signed=False, bits_stored=12)
    write_xray_dicom(expected, phantom.image.affine, tmp_path / "img.dcm", spec)
    volume = load_dicom_series(tmp_path, voi="voi")
    assert volume.array.dtype == np.float32
    np.testing.assert_allclose(volume.array[0], expected, atol=1e-3)


def test_xray_without_window_refuses_voi(tmp_path):
    import pydicom

    phantom = xray_phantom((8, 6), (1.0, 1.0), seed=1)
    path = write_xray_dicom(phantom.image.array[0], phantom.image.affine, tmp_path / "a.dcm")
    ds = pydicom.dcmread(path)
    del ds.WindowCenter
    del ds.WindowWidth
    ds.save_as(path)
    with pytest.raises(DicomSeriesError, match="needs a VOI LUT Sequence or WindowCenter"):
        load_dicom_series(tmp_path, voi="voi")
    del ds.ImagerPixelSpacing
    ds.save_as(path)
    with pytest.raises(DicomSeriesError, match="needs PixelSpacing or ImagerPixelSpacing"):
        load_dicom_series(tmp_path)
    with pytest.raises(DicomSeriesError, match="needs PixelSpacing or ImagerPixelSpacing"):
        read_dicom_header(tmp_path)
    ds.ImagerPixelSpacing = [1, 1]
    ds.PatientOrientation = ["X", "F"]
    ds.save_as(path)
    with pytest.raises(DicomSeriesError, match="PatientOrientation values must start with one"):
        load_dicom_series(tmp_path)
    ds.PatientOrientation = ["L", "R"]
    ds.save_as(path)
    with pytest.raises(DicomSeriesError, match="must name two perpendicular directions"):
        load_dicom_series(tmp_path)


def _tilted(tmp_path: Path, tilt_deg: float) -> tuple[Path, np.ndarray, np.ndarray]:
    """Axial slices stepping 3 mm in z and 3 tan(tilt) mm in y: a gantry-tilted stack."""
    shape = (10, 12, 6)
    affine = np.diag([-1.0, -1.5, 3.0, 1.0])
    affine[1, 2] = -3.0 * np.tan(np.radians(tilt_deg))  # RAS y of the step (LPS +y)
    values = linear_z(shape, affine)
    write_dicom_series(values, affine, tmp_path, DicomSeriesSpec(rescale_intercept=-1024))
    return tmp_path, values, affine


def test_gantry_tilt_is_refused_with_its_angle(tmp_path):
    folder, _, _ = _tilted(tmp_path, 10.0)
    with pytest.raises(DicomSeriesError, match=r"gantry tilt of 10\.00 degrees .*resample"):
        load_dicom_series(folder)
    with pytest.raises(DicomSeriesError, match=r"gantry tilt of 10\.00 degrees"):
        read_dicom_header(folder)


def test_gantry_tilt_resampled_onto_orthogonal_grid(tmp_path):
    folder, _, _ = _tilted(tmp_path, 10.0)
    options = DicomReadOptions(gantry_tilt="resample")
    volume = load_dicom_series(folder, options=options)
    affine = volume.affine
    cols = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    np.testing.assert_allclose(cols.T @ cols, np.eye(3), atol=1e-9)  # orthogonal
    assert volume.spatial_shape[2] == 6
    assert read_dicom_header(folder, options=options).shape == volume.spatial_shape
    # values are linear in world z, so trilinear resampling reproduces them where the
    # target voxel lies inside the tilted stack
    expected = linear_z(volume.spatial_shape, affine)
    inside = volume.array[0] > volume.array[0].min()
    assert inside.mean() > 0.5
    np.testing.assert_allclose(volume.array[0][inside], expected[inside], atol=1e-2)


def test_small_tilt_within_tolerance_is_kept_exactly(tmp_path):
    folder, values, affine = _tilted(tmp_path, 0.05)
    volume = load_dicom_series(folder)
    np.testing.assert_array_equal(volume.array[0], values)
    np.testing.assert_allclose(volume.affine, affine, atol=1e-4)


def test_missing_slice_is_reported_then_resampled(tmp_path):
    shape = (6, 5, 7)
    affine = grid_affine(shape, (1.0, 1.2, 2.0), axcodes="LPS", rotation_deg=(0, 0, 30))
    values = linear_z(shape, affine)
    paths = write_dicom_series(values, affine, tmp_path, DicomSeriesSpec(rescale_intercept=-1024))
    paths[3].unlink()
    with pytest.raises(DicomSeriesError, match=r"found 4\.000 mm between .* \(1 missing slice"):
        load_dicom_series(tmp_path)
    volume = load_dicom_series(tmp_path, options=DicomReadOptions(uneven_spacing="resample"))
    assert volume.spatial_shape == shape
    np.testing.assert_allclose(volume.affine, affine, atol=1e-4)
    np.testing.assert_allclose(volume.array[0], values, atol=1e-3)  # slice 3 interpolated


def test_duplicate_position_is_refused(oblique_ct):
    folder, _, _ = oblique_ct
    first = sorted(folder.iterdir())[0]
    shutil.copy(first, folder / "copy.dcm")
    with pytest.raises(DicomSeriesError, match=r"each slice position must be unique, found 2"):
        load_dicom_series(folder)


def test_too_few_slices_and_single_slice(tmp_path):
    affine = grid_affine((4, 3, 2), (1.0, 1.0, 4.0), axcodes="LPS")
    write_dicom_series(np.zeros((4, 3, 2)), affine, tmp_path, DicomSeriesSpec())
    with pytest.raises(DicomSeriesError, match=r"needs at least 3 slices, found 2 .*min_slices=2"):
        load_dicom_series(tmp_path)
    volume = load_dicom_series(tmp_path, options=DicomReadOptions(min_slices=2))
    np.testing.assert_allclose(volume.affine, affine, atol=1e-5)


def test_inconsistent_rows_columns_refused(tmp_path):
    spec = DicomSeriesSpec()
    write_dicom_series(np.zeros((5, 4, 3)), grid_affine((5, 4, 3), (1, 1, 2)), tmp_path / "a", spec)
    shifted = grid_affine((6, 4, 2), (1, 1, 2), center_mm=(0, 0, 20))
    write_dicom_series(np.zeros((6, 4, 2)), shifted, tmp_path / "b", spec)
    with pytest.raises(DicomSeriesError, match=r"same rows x columns, found \(4, 5\) \(3 images"):
        load_dicom_series(tmp_path)


def test_mosaic_refused(tmp_path):
    import pydicom

    affine = grid_affine((4, 3, 3), (1.0, 1.0, 2.0))
    for path in write_dicom_series(np.zeros((4, 3, 3)), affine, tmp_path, DicomSeriesSpec()):
        ds = pydicom.dcmread(path)
        ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "MOSAIC"]
        ds.save_as(path)
    with pytest.raises(DicomSeriesError, match="MOSAIC: NumberOfImagesInMosaic is missing"):
        load_dicom_series(tmp_path)


def test_truncated_pixel_data_refused(tmp_path):
    import pydicom

    affine = grid_affine((4, 3, 3), (1.0, 1.0, 2.0))
    paths = write_dicom_series(np.zeros((4, 3, 3)), affine, tmp_path, DicomSeriesSpec())
    ds = pydicom.dcmread(paths[1])
    ds.PixelData = ds.PixelData[:10]
    ds.save_as(paths[1])
    with pytest.raises(
        DicomSeriesError, match=r"must hold 24 bytes .* found 10; the file is trunc"
    ):
        load_dicom_series(tmp_path)


def test_folder_errors(tmp_path):
    with pytest.raises(DicomSeriesError, match="must be given as an existing folder"):
        scan_dicom_folder(tmp_path / "nope")
    (tmp_path / "notes.txt").write_text("not dicom")
    with pytest.raises(DicomSeriesError, match=r"holds no DICOM image \(1 files left out"):
        scan_dicom_folder(tmp_path)


def test_localizers_are_left_out(tmp_path):
    import pydicom

    affine = grid_affine((4, 3, 3), (1.0, 1.0, 2.0))
    paths = write_dicom_series(np.zeros((4, 3, 3)), affine, tmp_path, DicomSeriesSpec())
    ds = pydicom.dcmread(paths[0])
    ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    ds.save_as(paths[0])
    scan = scan_dicom_folder(tmp_path)
    assert scan.series[0].notes == ("1 LOCALIZER image(s) left out",)
    assert len(scan.series[0].frames) == 2


def test_synthetic_writer_checks_its_inputs(tmp_path):
    with pytest.raises(ConfigError, match="modality must be one of"):
        DicomSeriesSpec(modality="US")
    with pytest.raises(ConfigError, match="photometric must be MONOCHROME1 or MONOCHROME2"):
        DicomSeriesSpec(photometric="RGB")
    with pytest.raises(ConfigError, match=r"array must be \(X, Y, Z\)"):
        write_dicom_series(np.zeros((3, 3)), np.eye(4), tmp_path)
    with pytest.raises(ConfigError, match=r"array must be \(X, Y\)"):
        write_xray_dicom(np.zeros((3, 3, 3, 3)), np.eye(4), tmp_path / "x.dcm")
    with pytest.raises(ConfigError, match="values must fit 16-bit signed storage"):
        write_dicom_series(np.full((2, 2, 2), 1e6), np.eye(4), tmp_path, DicomSeriesSpec())


def _small_series(tmp_path: Path) -> list[Path]:
    affine = grid_affine((4, 3, 3), (1.0, 1.0, 2.0), axcodes="LPS")
    values = np.arange(36).reshape(4, 3, 3)
    return write_dicom_series(values, affine, tmp_path, DicomSeriesSpec())


def test_mixed_orientation_or_pixel_spacing_refused_when_stacked(tmp_path):
    from dataclasses import replace

    from medimg.io.dicom import DicomSeries
    from medimg.io.dicom.checks import stack_geometry

    _small_series(tmp_path)
    series = scan_dicom_folder(tmp_path).series[0]
    frames = list(series.frames)
    frames[1] = replace(frames[1], orientation=(0.0, 1.0, 0.0, 0.0, 0.0, -1.0))
    mixed = DicomSeries(folder=tmp_path, series_uid="1.2", frames=tuple(frames))
    with pytest.raises(DicomSeriesError, match="share one ImageOrientationPatient, found"):
        stack_geometry(mixed, DicomReadOptions())
    frames = list(series.frames)
    frames[2] = replace(frames[2], pixel_spacing_mm=(0.5, 0.5))
    mixed = DicomSeries(folder=tmp_path, series_uid="1.2", frames=tuple(frames))
    with pytest.raises(
        DicomSeriesError, match=r"one PixelSpacing, found \(1\.0, 1\.0\) \(2 images"
    ):
        stack_geometry(mixed, DicomReadOptions())


def test_memory_limit_checked_before_decoding(tmp_path):
    from medimg.errors import ImageTooLargeError

    _small_series(tmp_path)
    with pytest.raises(ImageTooLargeError, match=r"needs up to 0\.00 GiB, over the limit"):
        load_dicom_series(tmp_path, options=DicomReadOptions(max_bytes=100))


def test_undecodable_compressed_pixel_data_names_the_syntax(tmp_path):
    import pydicom
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEG2000Lossless

    paths = _small_series(tmp_path)
    ds = pydicom.dcmread(paths[0])
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    ds.PixelData = encapsulate([b"\x00" * 64])
    ds["PixelData"].VR = "OB"
    ds.save_as(paths[0], enforce_file_format=True)
    with pytest.raises(DicomSeriesError, match=r"pixel data \(JPEG 2000 Image Compression"):
        load_dicom_series(tmp_path)


def test_colour_images_are_not_volumes(tmp_path):
    import pydicom

    paths = _small_series(tmp_path)
    for path in paths:
        ds = pydicom.dcmread(path)
        ds.SamplesPerPixel = 3
        ds.PhotometricInterpretation = "RGB"
        ds.PlanarConfiguration = 0
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        ds.PixelData = bytes(3 * 4 * 3)
        ds.save_as(path)
    with pytest.raises(DicomSeriesError, match=r"one grayscale sample per pixel .* \(3, 4, 3\)"):
        load_dicom_series(tmp_path)


def test_multiframe_projection_refused(tmp_path):
    import pydicom

    phantom = xray_phantom((8, 6), (1.0, 1.0), seed=1)
    path = write_xray_dicom(phantom.image.array[0], phantom.image.affine, tmp_path / "a.dcm")
    ds = pydicom.dcmread(path)
    ds.NumberOfFrames = 2
    ds.PixelData = ds.PixelData * 2
    ds.save_as(path)
    with pytest.raises(DicomSeriesError, match=r"are missing \(1 multi-frame file\(s\) of 2 fr"):
        load_dicom_series(tmp_path, rules=SelectionRules(part=1))


def test_a_copied_series_is_not_taken_for_a_second_time_point(oblique_ct):
    folder, _, _ = oblique_ct
    shutil.copytree(folder, folder / "copy")
    assert len(scan_dicom_folder(folder).series) == 1
    with pytest.raises(DicomSeriesError, match=r"each slice position must be unique, found 2"):
        load_dicom_series(folder)
