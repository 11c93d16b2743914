from __future__ import annotations

import csv
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from medimg.errors import ConfigError, ManifestError, OutputExistsError
from medimg.io import load_volume, read_header
from medimg.synthetic.datasets import write_ct_segmentation_dataset
from medimg.training import TrainConfig, load_model_bundle
from pipelines.segmentation import SegmentationConfig, TrainResult, evaluate, predict, train


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 5 cases: 4 training (1 held out for validation), 1 test; oblique, LPS/RAS, anisotropic
    return write_ct_segmentation_dataset(tmp_path_factory.mktemp("data"), 5, seed=3)


def _cfg(manifest: Path, out: Path, **train: object) -> SegmentationConfig:
    return SegmentationConfig(
        manifest=manifest,
        out_dir=out,
        network="dynunet",
        base_features=4,
        roi_size_vox=(16, 16, 8),
        batch_size=2,
        samples_per_case=1,
        train=TrainConfig(max_epochs=2, learning_rate=1e-2, device="cpu", **train),  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def trained(
    dataset: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[SegmentationConfig, TrainResult]:
    cfg = _cfg(dataset, tmp_path_factory.mktemp("run"))
    return cfg, train(cfg)


def test_train_predict_evaluate_end_to_end(
    dataset: Path, trained: tuple[SegmentationConfig, TrainResult]
) -> None:
    cfg, trained_result = trained
    assert trained_result.fit.epochs_run == 2
    assert (len(trained_result.train_cases), len(trained_result.validation_cases)) == (3, 1)
    assert trained_result.checkpoint.name == "best.pt"
    bundle = load_model_bundle(cfg.model_dir)
    assert bundle.outputs == {1: "liver", 2: "spleen", 3: "lesion"}
    assert bundle.network.spacing_mm is not None  # planned from the fingerprint's spacing
    run = json.loads((cfg.model_dir / "run.json").read_text())
    assert run["cases"]["validation"] == list(trained_result.validation_cases)
    assert len(run["manifest_sha256"]) == 64

    predicted = predict(cfg)
    (case,) = predicted.cases
    assert case.status == "written"
    image = load_volume(dataset.parent / "imagesTr" / f"{case.case_id}.nii.gz")
    prediction = load_volume(case.path)
    # on the image's stored grid: same shape, same (oblique, LPS or RAS) affine
    assert prediction.spatial_shape == image.spatial_shape
    np.testing.assert_allclose(prediction.affine, image.affine, atol=1e-4)
    assert set(np.unique(prediction.array)) <= {0, 1, 2, 3}
    assert predict(cfg).cases[0].status == "skipped"  # resumable batch: done cases stay

    scores = evaluate(cfg)
    with (scores.out_dir / "cases.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["name"] for r in rows] == ["liver", "spleen", "lesion"]
    assert 0.0 <= scores.summary["mean_dice"] <= 1.0
    assert len(scores.figures) == 1
    assert scores.figures[0].read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(OutputExistsError, match=r"cases.csv: exists; pass overwrite=True"):
        evaluate(cfg)


def test_resume_continues_a_run(dataset: Path, tmp_path: Path) -> None:
    train(_cfg(dataset, tmp_path, validate_every_epochs=5))
    with pytest.raises(OutputExistsError, match=r"last.pt: a run exists here; resume it"):
        train(_cfg(dataset, tmp_path))
    cfg = _cfg(dataset, tmp_path)
    longer = SegmentationConfig(
        **{**cfg.__dict__, "train": TrainConfig(max_epochs=3, device="cpu")}
    )
    assert train(longer, resume=True).fit.epochs_run == 3


def test_predict_failures(
    dataset: Path, trained: tuple[SegmentationConfig, TrainResult], tmp_path: Path
) -> None:
    cfg = _cfg(dataset, tmp_path)
    shutil.copytree(trained[0].model_dir, cfg.model_dir)
    test_image = dataset.parent / "imagesTr" / "case_004.nii.gz"
    original = test_image.read_bytes()
    try:
        test_image.write_bytes(b"not a nifti")
        # fail fast: every file checked before work starts
        with pytest.raises(ManifestError, match=r"test\[0\].image: cannot read imagesTr/case_004"):
            predict(cfg)
        # keep going: the case is recorded as failed, with its reason
        (case,) = predict(cfg, fail_fast=False).cases
        assert (case.status, case.case_id) == ("failed", "case_004")
        assert "case_004.nii.gz" in (case.error or "")
        run = json.loads((cfg.out_dir / "predictions" / "run.json").read_text())
        assert run["cases"][0]["status"] == "failed"
    finally:
        test_image.write_bytes(original)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"network": "densenet121"}, r"must be a segmentation network, got 'densenet121'"),
        ({"network": "unett"}, r"did you mean 'unet'"),
        ({"loss": "focal"}, r"loss must be one of dice_ce, dice, ce, got 'focal'"),
        ({"roi_size_vox": (16, 16)}, r"roi_size_vox must be 3 positive integers, got \(16, 16\)"),
        ({"batch_size": 0}, r"batch_size and samples_per_case must be >= 1, got 0 and 2"),
        (
            {"sw_overlap": 1.0},
            r"sw_overlap must be in \[0, 1\), got 1.0",
        ),
        (
            {"mirror_axes": (0, 3)},
            r"mirror_axes must be distinct spatial axes among 0, 1, 2, got \(0, 3\)",
        ),
    ],
)
def test_config_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SegmentationConfig(manifest=Path("m.json"), out_dir=Path("o"), **kwargs)  # type: ignore[arg-type]


def test_predict_without_a_model(dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"model folder must hold model.json, got none in"):
        predict(_cfg(dataset, tmp_path))


@pytest.mark.slow  # the README's main job, 2-4 min on 2 cores; deselect with -m "not slow"
def test_full_demo_reaches_dice_085(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from medimg.cli import main

    assert main(["demo", "--out", str(tmp_path), "--device", "cpu"]) == 0
    summary = json.loads((tmp_path / "run" / "evaluation" / "summary.json").read_text())
    assert summary["mean_dice"] >= 0.85


def _batch_manifest(dataset: Path, name: str) -> Path:
    """Test split of case_003, case_004 and case_bad (an image that is not a NIfTI)."""
    raw = json.loads(dataset.read_text())
    (dataset.parent / "imagesTr" / f"{name}_bad.nii.gz").write_bytes(b"not a nifti")
    bad = {"id": "case_bad", "image": f"imagesTr/{name}_bad.nii.gz"}
    raw |= {"training": raw["training"][:1], "test": [raw["training"][3], raw["test"][0], bad]}
    path = dataset.parent / f"{name}.json"
    path.write_text(json.dumps(raw))
    return path


def test_batch_predict_command(
    dataset: Path,
    trained: tuple[SegmentationConfig, TrainResult],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from medimg.cli import main

    manifest, out = _batch_manifest(dataset, "batch_cli"), tmp_path / "preds"
    args = ["--manifest", str(manifest), "--out", str(out), "--device", "cpu"]
    # --model alone fails fast: every file is checked first, nothing is predicted
    assert main(["predict", "--model", str(trained[0].out_dir), *args]) == 2
    assert "test[2].image: cannot read imagesTr/batch_cli_bad.nii.gz" in capsys.readouterr().err
    assert not out.exists()
    # --keep-going: a failing case does not stop the others; --model: a run folder
    args += ["--keep-going"]
    assert main(["predict", "--model", str(trained[0].out_dir), "--progress", *args]) == 1
    printed = capsys.readouterr()
    assert "2 written, 0 skipped, 1 failed" in printed.out
    assert "1 of 3 cases failed:\n  case_bad: " in printed.out
    assert "predict: 100%" in printed.err  # the progress bar over cases
    assert sorted(p.name for p in out.iterdir()) == [
        "case_003.nii.gz", "case_004.nii.gz", "run.json", "summary.json",
    ]  # fmt: skip
    for case in ("case_003", "case_004"):
        image = load_volume(dataset.parent / "imagesTr" / f"{case}.nii.gz")
        prediction = load_volume(out / f"{case}.nii.gz")
        assert prediction.spatial_shape == image.spatial_shape
        np.testing.assert_allclose(prediction.affine, image.affine, atol=1e-4)
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["written"], summary["skipped"], summary["failed"]) == (2, 0, 1)
    assert summary["peak_memory"] in {
        f"process peak RSS while the case ran: {m}" for m in ("VmHWM", "ru_maxrss")
    }
    rows = {c["case_id"]: c for c in summary["cases"]}
    assert [rows[c]["status"] for c in ("case_003", "case_004", "case_bad")] == [
        "written", "written", "failed",
    ]  # fmt: skip
    assert all(rows[c]["time_s"] > 0 and rows[c]["peak_memory_mb"] > 50 for c in rows)
    assert rows["case_003"]["error"] is None
    assert "batch_cli_bad.nii.gz" in rows["case_bad"]["error"]

    # resume: a valid output is skipped; an unreadable one and one on another grid are redone
    assert read_header(out / "case_003.nii.gz").shape != read_header(out / "case_004.nii.gz").shape
    shutil.copy(out / "case_003.nii.gz", out / "case_004.nii.gz")  # wrong grid for case_004
    assert main(["predict", "--model", str(trained[0].model_dir), *args]) == 1
    assert "1 written, 1 skipped, 1 failed" in capsys.readouterr().out
    (out / "case_003.nii.gz").write_bytes(b"truncated")
    assert main(["predict", "--model", str(trained[0].model_dir), *args]) == 1
    assert "1 written, 1 skipped, 1 failed" in capsys.readouterr().out
    rows = {c["case_id"]: c for c in json.loads((out / "summary.json").read_text())["cases"]}
    assert rows["case_003"]["status"] == "written"
    assert (rows["case_004"]["status"], rows["case_004"]["time_s"]) == ("skipped", None)
    assert (
        load_volume(out / "case_003.nii.gz").spatial_shape
        == read_header(dataset.parent / "imagesTr" / "case_003.nii.gz").shape
    )


def test_training_patches_are_augmented_and_recorded(dataset: Path) -> None:
    import torch

    from medimg.transforms import AugmentConfig
    from pipelines.segmentation import _patch_sampler

    label = torch.zeros((1, 24, 24, 12))
    label[:, 8:16, 8:16, 4:8] = 1
    sample = {"image": torch.rand((1, 24, 24, 12)), "label": label}
    always = AugmentConfig(p_affine=1.0, rotation_deg=30.0, p_noise=1.0)
    cfg = replace(_cfg(dataset, Path("unused")), augment=always)
    sampler = _patch_sampler(cfg, n_classes=2, modality="CT")
    sampler.set_random_state(seed=0)
    (patch,) = sampler(sample)
    assert patch["image"].shape == patch["label"].shape == (1, 16, 16, 8)
    applied = {e["name"] for e in patch["augment_history"] if e["applied"]}
    assert {"affine", "noise"} <= applied
    assert set(np.unique(np.asarray(patch["label"]))) <= {0.0, 1.0}  # nearest: still labels
    plain = _patch_sampler(replace(cfg, augment=None), n_classes=2, modality="CT")
    plain.set_random_state(seed=0)
    (unaugmented,) = plain(sample)
    assert "augment_history" not in unaugmented


def test_predict_with_test_time_mirroring(
    dataset: Path,
    trained: tuple[SegmentationConfig, TrainResult],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cfg = replace(trained[0], mirror_axes=(0, 2), predictions_folder=tmp_path / "tta")
    (case,) = predict(cfg, progress=True).cases
    assert case.status == "written"
    assert "window" in capsys.readouterr().err  # the bar over the case's windows
    image = read_header(dataset.parent / "imagesTr" / f"{case.case_id}.nii.gz")
    assert read_header(case.path).shape == image.shape
