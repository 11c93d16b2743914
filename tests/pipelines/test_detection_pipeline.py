"""End to end on 5 synthetic chest CTs: train 1 epoch, predict (and resume), evaluate; by the CLI.

The detector is untrained here, so only the files, their structure and frames are checked;
the coordinate round trip and CPM are checked in tests/tasks/test_detection_task.py and by
the demo.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from medimg.errors import CaseError, ConfigError
from medimg.io import read_image_header
from medimg.manifests.boxes import world_to_voxel
from medimg.networks import DetectorConfig
from medimg.synthetic.detection import ChestSettings
from medimg.synthetic.detection_datasets import write_ct_detection_dataset
from medimg.training import TrainConfig
from medimg.transforms import PreprocessConfig
from pipelines.detection import DetectionConfig, evaluate, predict, train


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> DetectionConfig:
    root = tmp_path_factory.mktemp("det")
    manifest = write_ct_detection_dataset(
        root / "data", 5, seed=1, settings=ChestSettings(diameter_range_mm=(8.0, 16.0))
    )
    cfg = DetectionConfig(
        manifest=manifest,
        out_dir=root / "run",
        preprocess=PreprocessConfig(target_spacing_mm=(4.0, 4.0, 4.0), hu_window="lung"),
        detector=DetectorConfig(base_features=4, fpn_channels=8, roi_size_vox=(32, 32, 32)),
        patch_size_vox=(32, 32, 32),
        train=TrainConfig(max_epochs=1, device="cpu"),
    )
    train(cfg)
    return cfg


def test_train_predict_evaluate_write_their_files(run: DetectionConfig) -> None:
    result = predict(run, min_score=0.0)
    assert [c.status for c in result.cases] == ["written"]
    (case,) = result.cases
    doc = json.loads(Path(case.path).read_text())
    assert doc["frame"].startswith("world RAS+ mm")
    test = json.loads(run.manifest.read_text())["test"][0]
    header = read_image_header(run.manifest.parent / test["image"])
    assert doc["stored_grid"]["shape"] == list(header.shape[:3])
    for box in doc["boxes"][:5]:  # stored voxels and world mm describe the same point
        vox = world_to_voxel(np.array([box["center_mm"]]), header.affine)[0]
        np.testing.assert_allclose(vox, box["center_vox"], atol=1e-2)
    again = predict(run)
    assert [c.status for c in again.cases] == ["skipped"]
    report = evaluate(run)
    for name in ("summary.json", "cases.csv", "froc.png", "report.md", "run.json"):
        assert (report.out_dir / name).is_file(), name
    summary = json.loads((report.out_dir / "summary.json").read_text())
    assert set(summary["froc"]) == {"0.125", "0.25", "0.5", "1.0", "2.0", "4.0", "8.0"}
    assert "not measured here" in (report.out_dir / "report.md").read_text()
    assert (run.model_dir / "model.json").is_file()


def test_evaluate_without_predictions_names_the_file(run: DetectionConfig, tmp_path: Path) -> None:
    from medimg.tasks import EvaluateConfig

    cfg = EvaluateConfig(manifest=run.manifest, predictions_dir=tmp_path, out_dir=tmp_path / "e")
    with pytest.raises(CaseError, match=r"\.json must exist, got no file; run medimg predict"):
        evaluate(cfg)


def test_a_segmentation_manifest_is_refused(tmp_path: Path) -> None:
    from medimg.synthetic.datasets import write_ct_segmentation_dataset

    manifest = write_ct_segmentation_dataset(tmp_path / "seg", 2, seed=0)
    cfg = DetectionConfig(manifest=manifest, out_dir=tmp_path / "run")
    with pytest.raises(ConfigError, match="must be a detection manifest"):
        train(cfg)


def test_the_cli_trains_predicts_and_evaluates_a_detection_manifest(
    run: DetectionConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from medimg.cli import main

    m = str(run.manifest)  # the fixture's set: its fingerprint is saved already
    train_args = ["--out", str(tmp_path / "R"), "--epochs", "1", "--roi", "32", "32", "32"]
    assert main(["train", "--manifest", m, *train_args, "--device", "cpu"]) == 0
    assert "best validation CPM" in capsys.readouterr().out
    model, pred = tmp_path / "R" / "model", tmp_path / "P"
    args = ["--manifest", m, "--out", str(pred), "--device", "cpu"]
    assert main(["predict", "--model", str(model), *args]) == 0
    (test,) = json.loads(run.manifest.read_text())["test"]
    assert json.loads((pred / f"{test['id']}.json").read_text())["boxes"] is not None
    assert "1 written" in capsys.readouterr().out
    out = tmp_path / "E"
    assert main(["evaluate", "--manifest", m, "--predictions", str(pred), "--out", str(out)]) == 0
    assert re.search(r"^CPM (n/a|[01]\.\d{4}), mAP@0\.1 ", capsys.readouterr().out, re.MULTILINE)
    assert "cpm" in json.loads((out / "evaluation" / "summary.json").read_text())
    assert main(["predict", "--model", str(model), *args, "--threshold", "0.5"]) == 2
    assert "--threshold (an option of classification)" in capsys.readouterr().err


def test_demo_detection_short_run_prints_the_cpm(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from medimg.cli import main

    args = ["demo", "detection", "--out", str(tmp_path), "--cases", "5", "--epochs", "1"]
    assert main([*args, "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^CPM [01]\.\d\d on 1 held-out scans", out, re.MULTILINE), out
    report = (tmp_path / "report.md").read_text()
    assert "nodule diameters narrowed to 8-20 mm" in report
    assert (tmp_path / "run" / "evaluation" / "froc.png").is_file()
    assert main([*args, "--device", "cpu"]) == 2  # an earlier demo is there
