"""Detection pipeline: :func:`train`, :func:`predict` and :func:`evaluate` on a manifest.

A thin layer over :mod:`medimg.tasks.detection`: :class:`DetectionConfig` describes a run,
and each step builds the stage's config (:class:`~medimg.tasks.PredictConfig`,
:class:`~medimg.tasks.EvaluateConfig`) and calls the detection stage. Everything lands under
``cfg.out_dir``::

    model/         model.json, fingerprint.json, best.pt, last.pt, run.json, curves.png
    predictions/   <case_id>.json (boxes in world RAS+ mm and stored-grid voxels), summary.json
    evaluation/    summary.json (FROC, CPM, mAP), cases.csv, froc.png, <case_id>.png, report.md

Notebook use: ``from pipelines.detection import DetectionConfig, train, predict, evaluate``.
"""

from __future__ import annotations

from medimg.tasks import EvaluateConfig, PredictConfig, PredictResult, TrainResult
from medimg.tasks import detection as task
from medimg.tasks.detection import (
    DetectionConfig,
    DetectionEvaluateOptions,
    DetectionPredictOptions,
    DetectionReport,
)

__all__ = [
    "DetectionConfig",
    "DetectionReport",
    "PredictResult",
    "TrainResult",
    "evaluate",
    "predict",
    "train",
]


def train(cfg: DetectionConfig, *, resume: bool = False) -> TrainResult:
    """Train the detector on the manifest's training cases; keep the best by validation CPM.

    See :func:`medimg.tasks.detection.train` (errors included).
    """
    result: TrainResult = task.train(cfg, resume=resume)
    return result


def predict(
    cfg: DetectionConfig | PredictConfig,
    *,
    split: str = "test",
    overwrite: bool = False,
    fail_fast: bool = True,
    min_score: float = 0.0,
) -> PredictResult:
    """Write ``<case_id>.json`` boxes for every case of ``split``, skipping cases already done.

    A :class:`DetectionConfig` predicts with its model into its predictions folder; pass a
    :class:`~medimg.tasks.PredictConfig` for anything else (the keyword arguments are then
    ignored). See :func:`medimg.tasks.detection.predict`.
    """
    if isinstance(cfg, DetectionConfig):
        cfg = PredictConfig(
            manifest=cfg.manifest, model_dir=cfg.model_dir, out_dir=cfg.predictions_dir,
            split=split, overwrite=overwrite, fail_fast=fail_fast,
            device=cfg.train.device, options=DetectionPredictOptions(min_score=min_score),
        )  # fmt: skip
    result: PredictResult = task.predict(cfg)
    return result


def evaluate(
    cfg: DetectionConfig | EvaluateConfig, *, split: str = "test", overwrite: bool = False
) -> DetectionReport:
    """FROC, CPM and mAP@0.1 of the predictions against the manifest's boxes; the report.

    A :class:`DetectionConfig` reads its predictions folder and writes ``out_dir/evaluation``.
    See :func:`medimg.tasks.detection.evaluate`.
    """
    if isinstance(cfg, DetectionConfig):
        cfg = EvaluateConfig(
            manifest=cfg.manifest, predictions_dir=cfg.predictions_dir,
            out_dir=task.TASK.evaluation_dir(cfg.out_dir, split), split=split,
            overwrite=overwrite, options=DetectionEvaluateOptions(),
        )  # fmt: skip
    return task.evaluate(cfg)
