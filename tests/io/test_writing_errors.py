"""save_volume and atomic_path on inputs they cannot write as given (issue 12 sweep, items 7, 8).

nibabel 5 refuses int64 data unless the dtype is given explicitly (NIfTI holds it as datatype
1024; uint64 as 1280) and has no code for float16; SimpleITK has none for float16 either.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medimg.errors import ImageWriteError, OutputExistsError
from medimg.io import atomic_path, load_volume, save_volume

# oblique, anisotropic grid: x 1.5 mm, y 1.0 mm, z 2.5 mm, rotated 30 degrees about z
_C, _S = np.cos(np.pi / 6), np.sin(np.pi / 6)
AFFINE = np.array(
    [
        [1.5 * _C, -1.0 * _S, 0.0, -10.0],
        [1.5 * _S, 1.0 * _C, 0.0, 4.0],
        [0.0, 0.0, 2.5, 7.5],
        [0.0, 0.0, 0.0, 1.0],
    ]
)
SUFFIXES = [".nii.gz", ".nrrd", ".mha"]


def _values(dtype: type, first: int | float) -> np.ndarray:
    out = np.arange(12).reshape(2, 3, 2).astype(dtype)
    out.flat[0] = first
    return out


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize(
    ("dtype", "first", "stored"),
    [
        (np.int64, 2**40, np.int64),  # beyond int32: kept (h6 item 8 was a nibabel ValueError)
        (np.int64, -(2**31) - 1, np.int64),  # one below int32's range
        (np.uint64, 2**63 + 5, np.uint64),  # beyond int64 too
        (np.int64, 2**31 - 1, np.int32),  # fits int32: written as int32, as documented
        (np.uint64, 7, np.int32),
    ],
)
def test_64_bit_integers_are_stored_exactly(
    tmp_path: Path, suffix: str, dtype: type, first: int, stored: type
) -> None:
    data = _values(dtype, first)
    path = save_volume(data, tmp_path / f"x{suffix}", like=AFFINE)
    volume = load_volume(path)
    assert volume.array.dtype == stored
    assert volume.array[0].astype(dtype).tolist() == data.tolist()  # exact, also 2**63 + 5
    np.testing.assert_allclose(volume.affine, AFFINE, atol=1e-6)


def test_int64_nifti_uses_datatype_1024(tmp_path: Path) -> None:
    path = save_volume(_values(np.int64, 2**40), tmp_path / "x.nii.gz", like=AFFINE)
    assert int(nib.load(path).header["datatype"]) == 1024
    path = save_volume(_values(np.uint64, 2**63), tmp_path / "u.nii.gz", like=AFFINE)
    assert int(nib.load(path).header["datatype"]) == 1280


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_float16_is_written_as_float32_and_says_so(
    tmp_path: Path, suffix: str, caplog: pytest.LogCaptureFixture
) -> None:
    # float16 -> float32 is exact: 0.1 in float16 is 0.0999755859375 in float32 too
    data = np.full((2, 3, 2), 0.1, np.float16)
    data[0, 0, 0] = 65504  # float16's largest
    with caplog.at_level(logging.INFO, logger="medimg.io.writing"):
        path = save_volume(data, tmp_path / f"h{suffix}", like=AFFINE)
    assert f"{path}: float16 voxels written as float32 (no output format holds float16)" in (
        caplog.text
    )
    volume = load_volume(path)
    assert volume.array.dtype == np.float32
    assert volume.array[0].tolist() == data.astype(np.float32).tolist()
    assert float(volume.array[0, 1, 0, 0]) == 0.0999755859375


@pytest.mark.parametrize("dtype", [">f4", ">i2", ">f2", ">i8"])
def test_big_endian_arrays_are_written_in_native_order(tmp_path: Path, dtype: str) -> None:
    data = np.arange(12).reshape(2, 3, 2).astype(dtype)
    volume = load_volume(save_volume(data, tmp_path / "b.nii.gz", like=AFFINE))
    assert volume.array[0].tolist() == data.tolist()


@pytest.mark.parametrize(
    ("data", "shown", "fix"),
    [
        (np.zeros((2, 3, 2), np.complex64), "complex64", "take np.abs(a) or a.real"),
        (np.zeros((2, 3, 2), np.longdouble), "float128", "convert it, e.g. a.astype(np.float64)"),
        (np.full((2, 3, 2), "a"), "<U1", "convert it to numbers first"),
        (np.full((2, 3, 2), None, object), "object", "convert it to numbers first"),
        (
            np.zeros((2, 3, 2), "i4,i4"),
            "[('f0', '<i4'), ('f1', '<i4')]",
            "convert it to numbers first",
        ),
    ],
)
@pytest.mark.parametrize("suffix", [".nii.gz", ".mha"])
def test_voxel_types_no_format_holds_are_refused(
    tmp_path: Path, data: np.ndarray, shown: str, fix: str, suffix: str
) -> None:
    path = tmp_path / f"bad{suffix}"
    with pytest.raises(
        ImageWriteError,
        match=re.escape(
            f"{path}: voxels must be bool, integers or float16/32/64 (what medimg reads back), "
            f"got dtype {shown}; {fix}"
        ),
    ):
        save_volume(data, path, like=AFFINE)
    assert list(tmp_path.iterdir()) == []  # refused before any temporary was made


def test_atomic_path_refuses_a_folder_even_with_overwrite(tmp_path: Path) -> None:
    folder = tmp_path / "out.nii.gz"
    folder.mkdir()
    for overwrite in (False, True):
        with (
            pytest.raises(
                OutputExistsError,
                match=r"out\.nii\.gz: is a folder; give a file path for the output \(a folder is "
                r"never replaced by a file, even with --force\)",
            ),
            atomic_path(folder, overwrite=overwrite),
        ):
            pytest.fail("the body must not run")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.nii.gz"]
    with pytest.raises(OutputExistsError, match="is a folder"):
        save_volume(np.zeros((2, 3, 2), np.float32), folder, like=AFFINE, overwrite=True)


def test_atomic_path_still_replaces_a_file(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("old")
    with pytest.raises(OutputExistsError, match=r"a\.txt: exists; pass overwrite=True"):
        atomic_path(path).__enter__()
    with atomic_path(path, overwrite=True) as tmp:
        tmp.write_text("new")
    assert path.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]
