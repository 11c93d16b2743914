"""TID 1500 SR: segment volumes referring to the SEG, detection boxes as ellipsoids; highdicom
reads both back."""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
import pytest

from medimg.io import read_image_header, save_volume
from medimg.io.dicom.seg import AlgorithmInfo, SegOptions, write_seg
from medimg.io.dicom.sr import ReportedBox, write_boxes_sr
from medimg.synthetic import grid_affine
from medimg.synthetic.dicom import DicomSeriesSpec, write_dicom_series

SHAPE = (6, 5, 4)
ALGORITHM = AlgorithmInfo(name="medimg-dynunet", version="0.1.0", sha256="cd" * 32)


@pytest.fixture
def series(tmp_path: Path) -> Path:
    affine = grid_affine(SHAPE, (0.8, 0.9, 2.5), axcodes="LPS", rotation_deg=(0.0, 0.0, 30.0))
    write_dicom_series(np.zeros(SHAPE), affine, tmp_path / "ct", DicomSeriesSpec(seed=4))
    return tmp_path / "ct"


def _groups(path: Path) -> list[object]:
    sr = hd.sr.srread(path)
    assert sr.Modality == "SR"
    return list(hd.sr.MeasurementReport.from_sequence([sr]).get_volumetric_roi_measurement_groups())


def test_volumes_refer_to_the_seg(series: Path, tmp_path: Path) -> None:
    labels = np.zeros(SHAPE, dtype=np.uint8)
    labels[0:3, 0:3, 0:3] = 1  # 27 voxels of 0.8 x 0.9 x 2.5 = 1.8 mm3: 48.6 mm3 = 0.0486 mL
    path = save_volume(labels[None], tmp_path / "l.nii.gz", like=read_image_header(series))
    seg = write_seg(path, series, tmp_path / "s.dcm", names={1: "liver", 2: "spleen"},
                    options=SegOptions(algorithm=ALGORITHM), volumes_sr=tmp_path / "v.dcm")  # fmt: skip
    groups = _groups(tmp_path / "v.dcm")
    found = []
    for group in groups:
        ref = group.referenced_segment  # type: ignore[attr-defined]
        (measurement,) = group.get_measurements()  # type: ignore[attr-defined]
        assert measurement.name.meaning == "Volume"
        assert measurement.unit.value == "ml"
        found.append((str(ref[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID),
                      int(ref[0].ReferencedSOPSequence[0].ReferencedSegmentNumber),
                      round(float(measurement.value), 6)))  # fmt: skip
    assert found == [(seg.sop_instance_uid, 1, 0.0486), (seg.sop_instance_uid, 2, 0.0)]


def test_boxes_are_ellipsoids_with_their_sizes(series: Path, tmp_path: Path) -> None:
    box = ReportedBox(center_mm=(10.0, -20.0, 5.0), size_mm=(8.0, 6.0, 4.0), class_name="nodule",
                      score=0.75)  # fmt: skip
    write_boxes_sr([box], series, tmp_path / "b.dcm", algorithm=ALGORITHM)
    (group,) = _groups(tmp_path / "b.dcm")
    assert group.finding_type.value == "27925004"  # type: ignore[attr-defined]
    values = {m.name.meaning: float(m.value) for m in group.get_measurements()}  # type: ignore[attr-defined]
    assert values == {"Length": 8.0, "Width": 6.0, "Depth": 4.0, "Probability": 0.75}
    surface = group.roi  # type: ignore[attr-defined]
    assert surface.graphic_type.value == "ELLIPSOID"
    points = np.asarray(surface.graphic_data, dtype=np.float64).reshape(-1, 3)
    # LPS: x and y negated; the three axes' end points around the centre (-10, 20, 5)
    np.testing.assert_allclose(points.mean(axis=0), (-10.0, 20.0, 5.0))
    np.testing.assert_allclose(points.max(axis=0) - points.min(axis=0), (8.0, 6.0, 4.0))
