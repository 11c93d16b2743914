"""Detection prediction: one case's boxes as ``<case>.json`` (the shared engine runs the batch).

Each box is written in world RAS+ mm (``center_mm``, ``size_mm``) and in voxels of the image's
stored grid (``center_vox``, ``size_vox``, ``min_vox``, ``max_vox``; voxel ``k``'s centre at
``k``), from the detector's boxes on the chain's grid through the chain's record. The file
also holds the stored grid (shape, affine), which the resume check compares with the image.

With ``output_format="sr"`` a DICOM case also gets ``<case>.sr.dcm``: the same boxes as a
TID 1500 SR on the series (:func:`~medimg.io.dicom.sr.write_boxes_sr`: frame of reference,
patient and study of the source, each box the ellipsoid it bounds in patient LPS mm, its
extent and score), the model as its algorithm
(:func:`~medimg.tasks._segmentation_dicom.algorithm_of`). The SR is written before the JSON is
renamed into place, and the JSON records the SR's name and SHA-256 (``"sr"``), so the resume
check finds a missing, damaged or replaced SR and predicts the case again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medimg.errors import MedimgError
from medimg.keys import Keys
from medimg.manifests import ResolvedCase
from medimg.networks import Detections, detect
from medimg.tasks._detection_boxes import map_boxes, world_centre_size
from medimg.tasks.base import PredictConfig
from medimg.training import apply_chain

__all__ = ["FRAME", "DetectionPredictor", "case_document", "detect_image"]

logger = logging.getLogger(__name__)

FRAME = "world RAS+ mm (x right, y anterior, z superior)"
"""The frame of ``center_mm``/``size_mm`` in every box file."""


def case_document(
    case_id: str, detections: Detections, record: Any, classes: dict[int, str], min_score: float
) -> dict[str, Any]:
    """The JSON document of one case from boxes on the chain grid of ``record``."""
    keep = detections.scores >= min_score
    grid = np.asarray(record.grid_affine, dtype=np.float64)
    source = np.asarray(record.source_affine, dtype=np.float64)
    boxes = detections.boxes_vox[keep]
    centre_mm, size_mm = world_centre_size(boxes, grid)
    stored = map_boxes(boxes, np.linalg.inv(source) @ grid)
    out = []
    for i, (score, label) in enumerate(zip(detections.scores[keep], detections.labels[keep],
                                           strict=True)):  # fmt: skip
        lo, hi = stored[i, :3], stored[i, 3:]
        out.append({
            "score": round(float(score), 6), "class": classes[int(label)],
            "center_mm": _round(centre_mm[i]), "size_mm": _round(size_mm[i]),
            "center_vox": _round((lo + hi) / 2), "size_vox": _round(hi - lo),
            "min_vox": _round(lo), "max_vox": _round(hi),
        })  # fmt: skip
    return {
        "case_id": case_id,
        "frame": FRAME,
        "stored_grid": {"shape": list(record.source_shape), "affine": source.tolist()},
        "boxes": out,
    }


def detect_image(
    bundle: Any, chain: Any, image: Any, case_id: str, *, device: torch.device,
    precision: str, min_score: float,
) -> dict[str, Any]:  # fmt: skip
    """The box document of one image (:func:`case_document`), detected on ``device``.

    ``image`` is a path (file or DICOM folder) or a :class:`~medimg.io.Volume` on its stored
    grid; ``precision`` the autocast dtype (``float32``: none).
    """
    from medimg.tasks._inputs import chain_input

    sample = apply_chain(chain, {Keys.IMAGE.value: chain_input(image)})
    tensor = torch.as_tensor(sample[Keys.IMAGE.value]).as_subclass(torch.Tensor).float()
    detector = bundle.model.to(device).detector
    dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(precision)
    with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
        found = detect(detector, tensor)
    return case_document(case_id, found, sample[Keys.RECORD], bundle.outputs, min_score)


def _round(v: Any) -> list[float]:
    return [round(float(x), 4) for x in v]


class DetectionPredictor:
    """Boxes of a batch as ``<case>.json`` (:class:`~medimg.tasks.Predictor`)."""

    summary_name = "summary.json"

    def __init__(self, bundle: Any, chain: Any, cfg: PredictConfig) -> None:
        from medimg.tasks.detection import DetectionTask
        from medimg.tasks.engine import options_of
        from medimg.training import select_device

        self.options = options_of(DetectionTask(), cfg.options, "predict")
        self.bundle, self.chain, self.out_dir = bundle, chain, cfg.out_dir
        self.device = select_device(cfg.device)
        self.precision = cfg.precision
        self.sr = self.options.output_format == "sr"
        output = "boxes as <case>.json, world RAS+ mm and stored-grid voxels"
        self.settings = {
            "output": output + (" + DICOM SR <case>.sr.dcm (TID 1500)" if self.sr else ""),
            "min_score": self.options.min_score,
            "device": self.device.type,
            "precision": cfg.precision,
        }

    def output(self, case: ResolvedCase) -> Path:
        return self.out_dir / f"{case.case_id}.json"

    def sr_output(self, case: ResolvedCase) -> Path:
        """``<case>.sr.dcm`` beside the JSON (with ``output_format="sr"``)."""
        return self.out_dir / f"{case.case_id}.sr.dcm"

    def run(self, case: ResolvedCase, batch_case: Any) -> dict[str, Any]:
        from medimg.io.writing import atomic_path

        if self.sr:  # refused before any work: an SR refers to DICOM images
            from medimg.tasks._segmentation_dicom import dicom_image_of

            dicom_image_of(case, "sr")
        doc = detect_image(self.bundle, self.chain, case.images[0], case.case_id,
                           device=self.device, precision=self.precision,
                           min_score=self.options.min_score)  # fmt: skip
        with atomic_path(self.output(case), overwrite=True) as tmp:
            if self.sr:
                doc["sr"] = self._write_sr(case, doc)
            tmp.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
        return {"boxes": len(doc["boxes"])}

    def _write_sr(self, case: ResolvedCase, doc: dict[str, Any]) -> dict[str, str]:
        from medimg.io.dicom.sr import ReportedBox, write_boxes_sr
        from medimg.io.integrity import sha256_file
        from medimg.tasks._segmentation_dicom import algorithm_of

        boxes = [
            ReportedBox(center_mm=tuple(b["center_mm"]), size_mm=tuple(b["size_mm"]),
                        class_name=b["class"], score=b["score"])
            for b in doc["boxes"]
        ]  # fmt: skip
        path = write_boxes_sr(boxes, case.images[0], self.sr_output(case),
                              algorithm=algorithm_of(self.bundle), overwrite=True)  # fmt: skip
        return {"file": path.name, "sha256": sha256_file(path)}

    def is_done(self, case: ResolvedCase) -> bool:
        from medimg.io import read_image_header

        path = self.output(case)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            grid = doc["stored_grid"]
            header = read_image_header(case.images[0])
            same = tuple(grid["shape"]) == tuple(header.shape[:3]) and np.allclose(
                grid["affine"], header.affine, atol=1e-4
            )
            if not same:
                logger.warning("%s: predicting %s again: not the image's grid", path, case.case_id)
                return False
            return not self.sr or self._sr_unchanged(case, doc)
        except (MedimgError, OSError, ValueError, KeyError, TypeError) as exc:
            logger.warning("%s: predicting %s again: %s", path, case.case_id, exc)
            return False

    def _sr_unchanged(self, case: ResolvedCase, doc: dict[str, Any]) -> bool:
        """Whether the SR the JSON records is there with the SHA-256 recorded."""
        from medimg.io.integrity import sha256_file

        sr = self.sr_output(case)
        recorded = doc.get("sr") or {}
        if recorded.get("file") != sr.name or not sr.is_file():
            logger.warning("%s: predicting %s again: its SR is missing", sr, case.case_id)
            return False
        if sha256_file(sr) != recorded.get("sha256"):
            logger.warning("%s: predicting %s again: the SR changed since", sr, case.case_id)
            return False
        return True

    def start(self) -> None:
        pass

    def finish(self, records: Sequence[Any]) -> Path:
        return self.out_dir
