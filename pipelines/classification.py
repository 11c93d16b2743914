"""Classification pipeline (2D and 3D): :func:`train`, :func:`predict` and :func:`evaluate`.

A thin layer over :mod:`medimg.tasks`: :class:`ClassificationConfig` describes a run, and each
step builds the stage's config and calls the shared engine with
:class:`~medimg.tasks.ClassificationTask`. Everything lands under ``cfg.out_dir``::

    model/        model.json (with the typed head: multi_label, input_size_vox),
                  fingerprint.json, best.pt, last.pt, run.json, curves.png
    predictions/  <split>.csv (case, status, predicted class, one probability per class),
                  <split>.summary.json (per case: status, result, resume key), run.json
    evaluation/<split>/  cases.csv, summary.json, roc.png, confusion.png, run.json

Notebook use: ``from pipelines.classification import ClassificationConfig, train, predict``.
"""

from __future__ import annotations

from medimg.tasks import (
    ClassificationConfig,
    ClassificationPredictOptions,
    ClassificationTask,
    EvaluateConfig,
    PredictConfig,
    PredictResult,
    TrainResult,
    engine,
)
from medimg.tasks._classification_report import ClassificationReport
from medimg.tasks.classification import BALANCING, load_samples, predict_probabilities
from medimg.training import epoch_batches

__all__ = [
    "BALANCING",
    "ClassificationConfig",
    "EvaluateResult",
    "PredictResult",
    "TrainResult",
    "epoch_batches",
    "evaluate",
    "load_samples",
    "predict",
    "predict_probabilities",
    "train",
]

EvaluateResult = ClassificationReport
TASK = ClassificationTask()


def train(cfg: ClassificationConfig, *, resume: bool = False) -> TrainResult:
    """Train a classifier; keep the best by validation AUC (:func:`medimg.tasks.engine.train`)."""
    return engine.train(TASK, cfg, resume=resume)


def predict(
    cfg: ClassificationConfig | PredictConfig,
    *,
    split: str = "test",
    overwrite: bool = False,
    fail_fast: bool = True,
    progress: bool = False,
) -> PredictResult:
    """Predict every case of ``split`` into ``predictions/<split>.csv``, skipping done cases.

    A :class:`ClassificationConfig` predicts with ``out_dir/model`` into ``out_dir/predictions``
    at its threshold, on the default device (``auto``); pass a
    :class:`~medimg.tasks.PredictConfig` for anything else. See
    :func:`medimg.tasks.engine.predict`.
    """
    if isinstance(cfg, ClassificationConfig):
        cfg = PredictConfig(
            manifest=cfg.manifest, model_dir=cfg.model_dir, out_dir=cfg.out_dir / "predictions",
            split=split, overwrite=overwrite, fail_fast=fail_fast, progress=progress,
            options=ClassificationPredictOptions(threshold=cfg.threshold),
        )  # fmt: skip
    return engine.predict(TASK, cfg)


def evaluate(
    cfg: ClassificationConfig | EvaluateConfig, *, split: str = "test", overwrite: bool = False
) -> ClassificationReport:
    """Score prediction's calls and probabilities against the manifest's classes.

    A :class:`ClassificationConfig` reads ``out_dir/predictions`` and writes
    ``out_dir/evaluation/<split>``. See :func:`medimg.tasks.engine.evaluate`.
    """
    if isinstance(cfg, ClassificationConfig):
        cfg = EvaluateConfig(
            manifest=cfg.manifest, predictions_dir=cfg.out_dir / "predictions",
            out_dir=TASK.evaluation_dir(cfg.out_dir, split), split=split, overwrite=overwrite,
        )  # fmt: skip
    report: ClassificationReport = engine.evaluate(TASK, cfg)
    return report
