"""DICOM SEG written on a synthetic series: frames on the source geometry, exact round trip.

The series is a 6 x 5 x 4 CT on an oblique, anisotropic (0.8, 0.9, 2.5 mm), LPS-stored grid,
its files and InstanceNumbers shuffled, so a writer that followed file order or a reader that
re-derived the grid differently would put a label on the wrong slice.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medimg.errors import ConfigError, GeometryError, ImageReadError
from medimg.io import load_volume, read_image, read_image_header, save_volume
from medimg.io.dicom._snomed import CATEGORIES, MODIFIERS, ORGANS
from medimg.io.dicom.seg import (
    AlgorithmInfo,
    SegOptions,
    read_seg,
    read_seg_segments,
    seg_info,
    write_seg,
)
from medimg.synthetic import grid_affine
from medimg.synthetic.dicom import DicomSeriesSpec, write_dicom_series

SHAPE = (6, 5, 4)
ALGORITHM = AlgorithmInfo(name="medimg-dynunet", version="0.1.0", sha256="ab" * 32)


@pytest.fixture
def series(tmp_path: Path) -> Path:
    affine = grid_affine(SHAPE, (0.8, 0.9, 2.5), axcodes="LPS", rotation_deg=(10.0, -6.0, 20.0))
    values = np.arange(np.prod(SHAPE), dtype=np.float64).reshape(SHAPE) - 60
    write_dicom_series(values, affine, tmp_path / "ct", DicomSeriesSpec(seed=3), shuffle_seed=2)
    return tmp_path / "ct"


def _labels() -> np.ndarray:
    labels = np.zeros(SHAPE, dtype=np.uint8)
    labels[1:3, 1:4, 0:2] = 1  # liver on slices 0 and 1
    labels[4:6, 0:2, 3] = 2  # spleen on slice 3 only; slice 2 holds nothing
    return labels


def _write_labels(series: Path, path: Path, labels: np.ndarray | None = None) -> Path:
    labels = _labels() if labels is None else labels
    return save_volume(labels[None], path, like=read_image_header(series))


def test_frames_lie_on_the_source_slices_and_round_trip(series: Path, tmp_path: Path) -> None:
    labels = _labels()
    out = write_seg(_write_labels(series, tmp_path / "l.nii.gz"), series, tmp_path / "s.dcm",
                    names={1: "liver", 2: "spleen"}, options=SegOptions(algorithm=ALGORITHM))  # fmt: skip
    ds = pydicom.dcmread(out.path)
    assert (ds.Modality, ds.SegmentationType, int(ds.NumberOfFrames)) == ("SEG", "BINARY", 8)
    sources = {pydicom.dcmread(p).SOPInstanceUID: pydicom.dcmread(p) for p in series.iterdir()}
    first = next(iter(sources.values()))
    assert ds.FrameOfReferenceUID == first.FrameOfReferenceUID
    assert (ds.PatientID, ds.StudyInstanceUID) == (first.PatientID, first.StudyInstanceUID)
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == first.SeriesInstanceUID
    assert len(ds.ReferencedSeriesSequence[0].ReferencedInstanceSequence) == SHAPE[2]
    volume = read_image(series)
    frames = ds.pixel_array
    for i, item in enumerate(ds.PerFrameFunctionalGroupsSequence):
        uid = item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        source = sources[uid]
        position = [float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient]
        np.testing.assert_allclose(position, [float(v) for v in source.ImagePositionPatient])
        # the source's slice index in medimg's stored order, from its position on the grid
        lps = np.array([float(v) for v in source.ImagePositionPatient])
        ras = lps * (-1, -1, 1)
        k = round(float((np.linalg.inv(volume.affine) @ [*ras, 1.0])[2]))
        segment = int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        np.testing.assert_array_equal(frames[i].T, labels[:, :, k] == segment)
    assert ds.SegmentSequence[0].SegmentedPropertyTypeCodeSequence[0].CodeValue == "10200004"
    assert "sha256=" + "ab" * 32 in str(
        ds.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0].AlgorithmParameters
    )
    back = load_volume(out.path)
    assert back.source.same_grid(volume.source)
    np.testing.assert_array_equal(back.array[0], labels)
    assert out.voxels == {1: 12, 2: 4}


def test_highdicom_reads_it_and_labelmap_round_trips(series: Path, tmp_path: Path) -> None:
    import highdicom as hd

    labels_path = _write_labels(series, tmp_path / "l.nii.gz")
    out = write_seg(labels_path, series, tmp_path / "lm.dcm", names={1: "liver", 2: "spleen"},
                    options=SegOptions(segmentation_type="labelmap"))  # fmt: skip
    seg = hd.seg.segread(out.path)
    assert seg.SegmentationType == "LABELMAP"
    assert seg.get_segment_numbers() == [1, 2]
    np.testing.assert_array_equal(read_seg(out.path).array[0], _labels())


def test_a_label_map_in_another_axis_order_is_accepted(series: Path, tmp_path: Path) -> None:
    ras = read_image(series).to_ras()
    labels = load_volume(_write_labels(series, tmp_path / "l.nii.gz")).to_ras()
    assert ras.axcodes == ("R", "A", "S")
    save_volume(labels.array, tmp_path / "ras.nii.gz", like=labels.affine)
    out = write_seg(
        tmp_path / "ras.nii.gz", series, tmp_path / "s.dcm", names={1: "liver", 2: "spleen"}
    )
    np.testing.assert_array_equal(read_seg(out.path).array[0], _labels())


def test_empty_segments_are_kept_and_every_frame_written(series: Path, tmp_path: Path) -> None:
    labels = _labels()
    labels[labels == 2] = 0
    path = _write_labels(series, tmp_path / "l.nii.gz", labels)
    names = {1: "liver", 2: "spleen", 3: "left kidney"}
    out = write_seg(path, series, tmp_path / "s.dcm", names=names)
    assert out.voxels == {1: 12, 2: 0, 3: 0}
    ds = pydicom.dcmread(out.path)
    assert int(ds.NumberOfFrames) == 3 * SHAPE[2]  # every slice of every segment
    kidney = ds.SegmentSequence[2].SegmentedPropertyTypeCodeSequence[0]
    assert kidney.CodeValue == "64033007"
    assert kidney.SegmentedPropertyTypeModifierCodeSequence[0].CodeMeaning == "Left"
    np.testing.assert_array_equal(read_seg(out.path).array[0], labels)
    assert [s.label for s in seg_info(out.path)] == ["liver", "spleen", "left kidney"]


def test_mapping_file_names_and_codes(series: Path, tmp_path: Path) -> None:
    mapping = tmp_path / "map.json"
    code = {"value": "85756007", "scheme": "SCT", "meaning": "Tissue"}
    mapping.write_text(json.dumps({"1": {"name": "liver"}, "2": {"name": "blob",
                                   "category": code, "type": code}}))  # fmt: skip
    out = write_seg(_write_labels(series, tmp_path / "l.nii.gz"), series, tmp_path / "s.dcm",
                    mapping=mapping)  # fmt: skip
    assert [(s.label, s.type) for s in seg_info(out.path)] == [
        ("liver", "Liver [SCT 10200004]"), ("blob", "Tissue [SCT 85756007]"),
    ]  # fmt: skip


def test_refusals_name_the_inputs(series: Path, tmp_path: Path) -> None:
    path = _write_labels(series, tmp_path / "l.nii.gz")
    with pytest.raises(ConfigError, match=r"l\.nii\.gz: label 2 'blob' is outside the mapping"):
        write_seg(path, series, tmp_path / "s.dcm", names={1: "liver", 2: "blob"})
    with pytest.raises(ConfigError, match=r"label 2 has no name"):
        write_seg(path, series, tmp_path / "s.dcm", names={1: "liver"})
    shifted = np.eye(4)
    shifted[:3, 3] = 1.0
    save_volume(
        _labels()[None], tmp_path / "off.nii.gz", like=read_image_header(series).affine @ shifted
    )
    with pytest.raises(GeometryError, match=r"off\.nii\.gz: the label map must lie on the grid"):
        write_seg(tmp_path / "off.nii.gz", series, tmp_path / "s.dcm", names={1: "a", 2: "b"})
    bad = tmp_path / "bad.json"
    bad.write_text('{"2": {"name": "x", "type": {}}}')
    with pytest.raises(ConfigError, match=r"bad\.json: \['2'\]: category and type"):
        write_seg(path, series, tmp_path / "s.dcm", mapping=bad)


def _overlapping_seg(series: Path, out: Path, *, omit_empty_frames: bool = False) -> None:
    import highdicom as hd
    from pydicom.sr.codedict import codes

    from medimg.io.dicom._seg_reference import reference_series

    ref = reference_series(series)
    stacked = np.zeros((SHAPE[2], SHAPE[1], SHAPE[0], 2), dtype=np.uint8)
    stacked[1, 1:3, 1:4, 0] = 1  # segment 1: 6 pixels on slice 1
    stacked[1, 2:4, 2:5, 1] = 1  # segment 2: 6 pixels, 2 of them shared: (x 2..3, y 2)
    descriptions = [hd.seg.SegmentDescription(number, name, codes.SCT.AnatomicalStructure,
                                              code, "MANUAL")
                    for number, name, code in ((1, "a", codes.SCT.Liver),
                                               (2, "b", codes.SCT.Spleen))]  # fmt: skip
    seg = hd.seg.Segmentation(ref.datasets, stacked, "BINARY", descriptions, hd.UID(), 1,
                              hd.UID(), 1, "t", "t", "1", "1",
                              omit_empty_frames=omit_empty_frames)  # fmt: skip
    seg.save_as(out)


def test_overlapping_segments_are_refused_and_read_as_masks(series: Path, tmp_path: Path) -> None:
    _overlapping_seg(series, tmp_path / "o.dcm")
    # shared voxels: x = 2, 3 at y = 2 on slice 1 -> 2 voxels, the first (2, 2, 1)
    with pytest.raises(ImageReadError, match=r"o\.dcm: its segments overlap \(1 'a' and 2 'b' "
                       r"share 2 voxels \(first at voxel \(2, 2, 1\)\)\)"):  # fmt: skip
        load_volume(tmp_path / "o.dcm")
    geometry, _segments, masks = read_seg_segments(tmp_path / "o.dcm")
    assert geometry.same_grid(read_image_header(series))
    assert (masks[1].sum(), masks[2].sum(), (masks[1] & masks[2]).sum()) == (6, 6, 2)


def test_not_a_seg_file(tmp_path: Path) -> None:
    from medimg.io.dicom._seg_read import read_seg_dataset

    path = tmp_path / "ct.dcm"
    write_dicom_series(np.zeros((3, 3, 1)), np.eye(4), tmp_path / "one")
    (tmp_path / "one" / "0001.dcm").rename(path)
    with pytest.raises(ImageReadError, match=r"ct\.dcm: must be a DICOM Segmentation"):
        read_seg_dataset(path, pixels=False)


def test_snomed_table_matches_pydicoms_codes() -> None:
    from pydicom.sr.codedict import codes

    for (value, meaning), keyword in [*CATEGORIES.values(), *MODIFIERS.values()]:
        code = getattr(codes.SCT, keyword)
        assert (code.value, code.meaning) == (value, meaning)
    for _category, ((value, meaning), keyword) in ORGANS.values():
        code = getattr(codes.SCT, keyword)
        assert (code.value, code.meaning) == (value, meaning), keyword


def test_a_seg_without_its_empty_frames_covers_its_frames(
    series: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # highdicom's default leaves empty frames out: only slice 1 remains, and the reader says so
    _overlapping_seg(series, tmp_path / "o.dcm", omit_empty_frames=True)
    geometry, _segments, _masks = read_seg_segments(tmp_path / "o.dcm")
    assert geometry.shape == (SHAPE[0], SHAPE[1], 1)
    assert "references 4 source images but its frames span 1 slices" in caplog.text


def test_cli_dicom_seg_and_info(
    series: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from medimg.cli import main

    labels = _write_labels(series, tmp_path / "l.nii.gz")
    argv = ["dicom", "seg", str(labels), "--reference", str(series), "--out",
            str(tmp_path / "s.dcm"), "--label", "1=liver", "--label", "2=spleen", "--sr",
            str(tmp_path / "v.dcm")]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"wrote {tmp_path / 's.dcm'}: 2 segment(s) (binary) on series 1" in out
    assert (tmp_path / "v.dcm").is_file()
    back = load_volume(tmp_path / "s.dcm")
    assert back.source.same_grid(read_image_header(series))
    np.testing.assert_array_equal(back.array[0], _labels())
    assert main(["info", str(tmp_path / "s.dcm")]) == 0
    text = capsys.readouterr().out
    assert "format    dicom-seg" in text
    assert "segment   1: 'liver' Liver [SCT 10200004] (Anatomical Structure [SCT 91723000]" in text
    assert "segment   2: 'spleen' Spleen [SCT 78961009]" in text
