"""``medimg predict`` DICOM outputs: detection boxes as SR, LABELMAP SEGs, the algorithm's identity.

The detection case is a 40 x 36 x 20 CT on an oblique (4 deg about x, 8 about z), anisotropic
(1.5, 1.7, 3.0 mm), LPS-stored grid written as a DICOM series with shuffled files; its model is
a seeded, untrained RetinaNet (its class bias zeroed, so every anchor scores about 0.5) written
as the training engine writes a model folder: it reports 12 boxes all over the image, each of
which the SR must carry exactly as the JSON does (centre and size in world mm, to 1e-3 mm).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import pydicom
import pytest

from medimg.cli import main
from medimg.synthetic.dicom import DicomSeriesSpec, write_dicom_series
from medimg.synthetic.phantoms import grid_affine

SHAPE = (40, 36, 20)
AFFINE = grid_affine(SHAPE, (1.5, 1.7, 3.0), axcodes="LPS", rotation_deg=(4.0, 0.0, 8.0))
CENTRE_MM = (7.3, -5.1, 4.4)


def _detector_run(root: Path) -> Path:
    """A model folder of a seeded, untrained tiny detector (as training writes one)."""
    import torch

    from medimg.networks import DetectorConfig
    from medimg.tasks._detection_train import DetectorModule
    from medimg.training import save_checkpoint, save_model_bundle
    from medimg.transforms import PreprocessConfig

    torch.manual_seed(0)
    det = DetectorConfig(base_features=4, fpn_channels=8, roi_size_vox=(32, 32, 32),
                         detections_per_image=12)  # fmt: skip
    state = DetectorModule(det).state_dict()
    state["detector.network.classification_head.cls_logits.bias"].zero_()  # scores near 0.5
    model_dir = root / "model"
    model_dir.mkdir(parents=True)
    save_checkpoint({"model": state, "epoch": 1}, model_dir / "best.pt")
    save_model_bundle(model_dir, network=det, modality="CT", outputs={0: "nodule"},
                      preprocess=PreprocessConfig(target_spacing_mm=(4.0, 4.0, 4.0),
                                                  hu_window="lung"),
                      fingerprint=None, checkpoint="best.pt")  # fmt: skip
    return model_dir


def _detection_manifest(root: Path) -> Path:
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in SHAPE], indexing="ij"), -1)
    world = idx @ AFFINE[:3, :3].T + AFFINE[:3, 3]
    inside = np.linalg.norm(world - np.array(CENTRE_MM), axis=-1) < 4.5
    for name, seed in (("ct", 5), ("ct_train", 6)):
        write_dicom_series(np.where(inside, 40.0, -900.0), AFFINE, root / name,
                           DicomSeriesSpec(seed=seed), shuffle_seed=3)  # fmt: skip
    box = {"center_mm": list(CENTRE_MM), "size_mm": [9.0, 9.0, 9.0], "class": "nodule"}
    raw = {"schema_version": 2, "task": "detection", "name": "d", "classes": ["nodule"],
           "channels": [{"name": "CT", "modality": "CT"}],
           "training": [{"id": "t0", "image": "ct_train", "boxes": [box]}],
           "test": [{"id": "c0", "image": "ct", "boxes": [box]}]}  # fmt: skip
    path = root / "det.json"
    path.write_text(json.dumps(raw))
    return path


def _box_groups(path: Path) -> list[Any]:
    sr = hd.sr.srread(path)
    report = hd.sr.MeasurementReport.from_sequence([sr])
    return list(report.get_volumetric_roi_measurement_groups())


@pytest.fixture(scope="module")
def detection(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("det")
    return _detection_manifest(root), _detector_run(root / "run")


def _predict(model: Path, manifest: Path, out: Path, *extra: str) -> int:
    argv = ["predict", "--model", str(model), "--manifest", str(manifest), "--out", str(out),
            "--device", "cpu", *extra]  # fmt: skip
    return main(argv)


@pytest.mark.slow
def test_detection_on_a_dicom_case_writes_an_sr_of_its_boxes(
    detection: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest, model = detection
    out = tmp_path / "p"
    assert _predict(model, manifest, out, "--output-format", "sr") == 0, capsys.readouterr().err
    doc = json.loads((out / "c0.json").read_text())
    assert doc["boxes"], "an untrained detector at min_score 0 reports boxes"
    sr_path = out / "c0.sr.dcm"
    assert doc["sr"]["file"] == "c0.sr.dcm"
    ds = pydicom.dcmread(sr_path)
    source = pydicom.dcmread(next((manifest.parent / "ct").iterdir()))
    assert ds.Modality == "SR"
    assert (ds.PatientID, ds.StudyInstanceUID) == (source.PatientID, source.StudyInstanceUID)
    evidence = ds.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert evidence.SeriesInstanceUID == source.SeriesInstanceUID
    groups = _box_groups(sr_path)
    assert len(groups) == len(doc["boxes"])
    for group, box in zip(groups, doc["boxes"], strict=True):
        surface = group.roi
        assert surface.graphic_type.value == "ELLIPSOID"
        assert surface.frame_of_reference_uid == source.FrameOfReferenceUID
        lps = np.asarray(surface.graphic_data, dtype=np.float64).reshape(-1, 3)
        ras = lps * (-1.0, -1.0, 1.0)  # patient LPS -> world RAS+
        np.testing.assert_allclose(ras.mean(axis=0), box["center_mm"], atol=1e-3)
        np.testing.assert_allclose(ras.max(axis=0) - ras.min(axis=0), box["size_mm"], atol=1e-3)
        values = {m.name.meaning: float(m.value) for m in group.get_measurements()}
        np.testing.assert_allclose([values["Length"], values["Width"], values["Depth"]],
                                   box["size_mm"], atol=1e-3)  # fmt: skip
        assert values["Probability"] == pytest.approx(box["score"], abs=1e-6)
        assert group.finding_type.value == "27925004"  # nodule, SNOMED CT
    record = json.loads((model / "model.json").read_text())
    texts: list[str] = []  # the algorithm: the folder's network and weights-file SHA-256
    ds.walk(lambda _, el: texts.append(str(el.value)) if el.VR in ("LO", "UT", "ST") else None)
    assert "medimg-retinanet" in texts
    assert f"sha256={record['checkpoint_sha256']}" in texts

    # resume: the SR is part of the case's output
    assert _predict(model, manifest, out, "--output-format", "sr") == 0
    assert "0 written, 1 skipped, 0 failed" in capsys.readouterr().out
    sr_path.unlink()
    assert _predict(model, manifest, out, "--output-format", "sr") == 0
    assert "1 written, 0 skipped" in capsys.readouterr().out
    assert sr_path.is_file()
    sr_path.write_bytes(sr_path.read_bytes() + b"\0")  # damaged or replaced
    assert _predict(model, manifest, out, "--output-format", "sr") == 0
    assert "1 written, 0 skipped" in capsys.readouterr().out
    # the plain JSON run is a different output: predicted again, no SR key
    assert _predict(model, manifest, out) == 0
    assert "1 written, 0 skipped" in capsys.readouterr().out
    assert "sr" not in json.loads((out / "c0.json").read_text())


@pytest.mark.slow
def test_an_sr_of_a_file_case_is_refused_by_name(
    detection: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from medimg.io import read_image, save_volume

    manifest, model = detection
    root = manifest.parent
    save_volume(read_image(root / "ct").array, root / "c0.nii.gz", like=AFFINE)
    raw = json.loads(manifest.read_text())
    raw["test"][0]["image"] = "c0.nii.gz"
    (root / "file.json").write_text(json.dumps(raw))
    assert _predict(model, root / "file.json", tmp_path / "o", "--output-format", "sr") == 1
    text = capsys.readouterr().err + (tmp_path / "o" / "summary.json").read_text()
    assert "output_format 'sr' (--output-format sr) needs a DICOM series folder" in text
    assert "use --output-format json" in text
    assert not (tmp_path / "o" / "c0.json").exists()


def test_no_box_is_reported_as_no_finding(tmp_path: Path) -> None:
    from medimg.io.dicom.sr import write_boxes_sr

    write_dicom_series(np.zeros((6, 5, 4)), grid_affine((6, 5, 4), (1.0, 1.0, 2.0)),
                       tmp_path / "ct", DicomSeriesSpec(seed=1))  # fmt: skip
    path = write_boxes_sr([], tmp_path / "ct", tmp_path / "e.dcm")
    report = hd.sr.MeasurementReport.from_sequence([hd.sr.srread(path)])
    assert report.get_volumetric_roi_measurement_groups() == []
    (group,) = report.get_image_measurement_groups()
    (evaluation,) = group.get_qualitative_evaluations()
    assert group.finding_type.value == "404684003"  # Finding
    assert (evaluation.name.value, evaluation.value.value) == ("404684003", "272519000")  # Absent


def test_output_formats_are_checked_per_task() -> None:
    from medimg.errors import ConfigError
    from medimg.tasks import SegmentationPredictOptions
    from medimg.tasks.detection import DetectionPredictOptions

    assert DetectionPredictOptions(output_format="sr").output_format == "sr"
    with pytest.raises(ConfigError, match=r"^output_format must be json or sr .*got 'seg'"):
        DetectionPredictOptions(output_format="seg")
    with pytest.raises(ConfigError, match=r"^output_format must be nifti or seg .*got 'sr'"):
        SegmentationPredictOptions(output_format="sr")
    assert SegmentationPredictOptions(output_format="seg", seg_type="labelmap").seg_type == (
        "labelmap"
    )
    with pytest.raises(ConfigError, match=r"^seg_type must be binary or labelmap, got 'x'"):
        SegmentationPredictOptions(output_format="seg", seg_type="x")
    with pytest.raises(ConfigError, match=r"applies to output_format 'seg' only, got .*'nifti'"):
        SegmentationPredictOptions(seg_type="labelmap")


def _segmentation_run(root: Path) -> Path:
    """A run folder of a seeded, untrained 4-class DynUNet (as training writes one)."""
    import torch

    from medimg.networks import NetworkConfig, build_network
    from medimg.training import save_checkpoint, save_model_bundle
    from medimg.transforms import PreprocessConfig

    torch.manual_seed(1)
    net = NetworkConfig(name="dynunet", in_channels=1, out_channels=4, roi_size_vox=(16, 16, 8),
                        spacing_mm=(4.0, 4.0, 6.0), base_features=4)  # fmt: skip
    model_dir = root / "model"
    model_dir.mkdir(parents=True)
    save_checkpoint({"model": build_network(net).state_dict(), "epoch": 1}, model_dir / "best.pt")
    save_model_bundle(model_dir, network=net, modality="CT",
                      outputs={0: "background", 1: "liver", 2: "spleen", 3: "lesion"},
                      preprocess=PreprocessConfig(target_spacing_mm=(4.0, 4.0, 6.0),
                                                  hu_window="soft_tissue"),
                      fingerprint=None, checkpoint="best.pt")  # fmt: skip
    run = {"task": "segmentation", "config": {}, "seed": 1,
           "cases": {"train": ["a"], "validation": []}}  # fmt: skip
    (model_dir / "run.json").write_text(json.dumps(run))
    return root


def _segmentation_manifest(root: Path) -> Path:
    from medimg.synthetic import CT_LABELS, ct_phantom

    shape, spacing = (20, 16, 10), (5.0, 5.5, 7.0)
    cases = []
    for k in range(2):
        affine = grid_affine(shape, spacing, axcodes="LPS", rotation_deg=(8.0, -5.0, 15.0 * k))
        phantom = ct_phantom(shape, spacing, affine=affine, seed=k)
        write_dicom_series(np.round(phantom.image.array[0]), affine, root / f"ct{k}",
                           DicomSeriesSpec(seed=10 + k), shuffle_seed=k)  # fmt: skip
        cases.append({"id": f"c{k}", "image": f"ct{k}"})
    raw = {"schema_version": 1, "name": "s", "channels": [{"name": "CT", "modality": "CT"}],
           "labels": [{"value": v, "name": n} for v, n in CT_LABELS.items()],
           "training": cases[:1], "test": cases[1:]}  # fmt: skip
    path = root / "seg.json"
    path.write_text(json.dumps(raw))
    return path


@pytest.mark.slow
def test_predict_writes_a_labelmap_seg_naming_the_package(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from medimg.io import load_volume, read_image_header
    from medimg.packages import pack_model, read_package

    manifest = _segmentation_manifest(tmp_path / "data")
    run = _segmentation_run(tmp_path / "run")
    package = pack_model(run, tmp_path / "liver.medimg", version="2.1")
    assert _predict(run, manifest, tmp_path / "nifti") == 0, capsys.readouterr().err
    argv = ["--output-format", "seg", "--seg-type", "labelmap"]
    assert _predict(package, manifest, tmp_path / "seg", *argv) == 0, capsys.readouterr().err
    seg_path = tmp_path / "seg" / "c1.seg.dcm"
    ds = pydicom.dcmread(seg_path)
    assert (ds.Modality, ds.SegmentationType) == ("SEG", "LABELMAP")
    back = load_volume(seg_path)
    assert back.source.same_grid(read_image_header(manifest.parent / "ct1"))
    np.testing.assert_array_equal(back.array, load_volume(tmp_path / "nifti" / "c1.nii.gz").array)
    (liver,) = [item for item in ds.SegmentSequence if int(item.SegmentNumber) == 1]
    algorithm = liver.SegmentationAlgorithmIdentificationSequence[0]
    assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == ("liver.medimg", "2.1")
    assert f"sha256={read_package(package).sha256}" in str(algorithm.AlgorithmParameters)
    assert (tmp_path / "seg" / "c1.sr.dcm").is_file()
    # BINARY is another output: the LABELMAP SEG is not taken for it
    assert _predict(package, manifest, tmp_path / "seg", "--output-format", "seg") == 0
    assert "1 written, 0 skipped" in capsys.readouterr().out
    assert pydicom.dcmread(seg_path).SegmentationType == "BINARY"


def test_the_algorithm_of_a_folder_is_its_network_and_weights_file(tmp_path: Path) -> None:
    import medimg
    from medimg.tasks._segmentation_dicom import algorithm_of
    from medimg.training import load_model_bundle

    run = _segmentation_run(tmp_path / "run")
    record = json.loads((run / "model" / "model.json").read_text())
    found = algorithm_of(load_model_bundle(run / "model"))
    assert (found.name, found.version) == ("medimg-dynunet", medimg.__version__)
    assert found.sha256 == record["checkpoint_sha256"]
