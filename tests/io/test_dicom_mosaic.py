"""Siemens MOSAIC reading: synthetic mosaics with known answers, CSA parsing, the real fMRI case.

The synthetic mosaics are oblique, anisotropic 4D series; the expected array and affine are
the ones written, brought to RAS by nibabel's orientation helpers.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation

from medimg.cli import main
from medimg.errors import DicomSeriesError
from medimg.io import load_volume
from medimg.io.dicom import (
    SelectionRules,
    load_dicom_series,
    read_4d,
    scan_dicom_folder,
    time_groups,
)
from medimg.io.dicom._csa import MAX_TAGS, ascconv, parse_csa
from medimg.synthetic import grid_affine
from medimg.synthetic.dicom_mosaic import csa_header, write_mosaic_series

SHAPE = (6, 5, 7)  # 7 slices: a 3 x 3 grid with 2 empty tiles


def _data() -> tuple[np.ndarray, np.ndarray]:
    affine = grid_affine(SHAPE, (0.9, 1.1, 2.5), axcodes="LPS", rotation_deg=(10.0, -5.0, 15.0))
    values = np.random.default_rng(0).integers(0, 4000, size=(3, *SHAPE)).astype(np.float64)
    return values, affine


def _expected_ras(values: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ornt = io_orientation(affine)
    array = np.stack([apply_orientation(v, ornt) for v in values])
    return array, affine @ inv_ornt_aff(ornt, SHAPE)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"image_header": False},
        {"descending": True},
        {"descending": True, "image_header": False},
    ],
    ids=["csa-image", "protocol-only", "descending", "descending-protocol-only"],
)
def test_mosaic_4d_matches_written_volumes(tmp_path: Path, options: dict[str, bool]) -> None:
    values, affine = _data()
    write_mosaic_series(values, affine, tmp_path, **options)
    scan = scan_dicom_folder(tmp_path, pixels=True)
    assert [s.time_point for s in scan.series] == [1, 2, 3]
    assert all(s.is_mosaic and s.split_reason == "split by acquisition number" for s in scan.series)
    (group,) = time_groups(scan.series)
    volume = read_4d(group).to_ras()
    expected, expected_affine = _expected_ras(values, affine)
    np.testing.assert_array_equal(volume.array, expected)
    np.testing.assert_allclose(volume.affine, expected_affine, atol=1e-4)


def test_mosaics_at_one_position_split_by_acquisition_time(tmp_path: Path) -> None:
    values, affine = _data()
    write_mosaic_series(values, affine, tmp_path, same_acquisition_number=True)
    scan = scan_dicom_folder(tmp_path)
    assert [s.split_reason for s in scan.series] == ["split by acquisition time"] * 3
    part2 = load_dicom_series(tmp_path, rules=SelectionRules(part=2)).to_ras()
    np.testing.assert_array_equal(part2.array[0], _expected_ras(values, affine)[0][1])


def test_dicom_ls_says_mosaic(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    values, affine = _data()
    write_mosaic_series(values[:1], affine, tmp_path)
    assert main(["dicom", "ls", str(tmp_path)]) == 0
    assert "MOSAIC: 1 Siemens mosaic file(s) unpacked into slices" in capsys.readouterr().out


def test_mosaic_without_slice_count_is_refused_naming_the_file(tmp_path: Path) -> None:
    values, affine = _data()
    (path,) = write_mosaic_series(values[:1], affine, tmp_path, image_header=False)
    import pydicom

    ds = pydicom.dcmread(path)
    del ds[0x00291020]
    ds.save_as(path)
    with pytest.raises(DicomSeriesError, match=r"mosaic_001\.dcm: Siemens MOSAIC: NumberOfImag"):
        load_dicom_series(tmp_path)


def test_mosaic_that_does_not_divide_into_tiles_is_refused(tmp_path: Path) -> None:
    values, affine = _data()
    (path,) = write_mosaic_series(values[:1], affine, tmp_path)
    import pydicom

    ds = pydicom.dcmread(path)
    ds[0x00291010].value = csa_header({"NumberOfImagesInMosaic": ["17"]})
    ds.save_as(path)
    with pytest.raises(DicomSeriesError, match=r"17 slices is a 5 x 5 grid .* 15 x 18 does not"):
        load_dicom_series(tmp_path)


def test_damaged_csa_header_is_refused(tmp_path: Path) -> None:
    values, affine = _data()
    (path,) = write_mosaic_series(values[:1], affine, tmp_path)
    import pydicom

    ds = pydicom.dcmread(path)
    ds[0x00291010].value = ds[0x00291010].value[:100]
    ds.save_as(path)
    with pytest.raises(DicomSeriesError, match=r"CSA image header \(0029,1010\): .*ends inside"):
        load_dicom_series(tmp_path)


def test_csa_parser_bounds() -> None:
    assert parse_csa(csa_header({"A": ["1", "2"], "B": []}), "x") == {"A": ("1", "2"), "B": ()}
    with pytest.raises(DicomSeriesError, match=r"must hold at least 16 bytes, got 6"):
        parse_csa(b"SV10\0\0", "x.dcm (0029,1010)")
    with pytest.raises(DicomSeriesError, match=rf"claims {MAX_TAGS + 1} tags"):
        parse_csa(b"SV10\0\0\0\0" + struct.pack("<2I", MAX_TAGS + 1, 77), "x")
    bad = bytearray(csa_header({"A": ["123"]}))
    bad[16 + 84 + 4 : 16 + 84 + 8] = struct.pack("<i", 10**6)  # item length past the end
    with pytest.raises(DicomSeriesError, match=r"item 1 of tag 'A' must fit"):
        parse_csa(bytes(bad), "x")
    # CSA1: no SV10 prefix, item length = first integer minus the first tag's item count
    old = struct.pack("<2I", 1, 77) + struct.pack("<64si4s3i", b"N", 1, b"IS\0\0", 6, 1, 77)
    old += struct.pack("<4i", 4 + 1, 4, 77, 4) + b"42\0\0"
    assert parse_csa(old, "x") == {"N": ("42",)}
    assert ascconv("no protocol here", "x") == {}


def test_siemens_fmri_matches_dicom2nifti_voxels(realdata: Path) -> None:
    """dicom2nifti's siemens/fmri/001: 2 mosaics of 50 slices (8 x 8 tiles of 80 x 80).

    The voxels equal the ground truth exactly and the affine's axes agree within 1e-3 mm.
    The translation does not: the mosaics number their images against the slice normal
    (``sSliceArray.ucImageNumbTra = 0x1``), so tile 0 is the top slice, and dicom2nifti puts
    the corrected ImagePositionPatient (tile 0's position) on its voxel 0, which holds tile 49.
    The protocol's own slice centres settle it: slice ``asSlice[0]`` (the bottom slice, tile
    49) is at LPS (-1.51, -20.56, -59.85) mm; our voxel 0's centre is within half a pixel
    in plane and 0.25 mm through plane of it, dicom2nifti's is 150.9 mm (49 x 3.08) away
    along the normal. We assert that offset exactly.
    """
    folder = realdata / "dicom" / "dicom2nifti" / "siemens" / "fmri" / "001"
    gt = load_volume(folder.parent / "001_ground_truth.nii.gz", ndim=None)
    (group,) = time_groups(scan_dicom_folder(folder, pixels=True).series)
    volume = read_4d(group)
    assert volume.array.shape == gt.array.shape == (2, 80, 80, 50)
    np.testing.assert_array_equal(volume.array, gt.array)
    np.testing.assert_allclose(volume.affine[:3, :3], gt.affine[:3, :3], atol=1e-3)
    step = volume.affine[:3, 2]
    np.testing.assert_allclose(volume.affine[:3, 3], gt.affine[:3, 3] - 49 * step, atol=1e-3)
    centre = volume.affine @ np.array([39.5, 39.5, 0.0, 1.0])
    protocol_lps = np.array([-1.513475754, -20.56062043, -59.85445753])
    normal = step / np.linalg.norm(step)
    lps_centre = centre[:3] * np.array([-1.0, -1.0, 1.0])
    normal_lps = normal * np.array([-1.0, -1.0, 1.0])
    assert abs((lps_centre - protocol_lps) @ normal_lps) < 0.3
