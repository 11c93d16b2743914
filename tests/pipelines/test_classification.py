from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from medimg.errors import CaseError, ConfigError, ManifestError, OutputExistsError
from medimg.io import save_volume
from medimg.synthetic.datasets import write_xray_classification_dataset
from medimg.training import TrainConfig, load_model_bundle
from medimg.transforms import AugmentConfig, PreprocessConfig
from pipelines.classification import (
    ClassificationConfig,
    TrainResult,
    evaluate,
    predict,
    train,
)

XR = PreprocessConfig(xray_size_px=(32, 32))


def _xr_cfg(manifest: Path, out: Path, **kw: object) -> ClassificationConfig:
    opts: dict[str, object] = {
        "network": "resnet18",
        "width_factor": 0.125,
        "stem_stride": 2,
        "preprocess": XR,
        "batch_size": 8,
        "train": TrainConfig(max_epochs=2, learning_rate=3e-3, device="cpu"),
    }
    opts.update(kw)
    return ClassificationConfig(manifest=manifest, out_dir=out, **opts)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def xray(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 20 radiograph phantoms (64 x 80 px at 5 mm), normal/nodule alternating; last 4 are test
    return write_xray_classification_dataset(tmp_path_factory.mktemp("xr"), 20, seed=0)


@pytest.fixture(scope="module")
def trained(
    xray: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[ClassificationConfig, TrainResult]:
    cfg = _xr_cfg(xray, tmp_path_factory.mktemp("run"))
    return cfg, train(cfg)


def test_xray_train_predict_evaluate(trained: tuple[ClassificationConfig, TrainResult]) -> None:
    cfg, result = trained
    assert result.fit.epochs_run == 2
    # 16 training cases, no validation split: round(16 * 0.2) = 3 held out
    assert (len(result.train_cases), len(result.validation_cases)) == (13, 3)
    assert result.checkpoint.name == "best.pt"
    bundle = load_model_bundle(cfg.model_dir)
    assert bundle.outputs == {0: "normal", 1: "nodule"}
    assert bundle.network.spatial_dims == 2  # the X-ray chain is 2D
    assert bundle.network.roi_size_vox == (32, 32)  # xray_size_px
    run = json.loads((cfg.model_dir / "run.json").read_text())
    assert run["cases"]["validation"] == list(result.validation_cases)
    assert sum(run["class_counts"]) == 13
    assert len(run["class_weights"]) == 2

    predicted = predict(cfg)
    assert [c.case_id for c in predicted.cases] == [f"case_{k:03d}" for k in range(16, 20)]
    assert {c.status for c in predicted.cases} == {"written"}
    for case in predicted.cases:
        assert case.result is not None
        probabilities = case.result["probabilities"]
        assert sum(probabilities) == pytest.approx(1.0, abs=1e-5)  # softmax
        called = "nodule" if probabilities[1] >= 0.5 else "normal"
        assert case.result["predicted"] == called
    assert {c.status for c in predict(cfg).cases} == {"skipped"}  # resumable

    report = evaluate(cfg)
    s = report.summary
    assert s["n_cases"] == 4
    assert sum(map(sum, s["confusion"])) == 4
    assert 0.0 <= s["auc"] <= 1.0
    assert s["one_vs_rest"]["nodule"]["sensitivity"] == s["sensitivity"]
    for figure in report.figures:
        assert figure.read_bytes()[:4] == b"\x89PNG"
    with (report.out_dir / "cases.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["true"] for r in rows] == ["normal", "nodule"] * 2  # even ids normal, odd nodule
    with pytest.raises(OutputExistsError, match=r"summary.json: exists; pass overwrite=True"):
        evaluate(cfg)


def test_train_refuses_an_existing_run_and_resumes(
    trained: tuple[ClassificationConfig, TrainResult],
) -> None:
    cfg, _ = trained
    with pytest.raises(OutputExistsError, match=r"a run exists here; resume it"):
        train(cfg)
    longer = _xr_cfg(cfg.manifest, cfg.out_dir, train=TrainConfig(max_epochs=3, device="cpu"))
    resumed = train(longer, resume=True)
    assert resumed.fit.epochs_run == 3  # 2 done before, one more


def test_multi_label_with_balanced_sampler(xray: Path, tmp_path: Path) -> None:
    aug = AugmentConfig(rotation_deg=10.0, p_affine=0.5)
    cfg = _xr_cfg(xray, tmp_path, multi_label=True, balance="sampler", augment=aug,
                  train=TrainConfig(max_epochs=1, device="cpu"))  # fmt: skip
    train(cfg)
    head = json.loads((cfg.model_dir / "model.json").read_text())["head"]
    assert head == {"multi_label": True, "input_size_vox": None}  # typed, in the model record
    probs = [(c.result or {}).get("probabilities") for c in predict(cfg).cases]
    assert all(p is not None and 0 < min(p) and max(p) < 1 for p in probs)
    # independent sigmoids: the rows need not sum to one
    assert any(p is not None and abs(sum(p) - 1) > 1e-4 for p in probs)


def _write_volumes(root: Path, n_train: int, shapes: list[tuple[int, ...]] | None = None) -> Path:
    """3D 'CT' cases whose class is the brightness: dark (0) or bright (1), plus noise."""
    rng = np.random.default_rng(0)
    splits: dict[str, list[dict[str, str]]] = {"training": [], "validation": [], "test": []}
    plan = [("training", n_train), ("validation", 4), ("test", 6)]
    k = 0
    for split, count in plan:
        for i in range(count):
            label = i % 2
            shape = shapes[k % len(shapes)] if shapes else (12, 10, 8)
            image = rng.normal(100.0 + 300.0 * label, 40.0, shape).astype(np.float32)
            save_volume(image, root / f"c{k:03d}.nii.gz", like=np.diag([1.0, 1.0, 2.5, 1.0]))
            splits[split].append({"id": f"c{k:03d}", "image": f"c{k:03d}.nii.gz",
                                  "class": ["dark", "bright"][label]})  # fmt: skip
            k += 1
    manifest = {
        "schema_version": 1,
        "name": "brightness",
        "channels": [{"name": "CT", "modality": "CT"}],
        "classes": ["dark", "bright"],
        **splits,
    }
    path = root / "dataset.json"
    path.write_text(json.dumps(manifest))
    return path


def test_3d_learns_a_separable_task(tmp_path: Path) -> None:
    # dark and bright volumes differ by 7.5 noise SDs: any working classifier separates them
    manifest = _write_volumes(tmp_path, 16)
    cfg = ClassificationConfig(
        manifest=manifest,
        out_dir=tmp_path / "run",
        network="resnet18",
        width_factor=0.125,
        preprocess=PreprocessConfig(hu_window=(0.0, 500.0)),
        augment=None,
        batch_size=8,
        train=TrainConfig(max_epochs=4, learning_rate=1e-2, device="cpu"),
    )
    result = train(cfg)
    assert result.validation_cases == ("c016", "c017", "c018", "c019")  # the manifest's split
    assert result.fit.best_metric == 1.0  # validation AUC
    predict(cfg)
    report = evaluate(cfg)
    assert report.scores.auc == 1.0  # every bright case ranked above every dark one
    # the checkpoint is the first with the best validation AUC, not necessarily calibrated:
    # accuracy at 0.5 is not pinned, only that the matrix counts the 6 test cases
    assert sum(map(sum, report.scores.confusion)) == 6


def test_shapes_must_agree_or_be_set(tmp_path: Path) -> None:
    manifest = _write_volumes(tmp_path, 2, shapes=[(12, 10, 8), (10, 10, 8)])
    base = {"manifest": manifest, "preprocess": PreprocessConfig(hu_window=(0.0, 500.0))}
    tiny = TrainConfig(max_epochs=1, device="cpu")
    cfg = ClassificationConfig(out_dir=tmp_path / "a", train=tiny, **base)  # type: ignore[arg-type]
    with pytest.raises(
        ConfigError,
        match=r"preprocessed images must share one shape, got \[\(1, 10, 10, 8\), \(1, 12, 10, 8\)\]; set input_size_vox",
    ):
        train(cfg)
    bad = ClassificationConfig(out_dir=tmp_path / "b", input_size_vox=(8, 8), train=tiny, **base)  # type: ignore[arg-type]
    with pytest.raises(
        ConfigError,
        match=r"input_size_vox must have one value per spatial axis of the 3D images, got \(8, 8\)",
    ):
        train(bad)
    sized = ClassificationConfig(
        out_dir=tmp_path / "c", input_size_vox=(8, 8, 8), network="resnet18", width_factor=0.125,
        augment=None, train=tiny, **base,  # type: ignore[arg-type]
    )  # fmt: skip
    assert train(sized).fit.epochs_run == 1


def test_config_errors(tmp_path: Path) -> None:
    m = tmp_path / "m.json"
    with pytest.raises(ConfigError, match=r"network must be a classification network, got 'unet'"):
        ClassificationConfig(manifest=m, out_dir=tmp_path, network="unet")
    with pytest.raises(ConfigError, match=r"balance must be one of loss, sampler, none, got 'x'"):
        ClassificationConfig(manifest=m, out_dir=tmp_path, balance="x")
    with pytest.raises(
        ConfigError, match=r"input_size_vox must be 2 or 3 positive integers, got \(0, 4\)"
    ):
        ClassificationConfig(manifest=m, out_dir=tmp_path, input_size_vox=(0, 4))
    with pytest.raises(ConfigError, match=r"threshold must be in \(0, 1\), got 1.0"):
        ClassificationConfig(manifest=m, out_dir=tmp_path, batch_size=8, threshold=1.0)
    with pytest.raises(ConfigError, match=r"validation_fraction must be in \[0, 1\), got 1.0"):
        ClassificationConfig(manifest=m, out_dir=tmp_path, validation_fraction=1.0)
    with pytest.raises(ManifestError, match=r"no such file"):
        train(ClassificationConfig(manifest=m, out_dir=tmp_path))


def test_pipeline_errors(xray: Path, tmp_path: Path) -> None:
    from medimg.synthetic.datasets import write_ct_segmentation_dataset

    seg = write_ct_segmentation_dataset(tmp_path / "seg", 2, seed=0)
    with pytest.raises(
        ConfigError,
        match=r"must be a classification manifest \(with 'classes'\), got task 'segmentation'",
    ):
        train(_xr_cfg(seg, tmp_path / "r0"))
    with pytest.raises(
        ConfigError, match=r"split 'validation' of .* must have labelled cases \(a label, class "
    ):
        evaluate(_xr_cfg(xray, tmp_path / "r1"), split="validation")
    with pytest.raises(
        ConfigError, match=r"predictions must exist at .*test.csv, got no file; run predict first"
    ):
        evaluate(_xr_cfg(xray, tmp_path / "r1"))


def test_predict_failures_and_missing_predictions(
    trained: tuple[ClassificationConfig, TrainResult], tmp_path: Path
) -> None:
    cfg, _ = trained
    raw = json.loads(cfg.manifest.read_text())
    raw["test"][0]["image"] = "images/missing.nii.gz"
    broken = cfg.manifest.parent / "broken.json"
    broken.write_text(json.dumps(raw))
    run = _xr_cfg(broken, tmp_path)
    (tmp_path / "model").symlink_to(cfg.model_dir, target_is_directory=True)
    with pytest.raises(ManifestError, match=r"missing.nii.gz"):
        predict(run)  # fail_fast checks every file first
    result = predict(run, fail_fast=False)
    assert [c.status for c in result.cases] == ["failed", "written", "written", "written"]
    assert result.cases[0].error is not None
    with pytest.raises(
        ConfigError, match=r"must cover every labelled case, got 1 missing \(first: case_016\)"
    ):
        evaluate(run)


def test_predict_fail_fast_names_the_case(
    trained: tuple[ClassificationConfig, TrainResult],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import medimg.tasks._classification_predict as task  # where a case is read for prediction

    cfg, _ = trained

    def unreadable(*args: object) -> None:
        raise OSError("read error: disk gone")

    monkeypatch.setattr(task, "apply_chain", unreadable)
    with pytest.raises(CaseError, match=r"case case_016: prediction failed: read error: disk gone"):
        predict(cfg, overwrite=True)
