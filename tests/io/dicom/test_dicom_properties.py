"""Property tests: mutated DICOM tags only ever end in medimg errors, or in a sound geometry.

A small synthetic series (3 slices) is written once per example; hypothesis then sets up to
three tags of one or every slice to raw values drawn from valid, borderline and nonsense ones
(or removes them), and the folder goes through the entry points of ``medimg dicom ls``,
``medimg convert`` and a manifest's series folder.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medimg.errors import MedimgError
from medimg.io.dicom import load_dicom_series, read_dicom_header, read_series, scan_dicom_folder
from medimg.synthetic import grid_affine
from medimg.synthetic.dicom import DicomSeriesSpec, set_raw_tag, write_dicom_series

SHAPE = (4, 3, 3)

_NUMBERS = st.sampled_from(["0", "-1", "1", "2.5", "nan", "inf", "-inf", "1e400", "abc", ""])
_DS_VECTOR = st.lists(_NUMBERS, min_size=0, max_size=7).map(lambda v: "\\".join(v).encode())
_ORIENTATIONS = st.sampled_from(
    [b"1\\0\\0\\0\\1\\0", b"0\\0\\0\\0\\1\\0", b"1\\0\\0\\1\\0\\0", b"1\\0\\0\\0.6\\0.8\\0"]
)
_US = st.integers(min_value=0, max_value=65535).map(lambda v: v.to_bytes(2, "little"))
_SYNTAXES = st.sampled_from(
    [
        b"1.2.840.10008.1.2",
        b"1.2.840.10008.1.2.1",
        b"1.2.840.10008.1.2.2",
        b"1.2.840.10008.1.2.5",
        b"1.2.840.10008.1.2.4.100",
        b"1.2.3.4",
        b"",
    ]
)
_EDITS = st.one_of(
    st.tuples(
        st.sampled_from(["ImagePositionPatient", "PixelSpacing", "SliceThickness"]),
        st.one_of(st.none(), _DS_VECTOR),
    ),
    st.tuples(st.just("ImageOrientationPatient"), st.one_of(st.none(), _ORIENTATIONS, _DS_VECTOR)),
    st.tuples(
        st.sampled_from(
            ["Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation"]
        ),
        st.one_of(st.none(), _US),
    ),
    st.tuples(st.just("TransferSyntaxUID"), _SYNTAXES),
    st.tuples(
        st.sampled_from(["NumberOfFrames", "RescaleSlope", "RescaleIntercept", "InstanceNumber"]),
        st.one_of(st.none(), _NUMBERS.map(str.encode)),
    ),
    st.tuples(
        st.sampled_from(["SOPInstanceUID", "SeriesInstanceUID", "Modality"]),
        st.sampled_from([None, b"", b"CT", b"DX", b"US", b"1.2.3"]),
    ),
)


def _write(folder: Path) -> list[Path]:
    affine = grid_affine(SHAPE, (0.7, 0.9, 2.0), axcodes="LPS", rotation_deg=(15.0, 0.0, -5.0))
    values = np.arange(np.prod(SHAPE)).reshape(SHAPE)
    return write_dicom_series(values, affine, folder, DicomSeriesSpec(rescale_intercept=-1024))


def _check(volume: object) -> None:
    affine = np.asarray(volume.affine, dtype=np.float64)  # type: ignore[attr-defined]
    assert np.isfinite(affine).all(), affine
    assert (np.linalg.norm(affine[:3, :3], axis=0) > 0).all(), affine
    assert np.isfinite(np.asarray(volume.array, dtype=np.float64)).all()  # type: ignore[attr-defined]


def _read_everything(folder: Path) -> None:
    for read in (
        lambda: scan_dicom_folder(folder),
        lambda: read_dicom_header(folder),
        lambda: _check(load_dicom_series(folder)),
    ):
        try:
            read()
        except MedimgError:
            pass
    try:
        scan = scan_dicom_folder(folder, pixels=True)
    except MedimgError:
        return
    for series in scan.series:
        try:
            _check(read_series(series))
        except MedimgError:
            pass


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    edits=st.lists(_EDITS, min_size=1, max_size=3, unique_by=lambda e: e[0]), every=st.booleans()
)
def test_mutated_tags_end_in_medimg_errors_or_sound_geometry(edits, every):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = _write(folder)
        # the meta header last: pydicom re-reads each file to edit it, in its transfer syntax
        edits = sorted(edits, key=lambda e: e[0] == "TransferSyntaxUID")
        for keyword, value in edits:
            for path in paths if every else paths[1:2]:
                set_raw_tag(path, keyword, value)
        _read_everything(folder)


@settings(max_examples=60, deadline=None)
@given(cut=st.integers(min_value=0, max_value=1100), which=st.integers(min_value=0, max_value=2))
def test_a_file_cut_anywhere_is_refused_never_read_short(cut, which):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = _write(folder)
        data = paths[which].read_bytes()
        if cut >= len(data):
            return
        paths[which].write_bytes(data[:cut])
        _read_everything(folder)
        try:
            volume = load_dicom_series(folder)
        except MedimgError:
            return
        raise AssertionError(f"a file cut at byte {cut} of {len(data)} was read: {volume}")
