"""Bad inputs of ``medimg dicom seg`` and SEG reading, pinned to exit code and message.

Each refusal names the label file, the reference folder or the SEG, what is wrong and how
to fix it; every one is a user error (exit 2).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
from catalogue_helpers import BadInput, check_bad_input

from medimg.io import read_image_header, save_volume
from medimg.synthetic import grid_affine
from medimg.synthetic.dicom import DicomSeriesSpec, write_dicom_series

SHAPE = (5, 4, 3)


def _series(folder: Path, series_number: int = 1) -> Path:
    affine = grid_affine(SHAPE, (0.8, 0.9, 2.5), axcodes="LPS", rotation_deg=(0.0, 8.0, 0.0))
    spec = DicomSeriesSpec(series_number=series_number, seed=series_number)
    write_dicom_series(np.zeros(SHAPE), affine, folder, spec)
    return folder


def _labels(tmp: Path, *, offset_mm: float = 0.0) -> Path:
    labels = np.zeros(SHAPE, dtype=np.uint8)
    labels[1:3, 1:3, 0:2] = 1
    labels[3, 3, 2] = 2
    affine = read_image_header(_series(tmp / "ct")).affine.copy()
    affine[:3, 3] += offset_mm
    return save_volume(labels[None], tmp / "labels.nii.gz", like=affine)


def _seg(extra: Sequence[str] = (), **kw: float) -> Callable[[Path], Sequence[str]]:
    def make(tmp: Path) -> Sequence[str]:
        labels = _labels(tmp, **kw)
        return ["dicom", "seg", labels, "--reference", tmp / "ct", "--out", tmp / "s.dcm", *extra]

    return make


def _two_series(tmp: Path) -> Sequence[str]:
    labels = _labels(tmp)
    _series(tmp / "ct" / "other", series_number=2)
    return ["dicom", "seg", labels, "--reference", tmp / "ct", "--out", tmp / "s.dcm",
            "--label", "1=liver", "--label", "2=spleen"]  # fmt: skip


def _bad_mapping(tmp: Path) -> Sequence[str]:
    (tmp / "map.json").write_text('{"1": {"name": "liver"}, "2": {"type": {}}}')
    return _seg(["--mapping", str(tmp / "map.json")])(tmp)


def _exists(tmp: Path) -> Sequence[str]:
    (tmp / "s.dcm").write_bytes(b"old")
    return _seg(["--label", "1=liver", "--label", "2=spleen"])(tmp)


def _overlapping(tmp: Path) -> Sequence[str]:
    import highdicom as hd
    from pydicom.sr.codedict import codes

    from medimg.io.dicom._seg_reference import reference_series

    ref = reference_series(_series(tmp / "ct"))
    stacked = np.zeros((SHAPE[2], SHAPE[1], SHAPE[0], 2), dtype=np.uint8)
    stacked[0, 0:2, 0:2, :] = 1  # both segments on the same 4 pixels
    described = [hd.seg.SegmentDescription(n, name, codes.SCT.AnatomicalStructure, code, "MANUAL")
                 for n, name, code in ((1, "a", codes.SCT.Liver), (2, "b", codes.SCT.Spleen))]  # fmt: skip
    hd.seg.Segmentation(ref.datasets, stacked, "BINARY", described, hd.UID(), 1, hd.UID(), 1,
                        "t", "t", "1", "1", omit_empty_frames=False).save_as(tmp / "o.dcm")  # fmt: skip
    return ["dicom", "seg", tmp / "o.dcm", "--reference", tmp / "ct", "--out", tmp / "s.dcm"]


def _predict(task: str, *extra: str) -> Callable[[Path], Sequence[str]]:
    """``medimg predict`` on a (never read further) manifest of ``task`` with ``extra``."""

    def make(tmp: Path) -> Sequence[str]:
        import json

        case = {"id": "a", "image": "a.nii.gz"}
        raw: dict[str, object] = {"schema_version": 1, "name": "s", "training": [case],
                                  "labels": [{"value": 0, "name": "background"}]}  # fmt: skip
        if task == "detection":
            raw = {"schema_version": 2, "task": "detection", "name": "d", "classes": ["nodule"],
                   "training": [{**case, "boxes": []}]}  # fmt: skip
        (tmp / "m.json").write_text(json.dumps(raw))
        return ["predict", "--manifest", tmp / "m.json", "--out", tmp / "o", *extra]

    return make


CATALOGUE = [
    BadInput("seg-labels-off-the-reference-grid",
             _seg(["--label", "1=liver", "--label", "2=spleen"], offset_mm=2.0), 2,
             r"error: {tmp}/labels\.nii\.gz: the label map must lie on the grid of the reference "
             r"series {tmp}/ct .*corner voxel centres up to 3\.464 mm apart; resample"),
    BadInput("seg-reference-not-one-series", _two_series, 2,
             r"error: {tmp}/ct: the reference must be one DICOM series, found 2 volumes"),
    BadInput("seg-label-outside-the-mapping", _seg(["--label", "1=liver", "--label", "2=blob"]),
             2, r"error: {tmp}/labels\.nii\.gz: label 2 'blob' is outside the mapping: .*"
             r"mapping file \(--mapping FILE\.json"),
    BadInput("seg-label-without-a-name", _seg(["--label", "1=liver"]), 2,
             r"error: {tmp}/labels\.nii\.gz: label 2 has no name; name it \(medimg dicom seg "
             r"--label 2=NAME"),
    BadInput("seg-mapping-malformed", _bad_mapping, 2,
             r"error: {tmp}/map\.json: \['2'\]: category and type must be given together"),
    BadInput("seg-output-exists", _exists, 2, r"error: {tmp}/s\.dcm: exists; pass .*--force"),
    BadInput("seg-overlapping-segments-as-label-map", _overlapping, 2,
             r"error: {tmp}/o\.dcm: its segments overlap \(1 'a' and 2 'b' share 4 voxels"),
    BadInput("predict-seg-type-without-seg", _predict("segmentation", "--seg-type", "labelmap"),
             2, r"error: seg_type 'labelmap' \(--seg-type\) applies to output_format 'seg' only, "
             r"got output_format 'nifti'; add --output-format seg"),
    BadInput("predict-detection-output-format-seg", _predict("detection", "--output-format", "seg"),
             2, r"error: output_format must be json or sr \(boxes also as DICOM SR for a DICOM "
             r"case\) for detection, got 'seg'"),
    BadInput("predict-detection-seg-type", _predict("detection", "--seg-type", "binary"), 2,
             r"error: options of medimg predict must apply to the detection task of {tmp}/m\.json"
             r", got --seg-type \(an option of segmentation\); drop it"),
]  # fmt: skip


@pytest.mark.parametrize("entry", CATALOGUE, ids=lambda e: e.kind)
def test_dicom_seg_bad_input(
    entry: BadInput, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    check_bad_input(entry, tmp_path, capsys)
