"""Evaluation: segmentation and classification metrics, reports and figures.

Segmentation scores are in physical units (mm, mL) on anisotropic grids; see
:mod:`medimg.evaluation.segmentation` for the surface and empty-mask conventions.
"""

from __future__ import annotations

from medimg.evaluation.classification import (
    ClassificationScores,
    accuracy,
    balanced_accuracy,
    confusion_matrix,
    roc_auc,
    roc_curve,
    score_classification,
    sensitivity_specificity,
)
from medimg.evaluation.figures import (
    representative_slices,
    save_confusion_figure,
    save_overlay_figure,
    save_roc_figure,
    save_training_curves,
)
from medimg.evaluation.report import CSV_COLUMNS, summarize, write_case_csv, write_json
from medimg.evaluation.segmentation import (
    CaseScores,
    LabelScores,
    dice,
    hausdorff95_mm,
    score_case,
    surface_dice,
    volume_ml,
)

__all__ = [
    "CSV_COLUMNS",
    "CaseScores",
    "ClassificationScores",
    "LabelScores",
    "accuracy",
    "balanced_accuracy",
    "confusion_matrix",
    "dice",
    "hausdorff95_mm",
    "representative_slices",
    "roc_auc",
    "roc_curve",
    "save_confusion_figure",
    "save_overlay_figure",
    "save_roc_figure",
    "save_training_curves",
    "score_case",
    "score_classification",
    "sensitivity_specificity",
    "summarize",
    "surface_dice",
    "volume_ml",
    "write_case_csv",
    "write_json",
]
