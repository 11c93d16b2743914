"""Segmentation evaluation: scores on the stored grids, CSV, JSON and the overlay figures."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from medimg.manifests import ResolvedCase
from medimg.tasks.base import EvaluateConfig

__all__ = ["report"]


def _score(case: ResolvedCase, prediction: Path, labels: Mapping[int, str], tol: float) -> Any:
    from medimg.evaluation import score_case
    from medimg.io import load_volume
    from medimg.tasks.segmentation import check_grid

    ref, pred = load_volume(str(case.label)), load_volume(prediction)
    check_grid(pred, ref, prediction, Path(str(case.label)))
    return score_case(
        case.case_id, pred.array[0], ref.array[0],
        spacing_mm=ref.spacing_mm, labels=dict(labels), tolerance_mm=tol,
    )  # fmt: skip


def _overlay(case: ResolvedCase, prediction: Path, out: Path, title: str) -> Path:
    from medimg.evaluation import save_overlay_figure
    from medimg.io import read_image

    # shown in RAS voxel order, so LPS- and RAS-stored cases look alike
    paths = (case.images[0], str(case.label), prediction)
    image, ref, pred = (read_image(p).to_ras() for p in paths)  # image: file or DICOM folder
    return save_overlay_figure(
        image.array[0], pred.array[0], ref.array[0], out, title=title, overwrite=True
    )


def report(
    cases: Sequence[ResolvedCase], labels: Mapping[int, str], cfg: EvaluateConfig, tol: float
) -> Any:
    """Score the label maps of ``cfg.predictions_dir``; write cases.csv, summary, figures."""
    from medimg.evaluation import summarize, write_case_csv, write_json
    from medimg.tasks.segmentation import SegmentationReport

    cases = [c for c in cases if c.label is not None]
    preds = {c.case_id: cfg.predictions_dir / f"{c.case_id}.nii.gz" for c in cases}
    scores = [_score(c, preds[c.case_id], labels, tol) for c in cases]
    write_case_csv(scores, cfg.out_dir / "cases.csv", overwrite=cfg.overwrite)
    summary = summarize(scores)
    write_json(summary, cfg.out_dir / "summary.json", overwrite=cfg.overwrite)
    ranked = sorted(range(len(cases)), key=lambda i: scores[i].mean_dice)
    figures = tuple(
        _overlay(cases[i], preds[cases[i].case_id], cfg.out_dir / f"{cases[i].case_id}.png",
                 f"{cases[i].case_id}: mean Dice {scores[i].mean_dice:.3f}")
        for i in sorted({ranked[0], ranked[-1]})
    )  # fmt: skip
    return SegmentationReport(cfg.out_dir, tuple(scores), summary, figures)
