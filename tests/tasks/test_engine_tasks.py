"""The task protocol and the shared engines: stage configs, options, splits, called classes."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from medimg.errors import ConfigError
from medimg.keys import Keys
from medimg.manifests import load_manifest, resolve_cases
from medimg.tasks import (
    TASKS,
    ClassificationHead,
    ClassificationPredictOptions,
    ClassificationTask,
    EvaluateConfig,
    PredictConfig,
    SegmentationEvaluateOptions,
    SegmentationPredictOptions,
    SegmentationTask,
    engine,
)
from medimg.tasks.classification import called_class

# (probabilities of normal, nodule), true class: hand-made
CASES = {"c0": ((0.6, 0.4), "nodule"), "c1": ((0.8, 0.2), "normal"), "c2": ((0.25, 0.75), "nodule")}


def _manifest(tmp: Path) -> Path:
    raw = {
        "schema_version": 1, "name": "hand", "channels": [{"name": "XR", "modality": "XR"}],
        "classes": ["normal", "nodule"],
        "training": [{"id": "t", "image": "t.nii.gz", "class": "normal"}],
        "test": [{"id": c, "image": f"{c}.nii.gz", "class": k} for c, (_, k) in CASES.items()],
    }  # fmt: skip
    path = tmp / "m.json"
    path.write_text(json.dumps(raw))
    return path


class _Fixed(torch.nn.Module):
    """Logits that give the hand-made probabilities of the case whose index fills the image."""

    def __init__(self, multi_label: bool) -> None:
        super().__init__()
        p = torch.tensor([probs for probs, _ in CASES.values()], dtype=torch.float64)
        self.logits = torch.nn.Parameter(p.logit() if multi_label else p.log(), False)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.logits[batch[:, 0, 0, 0].long()]


def _predict_and_evaluate(tmp: Path, *, multi_label: bool, threshold: float) -> tuple[Any, Any]:
    """Prediction's CSV and summary settings from the real predictor, then the engine's evaluate."""
    manifest = _manifest(tmp)
    bundle = SimpleNamespace(
        model=_Fixed(multi_label), outputs={0: "normal", 1: "nodule"},
        head=ClassificationHead(multi_label=multi_label),
    )  # fmt: skip
    index = {c: i for i, c in enumerate(CASES)}

    def chain(data: dict[str, Any]) -> dict[str, Any]:  # the case's index as the image
        return {
            Keys.IMAGE.value: torch.full(
                (1, 2, 2), float(index[Path(data["image"]).name.split(".")[0]])
            )
        }

    cfg = PredictConfig(
        manifest=manifest, model_dir=tmp / "model", out_dir=tmp / "pred", device="cpu",
        options=ClassificationPredictOptions(threshold=threshold),
    )  # fmt: skip
    predictor = ClassificationTask().predictor(bundle, chain, cfg)
    cases = resolve_cases(load_manifest(manifest, check_files=False), manifest)
    records = [
        SimpleNamespace(
            case_id=c.case_id, status="written", result=predictor.run(c, None), error=None
        )
        for c in cases
        if c.split == "test"
    ]
    predictor.finish(records)
    summary = {"settings": dict(predictor.settings)}
    (tmp / "pred" / "test.summary.json").write_text(json.dumps(summary))
    report = engine.evaluate(
        ClassificationTask(),
        EvaluateConfig(manifest=manifest, predictions_dir=tmp / "pred", out_dir=tmp / "ev"),
    )
    return records, report


@pytest.mark.parametrize(
    ("multi_label", "called", "confusion"),
    [
        # single-label binary: p(nodule) >= 0.3 -> nodule, nodule... c0 0.4, c1 0.2, c2 0.75
        (False, ["nodule", "normal", "nodule"], ((1, 0), (0, 2))),
        # multi-label: argmax -> c0 normal (0.6 > 0.4), c1 normal, c2 nodule
        (True, ["normal", "normal", "nodule"], ((1, 0), (1, 1))),
    ],
)
def test_predict_and_evaluate_agree_on_the_called_class(
    tmp_path: Path, multi_label: bool, called: list[str], confusion: tuple[Any, ...]
) -> None:
    records, report = _predict_and_evaluate(tmp_path, multi_label=multi_label, threshold=0.3)
    assert [r.result["predicted"] for r in records] == called
    for r, (probs, _) in zip(records, CASES.values(), strict=True):
        np.testing.assert_allclose(r.result["probabilities"], probs, atol=1e-9)
        k = called_class(probs, multi_label=multi_label, threshold=0.3)
        assert ["normal", "nodule"][k] == r.result["predicted"]
    assert report.scores.confusion == confusion  # rows true (normal, nodule), columns called
    assert report.scores.threshold == (None if multi_label else 0.3)


def test_called_class_rule() -> None:
    assert called_class([0.6, 0.4], multi_label=False, threshold=0.5) == 0
    assert called_class([0.5, 0.5], multi_label=False, threshold=0.5) == 1  # >= threshold
    assert called_class([0.1, 0.7, 0.2], multi_label=False, threshold=0.9) == 1  # 3 classes
    assert called_class([0.9, 0.95, 0.2], multi_label=True, threshold=0.01) == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"split": "nosuch"}, "split must be one of training, validation, test, got 'nosuch'"),
        ({"precision": "fp32"},
         "precision must be one of float32, bfloat16, float16, auto, got 'fp32'"),
    ],
)  # fmt: skip
def test_predict_config_messages(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=f"^{message}$"):
        PredictConfig(manifest="m.json", model_dir="m", out_dir="o", **kwargs)


def test_evaluate_config_messages() -> None:
    with pytest.raises(ConfigError, match=r"^split must be one of training, validation, test, "):
        EvaluateConfig(manifest="m.json", predictions_dir="p", out_dir="o", split="val")
    cfg = EvaluateConfig(manifest=Path("m.json"), predictions_dir="p", out_dir="o")
    assert isinstance(cfg.predictions_dir, Path)
    assert cfg.split == "test"


def test_option_classes_check_their_values() -> None:
    with pytest.raises(ConfigError, match=r"^threshold must be in \(0, 1\), got 1.0$"):
        ClassificationPredictOptions(threshold=1.0)
    with pytest.raises(ConfigError, match=r"^mirror_axes must be distinct spatial axes"):
        SegmentationPredictOptions(mirror_axes=(0, 0))
    with pytest.raises(ConfigError, match=r"^tolerance_mm must be a finite number > 0, got nan"):
        SegmentationEvaluateOptions(tolerance_mm=math.nan)


def test_options_of_another_task_are_refused(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError,
        match=r"^predict options of the segmentation task must be SegmentationPredictOptions, "
        r"got ClassificationPredictOptions$",
    ):
        engine.options_of(SegmentationTask(), ClassificationPredictOptions(), "predict")
    assert engine.options_of(SegmentationTask(), None, "predict") == SegmentationPredictOptions()
    cfg = EvaluateConfig(
        manifest=_manifest(tmp_path), predictions_dir=tmp_path, out_dir=tmp_path / "ev",
        options=SegmentationEvaluateOptions(),
    )  # fmt: skip
    with pytest.raises(ConfigError, match=r"^evaluate options of the classification task must be "):
        engine.evaluate(ClassificationTask(), cfg)


def test_an_empty_split_is_refused(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path)
    cfg = EvaluateConfig(manifest=manifest, predictions_dir=tmp_path, out_dir=tmp_path / "ev",
                         split="validation")  # fmt: skip
    with pytest.raises(
        ConfigError,
        match=f"^split 'validation' of {manifest} must have labelled cases "
        r"\(a label, class or boxes\), got none; choose another --split$",
    ):
        engine.evaluate(ClassificationTask(), cfg)


def test_a_manifest_of_another_task_is_refused(tmp_path: Path) -> None:
    cfg = EvaluateConfig(manifest=_manifest(tmp_path), predictions_dir=tmp_path, out_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"^labels must be declared as 0\.\.K-1"):
        engine.evaluate(SegmentationTask(), cfg)


def test_every_task_names_its_stage_classes() -> None:
    for name, task in TASKS.items():
        assert task.name == name
        for cls in (task.train_config, task.predict_options, task.evaluate_options):
            cls.__dataclass_fields__  # noqa: B018  # each is a dataclass the CLI can read
        assert task.evaluation_dir(Path("run"), "test").is_relative_to("run/evaluation")
