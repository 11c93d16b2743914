"""Classification prediction: one image's probabilities and call, and the batch predictor."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from medimg.keys import Keys
from medimg.manifests import ResolvedCase
from medimg.tasks.base import PredictConfig
from medimg.tasks.classification import _sized, called_class, predict_probabilities
from medimg.tasks.engine import options_of, write_table
from medimg.training import apply_chain

__all__ = ["ClassificationPredictor", "classify_image"]

IMAGE = Keys.IMAGE.value


def classify_image(bundle: Any, chain: Any, image: Any, *, threshold: float) -> dict[str, Any]:
    """One image's class probabilities and called class (``{"predicted", "probabilities"}``).

    ``image`` is a path (file or DICOM folder) or a :class:`~medimg.io.Volume` on its stored
    grid; the network runs on the device its parameters are on.
    """
    from medimg.tasks._inputs import chain_input

    head = bundle.head
    image = apply_chain(chain, {IMAGE: chain_input(image)})[IMAGE]
    batch = [_sized(image, head.input_size_vox)]
    probs = predict_probabilities(bundle.model, batch, multi_label=head.multi_label,
                                  batch_size=1)[0]  # fmt: skip
    k = called_class(probs, multi_label=head.multi_label, threshold=threshold)
    classes = [bundle.outputs[i] for i in sorted(bundle.outputs)]
    return {"predicted": classes[k], "probabilities": probs.tolist()}


class ClassificationPredictor:
    """Class probabilities of a batch into ``<split>.csv`` (:class:`~medimg.tasks.Predictor`)."""

    def __init__(self, bundle: Any, chain: Any, cfg: PredictConfig) -> None:
        from medimg.tasks._backend import backend_settings, with_backend
        from medimg.tasks.classification import ClassificationTask
        from medimg.training import select_device

        options = options_of(ClassificationTask(), cfg.options, "predict")
        bundle = with_backend(bundle, options.backend, device=cfg.device, precision=cfg.precision)
        self.bundle, self.chain, self.head = bundle, chain, bundle.head
        self.threshold = options.threshold
        bundle.model.to(select_device(cfg.device))
        self.classes = [bundle.outputs[k] for k in sorted(bundle.outputs)]
        self.summary_name = f"{cfg.split}.summary.json"
        self.path = cfg.out_dir / f"{cfg.split}.csv"
        self.settings: Mapping[str, Any] = {
            "output": "class probabilities",
            "classes": self.classes,
            "threshold": self.threshold,
            "multi_label": self.head.multi_label,
            "input_size_vox": None if (s := self.head.input_size_vox) is None else list(s),
            **backend_settings(options.backend),
        }

    def output(self, case: ResolvedCase) -> None:
        return None

    def run(self, case: ResolvedCase, batch_case: Any) -> dict[str, Any]:
        return classify_image(self.bundle, self.chain, case.images[0], threshold=self.threshold)

    def is_done(self, case: ResolvedCase) -> bool:
        return True

    def start(self) -> None:
        self.path.unlink(missing_ok=True)  # written again at the end; never stale meanwhile

    def finish(self, records: Sequence[Any]) -> Path:
        header = ["case_id", "status", "predicted", *(f"p_{c}" for c in self.classes), "error"]
        rows: list[list[object]] = []
        for r in records:
            result = r.result or {}
            probs = result.get("probabilities") or [math.nan] * len(self.classes)
            rows.append([r.case_id, r.status, result.get("predicted") or "",
                         *(f"{p:.6f}" for p in probs), r.error or ""])  # fmt: skip
        return write_table(self.path, header, rows, overwrite=True)
