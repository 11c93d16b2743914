"""Bad image files through ``medimg info FILE``: each kind pinned to exit code 2 and its message."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from catalogue_helpers import BadInput, check_bad_input

from medimg.synthetic import grid_affine

SHAPE = (6, 5, 4)
AFFINE = grid_affine(SHAPE, (1.0, 1.5, 2.5), axcodes="RAS", rotation_deg=(5.0, 0.0, 10.0))


def _data() -> np.ndarray:
    return np.arange(np.prod(SHAPE), dtype=np.int16).reshape(SHAPE)


def _nii(tmp: Path, name: str = "img.nii.gz", **fields: object) -> Path:
    img = nib.Nifti1Image(_data(), AFFINE)
    img.set_sform(AFFINE, 1)
    img.set_qform(AFFINE, 1)
    path = tmp / name
    nib.save(img, path)
    if not fields:
        return path
    raw = bytearray(
        gzip.decompress(path.read_bytes()) if name.endswith(".gz") else path.read_bytes()
    )
    dtype = nib.Nifti1Header.template_dtype
    h = np.frombuffer(bytes(raw[: dtype.itemsize]), dtype=dtype).copy()
    for key, value in fields.items():
        h[key] = value
    raw[: dtype.itemsize] = h.tobytes()
    path.write_bytes(gzip.compress(bytes(raw)) if name.endswith(".gz") else bytes(raw))
    return path


def _info(*paths: Path | str, options: Sequence[str] = ()) -> list[str]:
    return ["info", *options, *[str(p) for p in paths]]


def crc_flipped(tmp: Path) -> list[str]:
    path = _nii(tmp)
    raw = bytearray(path.read_bytes())
    raw[-7] ^= 0x04  # the gzip trailer's CRC-32
    path.write_bytes(bytes(raw))
    return _info(path)


def gzip_truncated(tmp: Path) -> list[str]:
    path = _nii(tmp)
    path.write_bytes(path.read_bytes()[:-30])
    return _info(path)


def nii_truncated(tmp: Path) -> list[str]:
    path = _nii(tmp, "img.nii")
    path.write_bytes(path.read_bytes()[:-50])
    return _info(path)


def bad_datatype(tmp: Path) -> list[str]:
    return _info(_nii(tmp, datatype=77))


def vox_offset_low(tmp: Path) -> list[str]:
    return _info(_nii(tmp, "img.nii", vox_offset=0))


def nan_slope(tmp: Path) -> list[str]:
    return _info(_nii(tmp, scl_slope=np.nan))


def nonfinite_sform(tmp: Path) -> list[str]:
    return _info(_nii(tmp, srow_y=[0.0, np.inf, 0.0, 1.0]))


def negative_dim(tmp: Path) -> list[str]:
    return _info(_nii(tmp, dim=[3, 6, -5, 4, 1, 1, 1, 1]))


def memory_bomb(tmp: Path) -> list[str]:
    # 1024 x 1024 x 1024 uint8 zeros: a 1 MiB file that decodes to 1 GiB.
    header = nib.Nifti1Header()
    header.set_data_shape((1024, 1024, 1024))
    header.set_data_dtype(np.uint8)
    header.set_sform(np.eye(4), 1)
    header["vox_offset"] = 352
    path = tmp / "bomb.nii.gz"
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [comp.compress(header.binaryblock + b"\0" * 4)]
    zeros = bytes(1 << 20)
    parts += [comp.compress(zeros) for _ in range(4)]  # only the head: refused before reading
    parts.append(comp.flush())
    path.write_bytes(b"".join(parts))
    return _info(path, options=["--max-memory-gb", "0.5"])


def nrrd_singular_directions(tmp: Path) -> list[str]:
    path = tmp / "img.nrrd"
    text = (
        "NRRD0004\ntype: short\ndimension: 3\nspace: left-posterior-superior\nsizes: 6 5 4\n"
        "space directions: (1,0,0) (2,0,0) (0,0,2.5)\nendian: little\nencoding: raw\n\n"
    )
    path.write_bytes(text.encode() + _data().tobytes(order="F"))
    return _info(path)


def nrrd_gzip_flipped(tmp: Path) -> list[str]:
    path = tmp / "img.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(_data().T), str(path), useCompression=True)
    raw = bytearray(path.read_bytes())
    raw[-6] ^= 0x01
    path.write_bytes(bytes(raw))
    return _info(path)


def _mhd(tmp: Path, **fields: str) -> Path:
    base = {
        "ObjectType": "Image",
        "NDims": "3",
        "BinaryData": "True",
        "ElementSpacing": "1 1.5 2.5",
        "Offset": "0 0 0",
        "DimSize": "6 5 4",
        "ElementType": "MET_SHORT",
        **fields,
    }
    path = tmp / "img.mhd"
    data_file = base.pop("ElementDataFile", "img.raw")
    text = "".join(f"{k} = {v}\n" for k, v in base.items()) + f"ElementDataFile = {data_file}\n"
    path.write_text(text)
    return path


def mha_missing_data_file(tmp: Path) -> list[str]:
    return _info(_mhd(tmp, ElementDataFile="gone.raw"))


def mha_inf_offset(tmp: Path) -> list[str]:
    path = _mhd(tmp, Offset="inf 0 0")
    (tmp / "img.raw").write_bytes(_data().tobytes(order="F"))
    return _info(path)


def mha_zlib_flipped(tmp: Path) -> list[str]:
    path = tmp / "img.mha"
    sitk.WriteImage(sitk.GetImageFromArray(_data().T), str(path), useCompression=True)
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0x20  # the zlib stream's Adler-32
    path.write_bytes(bytes(raw))
    return _info(path)


def unknown_extension(tmp: Path) -> list[str]:
    path = tmp / "img.png"
    path.write_bytes(b"\x89PNG\r\n")
    return _info(path)


def folder_given(tmp: Path) -> list[str]:
    (tmp / "series").mkdir()
    return _info(tmp / "series")


def missing_file(tmp: Path) -> list[str]:
    return _info(tmp / "nowhere.nii.gz")


def not_gzip(tmp: Path) -> list[str]:
    path = tmp / "img.nii.gz"
    path.write_bytes(b"plain text, not gzip" * 30)
    return _info(path)


_T = r"{tmp}/"
CATALOGUE = [
    BadInput("io_gzip_crc_flipped", crc_flipped, 2,
             _T + r"img\.nii\.gz: corrupt gzip stream: CRC check failed.*file is damaged"),
    BadInput("io_gzip_truncated", gzip_truncated, 2,
             _T + r"img\.nii\.gz: truncated or corrupt gzip stream: the file ends before"),
    BadInput("io_nii_truncated", nii_truncated, 2,
             _T + r"img\.nii: file is truncated: the header promises 592 bytes"),
    BadInput("io_nifti_bad_datatype", bad_datatype, 2,
             _T + r"img\.nii\.gz: header field datatype must be a NIfTI data type code.*got 77"),
    BadInput("io_nifti_vox_offset_low", vox_offset_low, 2,
             _T + r"img\.nii: header field vox_offset must be finite and >= 352"),
    BadInput("io_nifti_nan_slope", nan_slope, 2,
             _T + r"img\.nii\.gz: header field scl_slope must be finite .*got nan"),
    BadInput("io_nifti_nonfinite_sform", nonfinite_sform, 2,
             _T + r"img\.nii\.gz: the sform \(srow_x, srow_y, srow_z\) holds non-finite"),
    BadInput("io_nifti_negative_dim", negative_dim, 2,
             _T + r"img\.nii\.gz: header field dim\[2\] must be >= 1 .*got -5"),
    BadInput("io_memory_bomb_over_limit", memory_bomb, 2,
             _T + r"bomb\.nii\.gz: decoding shape \(1024, 1024, 1024\) as uint8 needs 1\.00 GiB, "
             r"over the limit of 0\.50 GiB.*--max-memory-gb"),
    BadInput("io_nrrd_singular_directions", nrrd_singular_directions, 2,
             _T + r"img\.nrrd: header field space directions gives a direction matrix"),
    BadInput("io_nrrd_gzip_crc_flipped", nrrd_gzip_flipped, 2,
             _T + r"img\.nrrd: corrupt gzip stream: CRC check failed"),
    BadInput("io_mha_missing_data_file", mha_missing_data_file, 2,
             _T + r"img\.mhd: header field ElementDataFile names the data file 'gone\.raw'"),
    BadInput("io_mha_inf_offset", mha_inf_offset, 2,
             _T + r"img\.mhd: header field Offset must be finite numbers, got 'inf 0 0'"),
    BadInput("io_mha_zlib_adler_flipped", mha_zlib_flipped, 2,
             _T + r"img\.mha: corrupt zlib stream: CRC check failed: the stored Adler-32"),
    BadInput("io_unknown_extension", unknown_extension, 2,
             _T + r"img\.png: unknown image extension '\.png'; supported: \.nii\.gz"),
    BadInput("io_folder_given", folder_given, 2,
             _T + r"series: is a folder, not an image file"),
    BadInput("io_missing_file", missing_file, 2, _T + r"nowhere\.nii\.gz: no such file"),
    BadInput("io_not_gzip", not_gzip, 2, _T + r"img\.nii\.gz: truncated or corrupt gzip stream"),
]  # fmt: skip


@pytest.mark.parametrize("entry", CATALOGUE, ids=[e.kind for e in CATALOGUE])
def test_bad_image_file(
    entry: BadInput, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    check_bad_input(entry, tmp_path, capsys)


def test_good_file_passes_info(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from medimg.cli import main

    assert main(_info(_nii(tmp_path))) == 0
    assert "range     0 .. 119" in capsys.readouterr().out
