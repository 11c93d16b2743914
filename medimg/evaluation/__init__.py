"""Evaluation: segmentation, classification and detection metrics, reports and figures.

Segmentation scores are in physical units (mm, mL) on anisotropic grids; see
:mod:`medimg.evaluation.segmentation` for the surface and empty-mask conventions. Detection
scores (LUNA16 FROC and CPM in :mod:`medimg.evaluation.detection`, mAP in
:mod:`medimg.evaluation.average_precision`) are in world millimetres; lesion-wise scores of label
maps and their conversion to detections are in :mod:`medimg.evaluation.lesions`.
"""

from __future__ import annotations

from medimg.evaluation.average_precision import (
    AveragePrecision,
    box_iou,
    mean_average_precision,
)
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
from medimg.evaluation.detection import (
    LUNA16_FP_RATES,
    Detection,
    FrocResult,
    Lesion,
    ScanFindings,
    WorldBox,
    froc,
)
from medimg.evaluation.figures import (
    representative_slices,
    save_confusion_figure,
    save_detection_figure,
    save_froc_figure,
    save_overlay_figure,
    save_roc_figure,
    save_training_curves,
)
from medimg.evaluation.lesions import (
    LesionComponent,
    LesionScores,
    LesionSummary,
    detections_from_label_map,
    label_components,
    lesion_components,
    lesion_scores,
    lesions_from_label_map,
    summarize_lesions,
    world_box_to_voxel,
)
from medimg.evaluation.published import PUBLISHED_LUNA16, PublishedFroc
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
    "LUNA16_FP_RATES",
    "PUBLISHED_LUNA16",
    "AveragePrecision",
    "CaseScores",
    "ClassificationScores",
    "Detection",
    "FrocResult",
    "LabelScores",
    "Lesion",
    "LesionComponent",
    "LesionScores",
    "LesionSummary",
    "PublishedFroc",
    "ScanFindings",
    "WorldBox",
    "accuracy",
    "balanced_accuracy",
    "box_iou",
    "confusion_matrix",
    "detections_from_label_map",
    "dice",
    "froc",
    "hausdorff95_mm",
    "label_components",
    "lesion_components",
    "lesion_scores",
    "lesions_from_label_map",
    "mean_average_precision",
    "representative_slices",
    "roc_auc",
    "roc_curve",
    "save_confusion_figure",
    "save_detection_figure",
    "save_froc_figure",
    "save_overlay_figure",
    "save_roc_figure",
    "save_training_curves",
    "score_case",
    "score_classification",
    "sensitivity_specificity",
    "summarize",
    "summarize_lesions",
    "surface_dice",
    "volume_ml",
    "world_box_to_voxel",
    "write_case_csv",
    "write_json",
]
