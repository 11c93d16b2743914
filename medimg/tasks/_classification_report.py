"""Classification evaluation: prediction's calls and probabilities scored; CSV, JSON, figures.

The predicted class of every case is the one prediction called (the ``predicted`` column of
``<split>.csv``), so evaluation and prediction never disagree, ``multi_label`` included; the
threshold and ``multi_label`` prediction used are read back from ``<split>.summary.json``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medimg.errors import ConfigError
from medimg.manifests import ResolvedCase
from medimg.tasks.base import EvaluateConfig

__all__ = ["ClassificationReport", "report"]


@dataclass(frozen=True)
class ClassificationReport:
    """Scores and report files of a classification evaluation."""

    out_dir: Path
    scores: Any
    summary: dict[str, Any]
    figures: tuple[Path, ...]


def _settings(path: Path) -> tuple[float, bool]:
    """(threshold, multi_label) prediction used, from its summary."""
    fix = "run predict again"
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"predictions must have a summary at {path}, got none; {fix}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: must be JSON, got {exc}; {fix}") from None
    settings = summary.get("settings") if isinstance(summary, dict) else None
    threshold = settings.get("threshold") if isinstance(settings, dict) else None
    multi = settings.get("multi_label") if isinstance(settings, dict) else None
    if not isinstance(threshold, float | int) or not isinstance(multi, bool):
        raise ConfigError(
            f"{path}: must record settings.threshold (number) and settings.multi_label (bool), "
            f"got {settings!r}; {fix}"
        )
    return float(threshold), multi


def _read(path: Path, cases: Sequence[ResolvedCase], classes: Sequence[str]) -> tuple[Any, Any]:
    """(probabilities (N, K), called class indices (N,)) of ``cases`` from prediction's CSV."""
    if not path.is_file():
        raise ConfigError(f"predictions must exist at {path}, got no file; run predict first")
    with path.open(newline="", encoding="utf-8") as f:
        rows = {r["case_id"]: r for r in csv.DictReader(f) if r.get("status") != "failed"}
    missing = [c.case_id for c in cases if c.case_id not in rows]
    if missing:
        raise ConfigError(
            f"predictions in {path} must cover every labelled case, got {len(missing)} missing "
            f"(first: {', '.join(missing[:3])})"
        )
    try:
        probs = [[float(rows[c.case_id][f"p_{k}"]) for k in classes] for c in cases]
        called = [list(classes).index(rows[c.case_id]["predicted"]) for c in cases]
    except (KeyError, ValueError) as exc:
        raise ConfigError(
            f"predictions in {path} must have a predicted class among {list(classes)} and "
            f"p_<class> numbers, got a bad row ({exc}); run predict again"
        ) from None
    return np.asarray(probs, dtype=np.float64), np.asarray(called, dtype=np.int64)


def _rates(truth: Any, called: Any, k: int) -> tuple[float, float]:
    pos, neg = truth == k, truth != k
    sens = float((called[pos] == k).mean()) if pos.any() else float("nan")
    spec = float((called[neg] != k).mean()) if neg.any() else float("nan")
    return sens, spec


def report(cases: Sequence[ResolvedCase], classes: Sequence[str], cfg: EvaluateConfig) -> Any:
    """Score prediction's ``<split>.csv`` in ``cfg.predictions_dir``; write the report."""
    from medimg.evaluation import (
        ClassificationScores,
        accuracy,
        balanced_accuracy,
        confusion_matrix,
        roc_auc,
        save_confusion_figure,
        save_roc_figure,
        write_json,
    )
    from medimg.tasks.engine import write_table

    cases = [c for c in cases if c.class_index is not None]
    base = cfg.predictions_dir / cfg.split
    probs, called = _read(base.with_name(f"{cfg.split}.csv"), cases, classes)
    threshold, multi_label = _settings(base.with_name(f"{cfg.split}.summary.json"))
    truth = np.asarray([c.class_index for c in cases], dtype=np.int64)
    matrix = confusion_matrix(truth, called, num_classes=len(classes))
    binary = len(classes) == 2
    sens, spec = _rates(truth, called, 1) if binary else (None, None)
    scores = ClassificationScores(
        auc=roc_auc(truth, probs), accuracy=accuracy(matrix),
        balanced_accuracy=balanced_accuracy(matrix),
        confusion=tuple(tuple(int(v) for v in row) for row in matrix),
        sensitivity=sens, specificity=spec,
        threshold=threshold if binary and not multi_label else None,
    )  # fmt: skip
    per_class = {}
    for k, name in enumerate(classes):
        s, p = _rates(truth, called, k)
        per_class[name] = {"n_cases": int((truth == k).sum()), "sensitivity": s, "specificity": p}
    summary = {"n_cases": int(truth.size), "classes": list(classes), "multi_label": multi_label,
               **asdict(scores), "one_vs_rest": per_class}  # fmt: skip
    write_json(summary, cfg.out_dir / "summary.json", overwrite=cfg.overwrite)
    rows: list[list[object]] = [
        [c.case_id, classes[int(t)], classes[int(k)], *(f"{v:.6f}" for v in p)]
        for c, t, k, p in zip(cases, truth, called, probs, strict=True)
    ]
    header = ["case_id", "true", "predicted", *(f"p_{c}" for c in classes)]
    write_table(cfg.out_dir / "cases.csv", header, rows, overwrite=cfg.overwrite)
    out = cfg.out_dir
    figures = (
        save_roc_figure(truth, probs, list(classes), out / "roc.png", overwrite=cfg.overwrite),
        save_confusion_figure(
            scores.confusion, list(classes), out / "confusion.png", overwrite=cfg.overwrite
        ),
    )
    return ClassificationReport(cfg.out_dir, scores, summary, figures)
