"""Detection evaluation: FROC, CPM and mAP over a split, with tables, figures and a report.

Lesions are the manifest's boxes (the FROC sphere's diameter is the box's shortest side, as
:meth:`~medimg.evaluation.Lesion.from_box`); detections are the boxes of ``<case>.json``
(world RAS+ mm), the FROC point their centre. Written into the report folder:
``summary.json`` (FROC at the seven rates, CPM, mAP, counts, the published anchors labelled
as such), ``cases.csv``, ``froc.png``, ``<case>.png`` slices with boxes and ``report.md``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medimg.errors import CaseError
from medimg.manifests import ResolvedCase
from medimg.tasks.base import EvaluateConfig

__all__ = ["findings_of", "report"]


def _document(path: Path, case_id: str) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CaseError(
            f"case {case_id}: prediction {path} must exist, got no file; run medimg predict on "
            "this split first"
        ) from None
    except (OSError, ValueError) as exc:
        raise CaseError(
            f"case {case_id}: prediction {path} must be readable JSON, got {exc}"
        ) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("boxes"), list):
        raise CaseError(
            f"case {case_id}: prediction {path} must hold a 'boxes' list; predict again"
        )
    return doc


def findings_of(case: ResolvedCase, classes: Sequence[str], doc: dict[str, Any], path: Path) -> Any:
    """The case's :class:`~medimg.evaluation.ScanFindings` from its manifest boxes and ``doc``."""
    from medimg.evaluation import Detection, Lesion, ScanFindings, WorldBox

    names = list(classes)
    lesions = tuple(
        Lesion.from_box(WorldBox(b.min_mm, b.max_mm), label=names.index(b.class_name))
        for b in case.boxes or ()
    )
    found = []
    for j, box in enumerate(doc["boxes"]):
        try:
            world = WorldBox.from_center_size(box["center_mm"], box["size_mm"])
            found.append(Detection.from_box(world, score=float(box["score"]),
                                            label=names.index(box["class"])))  # fmt: skip
        except (KeyError, TypeError, ValueError) as exc:
            raise CaseError(
                f"case {case.case_id}: {path} boxes[{j}] must have center_mm, size_mm, score and "
                f"a declared class ({', '.join(names)}), got {exc!r}; predict again"
            ) from None
    return ScanFindings(scan_id=case.case_id, lesions=lesions, detections=tuple(found))


def _nan_free(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _summary(result: Any, ap: Any, scans: Sequence[Any], classes: Sequence[str]) -> dict[str, Any]:
    from medimg.evaluation import PUBLISHED_LUNA16

    return {
        "frame": "world RAS+ mm",
        "n_scans": result.n_scans,
        "n_lesions": result.n_lesions,
        "n_detected": result.n_detected,
        "n_false_positives": result.n_false_positives,
        "froc": {
            str(r): _nan_free(s) for r, s in zip(result.fp_rates, result.sensitivities, strict=True)
        },
        "cpm": _nan_free(result.cpm),
        "cpm_ci": result.cpm_ci,
        "map_iou": ap.iou_threshold,
        "map": _nan_free(ap.mean_ap),
        "ap_per_class": {classes[k]: _nan_free(v) for k, v in ap.per_label.items()},
        "published_not_measured_here": [
            {"name": p.name, "source": p.source, "cpm": round(p.cpm, 4), "froc": p.sensitivities}
            for p in PUBLISHED_LUNA16
        ],
    }


def _rows(scans: Sequence[Any]) -> list[list[object]]:
    rows: list[list[object]] = []
    for scan in scans:
        hits = 0
        for lesion in scan.lesions:
            r2 = (lesion.diameter_mm / 2) ** 2
            hits += any(
                sum((a - b) ** 2 for a, b in zip(d.center_mm, lesion.center_mm, strict=True)) < r2
                for d in scan.detections
            )
        top = max((d.score for d in scan.detections), default=float("nan"))
        rows.append([scan.scan_id, len(scan.lesions), len(scan.detections), hits, f"{top:.4f}"])
    return rows


def _figures(cases: Sequence[ResolvedCase], scans: Sequence[Any], out: Path, n: int) -> list[Path]:
    from medimg.evaluation import save_detection_figure
    from medimg.io import read_image

    ranked = sorted(zip(cases, scans, strict=True), key=lambda cs: -len(cs[1].lesions))[:n]
    paths = []
    for case, scan in ranked:
        volume = read_image(case.images[0])
        image = np.asarray(volume.array)
        image = image[0] if image.ndim == 4 else image
        paths.append(save_detection_figure(
            image, volume.affine, scan.lesions, scan.detections, out / f"{case.case_id}.png",
            min_score=0.3, title=f"{case.case_id}: truth green, detections red (score >= 0.3)",
            overwrite=True,
        ))  # fmt: skip
    return paths


def report(cases: Sequence[ResolvedCase], classes: Sequence[str], cfg: EvaluateConfig,
           options: Any) -> Any:  # fmt: skip
    """Score the predictions of ``cases`` and write the report into ``cfg.out_dir``."""
    from medimg.evaluation import PUBLISHED_LUNA16, froc, mean_average_precision, save_froc_figure
    from medimg.io.writing import atomic_path
    from medimg.tasks.detection import DetectionReport
    from medimg.tasks.engine import write_table

    scans = []
    for case in cases:
        path = cfg.predictions_dir / f"{case.case_id}.json"
        scans.append(findings_of(case, classes, _document(path, case.case_id), path))
    result = froc(scans, n_bootstrap=options.n_bootstrap)
    ap = mean_average_precision(scans, iou_threshold=options.iou_threshold)
    out = cfg.out_dir
    out.mkdir(parents=True, exist_ok=True)
    summary = _summary(result, ap, scans, classes)
    with atomic_path(out / "summary.json", overwrite=True) as tmp:
        tmp.write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    write_table(out / "cases.csv", ["case_id", "lesions", "detections", "lesions_hit",
                                    "top_score"], _rows(scans), overwrite=True)  # fmt: skip
    figures = [save_froc_figure(result, out / "froc.png", published=PUBLISHED_LUNA16,
                                title=f"FROC, {cfg.split} split", overwrite=True)]  # fmt: skip
    figures += _figures(cases, scans, out, options.figures)
    _markdown(out / "report.md", summary, figures)
    return DetectionReport(out, result, ap, summary, tuple(figures))


def _markdown(path: Path, summary: dict[str, Any], figures: Sequence[Path]) -> None:
    from medimg.io.writing import atomic_path

    def fmt(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    lines = ["# Detection report", "",
             f"{summary['n_scans']} scans, {summary['n_lesions']} lesions, "
             f"{summary['n_detected']} detected; CPM **{fmt(summary['cpm'])}**, mAP@"
             f"{summary['map_iou']} {fmt(summary['map'])}.", "",
             "| FP/scan | " + " | ".join(summary["froc"]) + " |",
             "|---" * (len(summary["froc"]) + 1) + "|",
             "| sensitivity | " + " | ".join(fmt(v) for v in summary["froc"].values()) + " |",
             "", "Published on real data (LUNA16), not measured here:", ""]  # fmt: skip
    lines += [f"- {p['name']}: CPM {p['cpm']:.3f} ({p['source']})"
              for p in summary["published_not_measured_here"]]  # fmt: skip
    lines += ["", *[f"![{f.stem}]({f.name})" for f in figures]]
    with atomic_path(path, overwrite=True) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
