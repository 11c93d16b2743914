"""Property tests: mutated NIfTI-1, NIfTI-2, NRRD and MetaImage headers end in medimg errors only.

Each test starts from a tiny valid file (anisotropic, oblique), mutates one header field to a
drawn value (NaN, infinities, huge, negative, random bytes) or overwrites header bytes, and
runs ``read_header``, ``load_volume`` and ``medimg info``: whatever happens, nothing but a
:class:`~medimg.errors.MedimgError` may escape, and ``info`` answers 0 or 2 without a traceback.
"""

from __future__ import annotations

import io
import math
import struct
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medimg.cli import main
from medimg.errors import MedimgError
from medimg.io import intensity_range, load_volume, read_header
from medimg.synthetic import grid_affine

SETTINGS = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

_AFFINE = grid_affine((4, 3, 2), (0.9, 1.5, 2.5), axcodes="LPS", rotation_deg=(10.0, -5.0, 20.0))
_DATA = np.arange(4 * 3 * 2, dtype=np.int16).reshape(4, 3, 2)

_NASTY_FLOATS = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -1.0, 1e30, -1e30, 1e-40]),
    st.floats(allow_nan=True, allow_infinity=True, width=32),
)
_NASTY_INTS = st.one_of(
    st.sampled_from([0, -1, 1, 7, 8, 255, 2**15 - 1, -(2**15), 2**31 - 1]),
    st.integers(-(2**31), 2**31 - 1),
)


def _nifti_bytes(klass: type) -> bytes:
    img = klass(_DATA, _AFFINE)
    img.set_qform(_AFFINE, 1)
    img.set_sform(_AFFINE, 1)
    bio = io.BytesIO()
    file_map = klass.make_file_map({"image": bio, "header": bio})
    img.to_file_map(file_map)
    return bio.getvalue()


_BASES = {"nifti1": _nifti_bytes(nib.Nifti1Image), "nifti2": _nifti_bytes(nib.Nifti2Image)}
_HEADER = {"nifti1": nib.Nifti1Header, "nifti2": nib.Nifti2Header}


def _mutate_field(kind: str, field: str, index: int, value: float) -> bytes:
    raw = bytearray(_BASES[kind])
    dtype = _HEADER[kind].template_dtype
    h = np.frombuffer(bytes(raw[: dtype.itemsize]), dtype=dtype).copy()
    target = h[field]  # a view: shape (1,) or (1, n)
    if target.dtype.kind != "f":
        info = np.iinfo(target.dtype)
        value = int(min(max(value, info.min), info.max)) if math.isfinite(value) else 0
    if target.ndim == 2:
        target[0, index % target.shape[1]] = value
    else:
        target[0] = value
    raw[: dtype.itemsize] = h.tobytes()
    return bytes(raw)


_FIELDS = [
    "dim",
    "datatype",
    "bitpix",
    "pixdim",
    "vox_offset",
    "scl_slope",
    "scl_inter",
    "qform_code",
    "sform_code",
    "quatern_b",
    "quatern_c",
    "quatern_d",
    "qoffset_x",
    "srow_x",
    "srow_y",
    "srow_z",
    "sizeof_hdr",
]


def _only_medimg_errors(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for read in (read_header, load_volume, intensity_range):
        try:
            read(path)
        except MedimgError:
            pass
    code = main(["info", str(path)])
    err = capsys.readouterr().err
    assert code in (0, 2), err
    assert "Traceback" not in err
    if code == 2:
        assert f"error: {path}" in err, err


@pytest.mark.parametrize("kind", ["nifti1", "nifti2"])
@SETTINGS
@given(
    field=st.sampled_from(_FIELDS),
    index=st.integers(0, 7),
    value=st.one_of(_NASTY_FLOATS, _NASTY_INTS.map(float)),
    gz=st.booleans(),
)
def test_mutated_nifti_field(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    kind: str,
    field: str,
    index: int,
    value: float,
    gz: bool,
) -> None:
    import gzip

    data = _mutate_field(kind, field, index, value)
    path = tmp_path / ("m.nii.gz" if gz else "m.nii")
    path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
    _only_medimg_errors(path, capsys)


@pytest.mark.parametrize("kind", ["nifti1", "nifti2"])
@SETTINGS
@given(
    edits=st.lists(st.tuples(st.integers(0, 543), st.integers(0, 255)), min_size=1, max_size=8),
    cut=st.none() | st.integers(0, 700),
)
def test_mutated_nifti_bytes(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    kind: str,
    edits: list[tuple[int, int]],
    cut: int | None,
) -> None:
    raw = bytearray(_BASES[kind])
    for pos, byte in edits:
        if pos < len(raw):
            raw[pos] = byte
    path = tmp_path / "b.nii"
    path.write_bytes(bytes(raw[:cut] if cut is not None else raw))
    _only_medimg_errors(path, capsys)


_NRRD_FIELDS = {
    "type": st.sampled_from(["short", "float", "uchar", "complex", "block", "int64", "nonsense"]),
    "dimension": st.sampled_from(["3", "0", "-1", "4", "2", "nan", "99999999999"]),
    "sizes": st.sampled_from(["4 3 2", "0 3 2", "-4 3 2", "4 3", "nan 3 2", "99999 99999 99999"]),
    "space directions": st.sampled_from(
        [
            "(1,0,0) (0,1.5,0) (0,0,2.5)",
            "(nan,0,0) (0,1,0) (0,0,1)",
            "(0,0,0) (0,1,0) (0,0,1)",
            "(1,0,0) (2,0,0) (0,0,1)",
            "(inf,0,0) (0,1,0) (0,0,1)",
            "(1e308,0,0) (0,1e308,0) (0,0,1e308)",
            "none (0,1,0) (0,0,1)",
        ]
    ),
    "space origin": st.sampled_from(["(0,0,0)", "(nan,0,0)", "(inf,1,2)", "(1,2)", "()"]),
    "encoding": st.sampled_from(["raw", "gzip", "bzip2", "ascii", "hex", "zip"]),
    "endian": st.sampled_from(["little", "big", "middle"]),
}


def _nrrd(fields: dict[str, str], encoding_of_body: str) -> bytes:
    import bz2
    import gzip

    header = "NRRD0004\n" + "".join(f"{k}: {v}\n" for k, v in fields.items()) + "\n"
    body = _DATA.astype("<i2").tobytes(order="F")
    if encoding_of_body == "gzip":
        body = gzip.compress(body, mtime=0)
    elif encoding_of_body == "bzip2":
        body = bz2.compress(body)
    return header.encode() + body


_NRRD_BASE = {
    "type": "short",
    "dimension": "3",
    "space": "left-posterior-superior",
    "sizes": "4 3 2",
    "space directions": "(0.9,0,0) (0,1.2,0.9) (0,-1.5,2.0)",
    "kinds": "domain domain domain",
    "endian": "little",
    "encoding": "gzip",
    "space origin": "(10,-5,30)",
}


@SETTINGS
@given(
    changes=st.fixed_dictionaries({}, optional=_NRRD_FIELDS),
    body=st.sampled_from(["raw", "gzip", "bzip2"]),
    flip=st.none() | st.integers(0, 10_000),
)
def test_mutated_nrrd_header(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    changes: dict[str, str],
    body: str,
    flip: int | None,
) -> None:
    raw = bytearray(_nrrd({**_NRRD_BASE, **changes}, body))
    if flip is not None:
        raw[flip % len(raw)] ^= 1 << (flip % 8)
    path = tmp_path / "m.nrrd"
    path.write_bytes(bytes(raw))
    _only_medimg_errors(path, capsys)


_MHA_FIELDS = {
    "NDims": st.sampled_from(["3", "0", "2", "4", "nan", "-3"]),
    "DimSize": st.sampled_from(["4 3 2", "0 3 2", "-4 3 2", "4 3", "nan 3 2", "4294967295 3 2"]),
    "ElementSpacing": st.sampled_from(["1 1.5 2.5", "nan 1 1", "0 1 1", "-1 1 1", "inf 1 1"]),
    "Offset": st.sampled_from(["0 0 0", "inf 0 0", "nan 1 2", "1 2", "x y z"]),
    "TransformMatrix": st.sampled_from(
        ["1 0 0 0 1 0 0 0 1", "1 0 0 1 0 0 0 0 1", "nan 0 0 0 1 0 0 0 1", "0 0 0 0 0 0 0 0 0"]
    ),
    "ElementType": st.sampled_from(["MET_SHORT", "MET_FLOAT", "MET_NONE", "MET_STRING", "x"]),
    "CompressedData": st.sampled_from(["True", "False"]),
    "ElementNumberOfChannels": st.sampled_from(["1", "3", "0", "-1"]),
}


@SETTINGS
@given(
    changes=st.fixed_dictionaries({}, optional=_MHA_FIELDS),
    compressed=st.booleans(),
    flip=st.none() | st.integers(0, 10_000),
)
def test_mutated_metaimage_header(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    changes: dict[str, str],
    compressed: bool,
    flip: int | None,
) -> None:
    import zlib

    body = _DATA.astype("<i2").tobytes(order="F")
    fields = {
        "ObjectType": "Image",
        "NDims": "3",
        "BinaryData": "True",
        "BinaryDataByteOrderMSB": "False",
        "CompressedData": "True" if compressed else "False",
        "TransformMatrix": "0.6 0.8 0 -0.8 0.6 0 0 0 1",
        "Offset": "10 -5 30",
        "ElementSpacing": "1 1.5 2.5",
        "DimSize": "4 3 2",
        "ElementType": "MET_SHORT",
        **changes,
    }
    if compressed:
        body = zlib.compress(body)
        fields["CompressedDataSize"] = str(len(body))
    text = "".join(f"{k} = {v}\n" for k, v in fields.items()) + "ElementDataFile = LOCAL\n"
    raw = bytearray(text.encode() + body)
    if flip is not None:
        raw[flip % len(raw)] ^= 1 << (flip % 8)
    path = tmp_path / "m.mha"
    path.write_bytes(bytes(raw))
    _only_medimg_errors(path, capsys)


def test_base_files_are_valid(tmp_path: Path) -> None:
    # The unmutated bases must load, or the properties above prove nothing.
    for kind, data in _BASES.items():
        path = tmp_path / f"{kind}.nii"
        path.write_bytes(data)
        np.testing.assert_array_equal(load_volume(path).array[0], _DATA)
    path = tmp_path / "base.nrrd"
    path.write_bytes(_nrrd(_NRRD_BASE, "gzip"))
    np.testing.assert_array_equal(load_volume(path).array[0], _DATA)
    assert struct.calcsize("<h") == 2
