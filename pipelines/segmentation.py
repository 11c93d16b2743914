"""Segmentation pipeline: :func:`train`, :func:`predict` and :func:`evaluate` on a manifest.

A thin layer over :mod:`medimg.tasks`: :class:`SegmentationConfig` describes a run, and each
step builds the stage's config (:class:`~medimg.tasks.PredictConfig`,
:class:`~medimg.tasks.EvaluateConfig`) and calls the shared engine with
:class:`~medimg.tasks.SegmentationTask`. Everything lands under ``cfg.out_dir``::

    model/         model.json, fingerprint.json, best.pt, last.pt, run.json, curves.png
    predictions/   <case_id>.nii.gz on each image's stored grid, summary.json, run.json
    evaluation/    cases.csv, summary.json, <case_id>.png overlays, run.json

Notebook use: ``from pipelines.segmentation import SegmentationConfig, train, predict, evaluate``.
"""

from __future__ import annotations

from medimg.tasks import (
    EvaluateConfig,
    PredictConfig,
    PredictResult,
    SegmentationConfig,
    SegmentationEvaluateOptions,
    SegmentationTask,
    TrainResult,
    engine,
)
from medimg.tasks._segmentation_predict import predict_case
from medimg.tasks.segmentation import SegmentationReport, patch_sampler
from medimg.training import epoch_batches

__all__ = [
    "EvaluateResult",
    "PredictResult",
    "SegmentationConfig",
    "TrainResult",
    "epoch_batches",
    "evaluate",
    "predict",
    "predict_case",
    "train",
]

EvaluateResult = SegmentationReport
_patch_sampler = patch_sampler
TASK = SegmentationTask()


def train(cfg: SegmentationConfig, *, resume: bool = False) -> TrainResult:
    """Train on the manifest's training cases; keep the best by validation Dice.

    See :func:`medimg.tasks.engine.train` (errors included).
    """
    return engine.train(TASK, cfg, resume=resume)


def predict(
    cfg: SegmentationConfig | PredictConfig,
    *,
    split: str = "test",
    overwrite: bool = False,
    fail_fast: bool = True,
    progress: bool = False,
) -> PredictResult:
    """Predict every case of ``split`` onto its stored grid, skipping cases already done.

    A :class:`SegmentationConfig` predicts with its model into its predictions folder, on the
    default device (``auto``) in float32, with its overlap and mirror axes; pass a
    :class:`~medimg.tasks.PredictConfig` for anything else (the keyword arguments are then
    ignored). See :func:`medimg.tasks.engine.predict`.
    """
    if isinstance(cfg, SegmentationConfig):
        cfg = PredictConfig(
            manifest=cfg.manifest, model_dir=cfg.model_dir, out_dir=cfg.predictions_dir,
            split=split, overwrite=overwrite, fail_fast=fail_fast, progress=progress,
            options=cfg.predict_options,
        )  # fmt: skip
    return engine.predict(TASK, cfg)


def evaluate(
    cfg: SegmentationConfig | EvaluateConfig, *, split: str = "test", overwrite: bool = False
) -> SegmentationReport:
    """Score the predictions against the references on the stored grids; write the report.

    A :class:`SegmentationConfig` reads its predictions folder and writes
    ``out_dir/evaluation``. See :func:`medimg.tasks.engine.evaluate`.
    """
    if isinstance(cfg, SegmentationConfig):
        cfg = EvaluateConfig(
            manifest=cfg.manifest, predictions_dir=cfg.predictions_dir,
            out_dir=TASK.evaluation_dir(cfg.out_dir, split), split=split, overwrite=overwrite,
            options=SegmentationEvaluateOptions(tolerance_mm=cfg.tolerance_mm),
        )  # fmt: skip
    report: SegmentationReport = engine.evaluate(TASK, cfg)
    return report
