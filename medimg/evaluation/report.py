"""Evaluation reports: per-case CSV and summary JSON, written atomically."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medimg.evaluation.lesions import summarize_lesions
from medimg.evaluation.segmentation import CaseScores, LabelScores
from medimg.io.writing import atomic_path
from medimg.typing import PathLike

__all__ = ["CSV_COLUMNS", "summarize", "write_case_csv", "write_json"]

CSV_COLUMNS = (
    "case_id",
    "label",
    "name",
    "dice",
    "hd95_mm",
    "surface_dice",
    "volume_reference_ml",
    "volume_prediction_ml",
    "volume_difference_ml",
    "reference_empty",
    "prediction_empty",
    "lesions_reference",
    "lesions_detected",
    "lesions_false_positive",
)


def write_case_csv(cases: Sequence[CaseScores], path: PathLike, *, overwrite: bool = False) -> Path:
    """Write one row per case and label (columns :data:`CSV_COLUMNS`); return the path."""
    path = Path(path)
    with atomic_path(path, overwrite=overwrite) as tmp, tmp.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        for case in cases:
            for s in case.labels:
                writer.writerow(_row(case.case_id, s))
    return path


def _row(case_id: str, s: LabelScores) -> list[str | int]:
    return [
        case_id,
        s.label,
        s.name,
        f"{s.dice:.6f}",
        f"{s.hd95_mm:.4f}",
        f"{s.surface_dice:.6f}",
        f"{s.volume_reference_ml:.4f}",
        f"{s.volume_prediction_ml:.4f}",
        f"{s.volume_difference_ml:.4f}",
        int(s.reference_empty),
        int(s.prediction_empty),
        *(("", "", "") if s.lesions is None else
          (s.lesions.n_true, s.lesions.n_detected, s.lesions.n_false_positive)),
    ]  # fmt: skip


def _stats(values: Sequence[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    return {
        "mean": float(a.mean()),
        "std": float(a.std()),
        "median": float(np.median(a)),
        "min": float(a.min()),
        "max": float(a.max()),
    }


def summarize(cases: Sequence[CaseScores]) -> dict[str, Any]:
    """Per-label statistics (mean, std, median, min, max) and the mean Dice over everything.

    Cases whose reference *and* prediction are empty for a label count as perfect (see
    :mod:`medimg.evaluation.segmentation`); ``n_reference_empty`` says how many there were.
    For 3D maps each label also gets ``lesions``: reference lesions, how many were detected,
    the lesion sensitivity and false-positive components per scan, pooled over the cases.

    Examples
    --------
    >>> from medimg.evaluation.segmentation import score_case
    >>> ref = np.zeros((4, 4), np.uint8); ref[1:3, 1:3] = 1
    >>> s = summarize([score_case("a", ref, ref, spacing_mm=(1.0, 1.0), labels={1: "x"})])
    >>> s["mean_dice"], s["labels"]["x"]["dice"]["mean"]
    (1.0, 1.0)
    """
    per_label: dict[str, Any] = {}
    names = {s.label: s.name for case in cases for s in case.labels}
    for label, name in sorted(names.items()):
        rows = [s for case in cases for s in case.labels if s.label == label]
        per_label[name] = {
            "label": label,
            "n_cases": len(rows),
            "n_reference_empty": sum(s.reference_empty for s in rows),
            "dice": _stats([s.dice for s in rows]),
            "hd95_mm": _stats([s.hd95_mm for s in rows]),
            "surface_dice": _stats([s.surface_dice for s in rows]),
            "volume_difference_ml": _stats([s.volume_difference_ml for s in rows]),
        }
        lesions = [s.lesions for s in rows if s.lesions is not None]
        if lesions:
            pooled = summarize_lesions(lesions)
            per_label[name]["lesions"] = {
                "n_reference": pooled.n_true,
                "n_detected": pooled.n_detected,
                "sensitivity": pooled.sensitivity,
                "false_positives_per_scan": pooled.false_positives_per_scan,
            }
    all_dice = [s.dice for case in cases for s in case.labels]
    return {
        "n_cases": len(cases),
        "mean_dice": float(np.mean(all_dice)) if all_dice else math.nan,
        "labels": per_label,
    }


def write_json(data: Mapping[str, Any], path: PathLike, *, overwrite: bool = False) -> Path:
    """Write ``data`` as indented JSON atomically (NaN written as ``null``); return the path."""
    path = Path(path)
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_text(json.dumps(_nan_to_none(data), indent=2, sort_keys=False) + "\n")
    return path


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_nan_to_none(v) for v in value]
    return value
