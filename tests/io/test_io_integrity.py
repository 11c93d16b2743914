"""Compressed-data integrity, header-field checks and the decode limit, each message pinned."""

from __future__ import annotations

import bz2
import gzip
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from medimg.errors import GeometryError, ImageReadError, ImageTooLargeError
from medimg.io import (
    DEFAULT_MAX_BYTES,
    default_max_bytes,
    intensity_range,
    load_volume,
    read_header,
    verify_compressed,
)
from medimg.io import volume as volume_module
from medimg.io._compressed import CHUNK_BYTES
from medimg.synthetic import grid_affine

SHAPE = (12, 10, 8)
AFFINE = grid_affine(SHAPE, (1.0, 1.5, 2.5), axcodes="LPS", rotation_deg=(8.0, -4.0, 15.0))


def _data() -> np.ndarray:
    rng = np.random.default_rng(7)
    return rng.integers(-1000, 1000, size=SHAPE).astype(np.int16)


def _nii_gz(tmp_path: Path, name: str = "x.nii.gz") -> Path:
    path = tmp_path / name
    nib.save(nib.Nifti1Image(_data(), AFFINE), path)
    return path


def _flip(path: Path, pos: int, bit: int = 0) -> Path:
    raw = bytearray(path.read_bytes())
    raw[pos] ^= 1 << bit
    path.write_bytes(bytes(raw))
    return path


# --- gzip trailer -----------------------------------------------------------------------------


def test_flipped_crc_byte_is_refused_by_every_reader(tmp_path: Path) -> None:
    path = _flip(_nii_gz(tmp_path), -6)  # inside the CRC-32 of the trailer
    msg = r"x\.nii\.gz: corrupt gzip stream: CRC check failed: the stored CRC-32 of member 1"
    with pytest.raises(ImageReadError, match=msg + r".*the file is damaged"):
        load_volume(path)
    with pytest.raises(ImageReadError, match=msg):
        verify_compressed(path)
    with pytest.raises(ImageReadError, match=msg):
        read_header(path, verify=True)
    with pytest.raises(ImageReadError, match=msg):
        intensity_range(path)
    assert read_header(path).shape == SHAPE  # a header-only read cannot see the body


def test_flipped_length_is_a_length_mismatch(tmp_path: Path) -> None:
    path = _flip(_nii_gz(tmp_path), -2)  # inside ISIZE
    with pytest.raises(ImageReadError, match=r"x\.nii\.gz: corrupt gzip stream: length mismatch"):
        load_volume(path)


def test_body_bit_flip_never_passes_silently(tmp_path: Path) -> None:
    good = _nii_gz(tmp_path, "good.nii.gz")
    raw = good.read_bytes()
    bad = tmp_path / "bad.nii.gz"
    for pos in range(len(raw) // 2, len(raw) - 8, 97):
        bad.write_bytes(raw[:pos] + bytes([raw[pos] ^ 0x10]) + raw[pos + 1 :])
        with pytest.raises(ImageReadError, match=r"bad\.nii\.gz: .*(gzip stream|truncated)"):
            load_volume(bad)


def test_truncated_gzip_says_cut_short(tmp_path: Path) -> None:
    good = _nii_gz(tmp_path, "good.nii.gz")
    bad = tmp_path / "cut.nii.gz"
    bad.write_bytes(good.read_bytes()[:-20])
    with pytest.raises(
        ImageReadError,
        match=r"cut\.nii\.gz: truncated or corrupt gzip stream: the file ends before the end of "
        r"compressed member 1 .*cut short",
    ):
        load_volume(bad)


def test_concatenated_members_and_zero_padding_are_fine(tmp_path: Path) -> None:
    good = _nii_gz(tmp_path, "good.nii.gz")
    raw = gzip.decompress(good.read_bytes())
    cat = tmp_path / "cat.nii.gz"
    cat.write_bytes(gzip.compress(raw[:1000]) + gzip.compress(raw[1000:]) + b"\0" * 64)
    np.testing.assert_array_equal(load_volume(cat).array, load_volume(good).array)
    verify_compressed(cat)


def test_trailing_garbage_after_last_member_is_refused(tmp_path: Path) -> None:
    good = _nii_gz(tmp_path, "good.nii.gz")
    bad = tmp_path / "junk.nii.gz"
    bad.write_bytes(good.read_bytes() + b"\x1f\x8bjunk")
    with pytest.raises(ImageReadError, match=r"junk\.nii\.gz: truncated or corrupt gzip stream"):
        load_volume(bad)


def test_data_larger_than_one_chunk_is_read_exactly(tmp_path: Path) -> None:
    # 1.2 chunks of float32 voxels after a 352-byte offset: pieces split voxels.
    shape = (int(1.2 * CHUNK_BYTES) // 4000 + 1, 40, 25)
    data = np.linspace(-5.0, 7.0, int(np.prod(shape)), dtype=np.float32).reshape(shape)
    path = tmp_path / "big.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    loaded = load_volume(path)
    np.testing.assert_array_equal(loaded.array[0], data)
    assert intensity_range(path) == (-5.0, 7.0)


# --- NRRD and MetaImage compressed bodies (ITK decodes a flipped bit silently) ------------------


def _itk(tmp_path: Path, name: str) -> Path:
    image = sitk.GetImageFromArray(_data().transpose())
    path = tmp_path / name
    sitk.WriteImage(image, str(path), useCompression=True)
    return path


def test_nrrd_gzip_crc(tmp_path: Path) -> None:
    path = _flip(_itk(tmp_path, "x.nrrd"), -7)
    with pytest.raises(ImageReadError, match=r"x\.nrrd: corrupt gzip stream: CRC check failed"):
        load_volume(path)


def test_metaimage_zlib_adler(tmp_path: Path) -> None:
    path = _flip(_itk(tmp_path, "x.mha"), -2)
    with pytest.raises(
        ImageReadError, match=r"x\.mha: corrupt zlib stream: CRC check failed: the stored Adler-32"
    ):
        load_volume(path)


def test_metaimage_zlib_stream_too_short_for_grid(tmp_path: Path) -> None:
    body = zlib.compress(b"\0" * 100)
    text = (
        "ObjectType = Image\nNDims = 3\nBinaryData = True\nCompressedData = True\n"
        f"CompressedDataSize = {len(body)}\nDimSize = 12 10 8\nElementType = MET_SHORT\n"
        "ElementDataFile = LOCAL\n"
    )
    path = tmp_path / "short.mha"
    path.write_bytes(text.encode() + body)
    with pytest.raises(
        ImageReadError,
        match=r"short\.mha: length mismatch: the zlib stream decodes to 100 bytes, the header's "
        r"grid needs 1920",
    ):
        verify_compressed(path)


def test_nrrd_bzip2_detached(tmp_path: Path) -> None:
    raw = _data().astype("<i2").tobytes(order="F")
    (tmp_path / "x.raw.bz2").write_bytes(bz2.compress(raw)[:-3] + b"zzz")
    header = (
        "NRRD0004\ntype: short\ndimension: 3\nsizes: 12 10 8\nspacings: 1 1.5 2.5\n"
        "endian: little\nencoding: bzip2\ndata file: x.raw.bz2\n"
    )
    (tmp_path / "x.nhdr").write_text(header)
    with pytest.raises(ImageReadError, match=r"x\.raw\.bz2: .*bzip2 stream"):
        verify_compressed(tmp_path / "x.nhdr")


# --- NIfTI header fields ----------------------------------------------------------------------


def _nii_with(tmp_path: Path, klass: type = nib.Nifti1Image, **fields: object) -> Path:
    """A valid file whose header fields are then overwritten byte-wise (nibabel would fix them)."""
    img = klass(_data(), AFFINE)
    img.set_sform(AFFINE, 1)
    img.set_qform(AFFINE, 1)
    path = tmp_path / "h.nii"
    nib.save(img, path)
    raw = bytearray(path.read_bytes())
    dtype = img.header.template_dtype
    h = np.frombuffer(bytes(raw[: dtype.itemsize]), dtype=dtype).copy()
    for key, value in fields.items():
        h[key] = value
    raw[: dtype.itemsize] = h.tobytes()
    path.write_bytes(bytes(raw))
    return path


@pytest.mark.parametrize(
    ("fields", "error", "pattern"),
    [
        ({"datatype": 77}, ImageReadError, r"header field datatype must be a NIfTI data type code"),
        ({"vox_offset": 0}, ImageReadError, r"vox_offset must be finite and >= 352 in a single"),
        ({"scl_slope": np.nan}, ImageReadError, r"scl_slope must be finite \(0 means no scaling\)"),
        ({"scl_slope": 2.0, "scl_inter": np.inf}, ImageReadError, r"scl_inter must be finite"),
        ({"sform_code": 99}, ImageReadError, r"sform_code must be one of \[0, 1, 2, 3, 4, 5\]"),
        ({"srow_x": [np.nan, 0, 0, 0]}, GeometryError, r"the sform \(srow_x, srow_y, srow_z\)"),
        ({"sform_code": 0, "quatern_b": np.inf}, GeometryError, r"the qform \(quatern_b"),
        ({"sform_code": 0, "quatern_b": 0.9, "quatern_c": 0.9}, GeometryError, r"norm > 1"),
        (
            {"srow_x": [0, 1, 0, 5], "srow_y": [0, 0, 1, 0], "srow_z": [0, 0, 0, 1]},
            GeometryError,
            r"sform .* singular: voxel axis 0 has zero length",
        ),
        (
            {"srow_x": [1, 1, 0, 0], "srow_y": [1, 1, 0, 0]},
            GeometryError,
            r"sform .* singular: its voxel axes are linearly dependent",
        ),
        (
            {"sform_code": 0, "qform_code": 0, "pixdim": [1, np.nan, 1, 1, 1, 1, 1, 1]},
            ImageReadError,
            r"header field pixdim must be finite",
        ),
        ({"dim": [3, -12, 10, 8, 1, 1, 1, 1]}, ImageReadError, r"dim\[1\] must be >= 1"),
        ({"dim": [9, 12, 10, 8, 1, 1, 1, 1]}, ImageReadError, r"dim\[0\] must be 1\.\.7"),
        ({"sizeof_hdr": 10}, ImageReadError, r"sizeof_hdr must be 348 .* or 540"),
    ],
)
def test_bad_nifti1_fields(
    tmp_path: Path, fields: dict[str, object], error: type[Exception], pattern: str
) -> None:
    path = _nii_with(tmp_path, **fields)
    with pytest.raises(error, match=r"h\.nii: .*" + pattern + r".*re-export the image"):
        read_header(path)
    with pytest.raises(error, match=pattern):
        load_volume(path)


def test_bad_nifti2_vox_offset(tmp_path: Path) -> None:
    path = _nii_with(tmp_path, nib.Nifti2Image, vox_offset=100)
    with pytest.raises(ImageReadError, match=r"vox_offset must be finite and >= 544"):
        read_header(path)


def test_nifti2_dims_past_int64_are_too_large_not_an_overflow(tmp_path: Path) -> None:
    path = _nii_with(tmp_path, nib.Nifti2Image, dim=[3, 2**40, 2**40, 2**20, 1, 1, 1, 1])
    with pytest.raises(ImageTooLargeError, match=r"needs .* GiB, over the limit .*max_bytes="):
        load_volume(path)


def test_nan_qform_with_no_sform_is_refused_at_header_read(tmp_path: Path) -> None:
    path = _nii_with(tmp_path, sform_code=0, qoffset_x=np.nan)
    with pytest.raises(GeometryError, match=r"the qform .* holds non-finite values"):
        read_header(path)


# --- NRRD / MetaImage header geometry -----------------------------------------------------------


def _mha(tmp_path: Path, **fields: str) -> Path:
    base = {
        "ObjectType": "Image",
        "NDims": "3",
        "BinaryData": "True",
        "TransformMatrix": "1 0 0 0 1 0 0 0 1",
        "Offset": "0 0 0",
        "ElementSpacing": "1 1.5 2.5",
        "DimSize": "4 3 2",
        "ElementType": "MET_SHORT",
        **fields,
    }
    path = tmp_path / "g.mha"
    text = "".join(f"{k} = {v}\n" for k, v in base.items()) + "ElementDataFile = LOCAL\n"
    path.write_bytes(text.encode() + b"\0" * 48)
    return path


@pytest.mark.parametrize(
    ("fields", "error", "pattern"),
    [
        ({"ElementSpacing": "0 1 1"}, GeometryError, r"ElementSpacing gives voxel spacing \[0\.0"),
        ({"ElementSpacing": "nan 1 1"}, GeometryError, r"ElementSpacing must be finite numbers"),
        ({"Offset": "inf 0 0"}, GeometryError, r"Offset must be finite numbers, got 'inf 0 0'"),
        ({"TransformMatrix": "1 0 0 1 0 0 0 0 1"}, GeometryError, r"TransformMatrix gives a dir"),
        ({"NDims": "-3"}, ImageReadError, r"NDims must be an integer 1\.\.8, got -3"),
        ({"DimSize": "0 3 2"}, ImageReadError, r"DimSize must be 3 voxel counts >= 1"),
    ],
)
def test_bad_metaimage_fields(
    tmp_path: Path, fields: dict[str, str], error: type[Exception], pattern: str
) -> None:
    with pytest.raises(error, match=r"g\.mha: header field " + pattern):
        read_header(_mha(tmp_path, **fields))


@pytest.mark.parametrize(
    ("line", "error", "pattern"),
    [
        ("space directions: (1,0,0) (2,0,0) (0,0,3)", GeometryError, r"space directions gives"),
        ("space directions: (0,0,0) (0,2,0) (0,0,3)", GeometryError, r"space directions gives"),
        ("sizes: 0 3 2", ImageReadError, r"sizes must be 3 voxel counts >= 1, got 0 3 2"),
    ],
)
def test_bad_nrrd_fields(tmp_path: Path, line: str, error: type[Exception], pattern: str) -> None:
    fields = {
        "type": "short",
        "dimension": "3",
        "space": "left-posterior-superior",
        "sizes": "4 3 2",
        "space directions": "(1,0,0) (0,2,0) (0,0,3)",
        "endian": "little",
        "encoding": "raw",
    }
    key, value = line.split(": ", 1)
    fields[key] = value
    path = tmp_path / "n.nrrd"
    text = "NRRD0004\n" + "".join(f"{k}: {v}\n" for k, v in fields.items()) + "\n"
    path.write_bytes(text.encode() + b"\0" * 48)
    with pytest.raises(error, match=r"n\.nrrd: header field " + pattern):
        read_header(path)


# --- decode limit -------------------------------------------------------------------------------


def test_default_limit_follows_available_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    # 10 GiB available -> 8 GiB limit; 100 GiB -> capped at 16 GiB; unknown -> 16 GiB.
    monkeypatch.setattr(volume_module, "_available_memory_bytes", lambda: 10 * 1024**3)
    assert default_max_bytes() == 8 * 1024**3
    monkeypatch.setattr(volume_module, "_available_memory_bytes", lambda: 100 * 1024**3)
    assert default_max_bytes() == DEFAULT_MAX_BYTES
    monkeypatch.setattr(volume_module, "_available_memory_bytes", lambda: None)
    assert default_max_bytes() == DEFAULT_MAX_BYTES


def test_default_limit_is_computed_at_call_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _nii_gz(tmp_path)  # 1920 bytes decoded
    monkeypatch.setattr(volume_module, "_available_memory_bytes", lambda: 1000)
    with pytest.raises(
        ImageTooLargeError,
        match=r"over the limit of 0\.00 GiB; .*max_bytes= in load_volume, or --max-memory-gb in "
        r"medimg info and medimg validate",
    ):
        load_volume(path)


def test_intensity_range_applies_scaling_and_skips_nonfinite(tmp_path: Path) -> None:
    data = np.array([[[1.0, np.nan], [np.inf, -3.0]]], dtype=np.float32)
    path = tmp_path / "r.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    assert intensity_range(path) == (-3.0, 1.0)
    img = nib.Nifti1Image(np.array([[[2, 5]]], dtype=np.int16), np.eye(4))
    img.header.set_slope_inter(-2.0, 10.0)
    nib.save(img, tmp_path / "s.nii")
    assert intensity_range(tmp_path / "s.nii") == (0.0, 6.0)  # 10 - 2*5, 10 - 2*2
