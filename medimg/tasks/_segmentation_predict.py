"""Segmentation prediction: one case streamed onto its stored grid, and the batch predictor."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from medimg.errors import MedimgError
from medimg.keys import Keys
from medimg.manifests import ResolvedCase
from medimg.networks import NetworkConfig
from medimg.tasks._inputs import chain_input
from medimg.tasks.base import PredictConfig
from medimg.tasks.engine import options_of
from medimg.training import apply_chain

__all__ = ["SegmentationPredictor", "on_grid_of", "predict_case", "predict_image"]

logger = logging.getLogger(__name__)

IMAGE = Keys.IMAGE.value


def predict_case(
    case: ResolvedCase, chain: Any, model: tuple[Any, NetworkConfig], infer: Any, out: Path
) -> Path:
    """Predict one case's image into ``out`` (:func:`predict_image`); return the path."""
    return predict_image(case.images[0], chain, model, infer, out)


def predict_image(
    image: Any,
    chain: Any,
    model: tuple[Any, NetworkConfig],
    infer: Any,
    out: Path,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Predict one image and write its label map on the image's stored grid; return the path.

    ``image`` is a path (file or DICOM folder) or a :class:`~medimg.io.Volume` on its stored
    grid; ``progress(done, total)`` is called before the first sliding window, ``(0, total)``,
    and after each one, ``total`` being the windows of the whole preprocessed volume
    (:func:`~medimg.inference.iter_slabs` ``on_window``).

    The sliding window's finished probability slabs (:func:`~medimg.inference.iter_slabs`) go
    to a scratch file beside ``out``; the stored grid's slabs are resampled from the few planes
    of it each needs (:func:`~medimg.inference.streamed_source_label_slabs`) and their labels
    written as they come (:func:`~medimg.inference.write_slabs_nifti`, atomically). So the
    float class map is never held in memory, on the preprocessed grid or the stored one: peak
    memory is the preprocessed image, the stitcher's open window rows and one slab of each grid.
    """
    import torch

    from medimg.inference import (
        iter_slabs,
        plan_inference,
        streamed_source_label_slabs,
        write_slabs_nifti,
    )

    sample = apply_chain(chain, {IMAGE: chain_input(image)})
    record = sample[Keys.RECORD]
    tensor = torch.as_tensor(sample[IMAGE]).as_subclass(torch.Tensor)
    config = replace(infer, output="probabilities")
    plan = plan_inference(
        model[0], tuple(tensor.shape), config, result_in_memory=False, input_in_memory=True
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    slabs = iter_slabs(model[0], tensor, config, plan=plan, on_window=progress)
    labels = streamed_source_label_slabs(slabs, record, scratch_dir=out.parent, name=out.name)
    with torch.no_grad(), closing(labels):  # closed on errors too: the scratch file goes
        return write_slabs_nifti(
            labels, out, shape=record.source_shape, affine=record.source_affine,
            dtype=np.uint8, overwrite=True,
        )  # fmt: skip


def on_grid_of(path: Path, image: Path) -> bool:
    """Whether the header of ``path`` lies on the grid of ``image`` (the one grid test)."""
    from medimg.io import read_header, read_image_header

    return read_header(path).same_grid(read_image_header(image))  # image: file or DICOM folder


class SegmentationPredictor:
    """Label maps of a batch onto each image's stored grid (:class:`~medimg.tasks.Predictor`)."""

    summary_name = "summary.json"

    def __init__(self, bundle: Any, chain: Any, cfg: PredictConfig) -> None:
        from medimg.inference import inference_settings
        from medimg.tasks._backend import backend_settings, with_backend
        from medimg.tasks.segmentation import SegmentationTask, inference_config

        options = options_of(SegmentationTask(), cfg.options, "predict")
        bundle = with_backend(bundle, options.backend, device=cfg.device, precision=cfg.precision)
        roi = bundle.network.roi_size_vox
        self.infer = replace(
            inference_config(
                roi, options.sw_overlap, options.mirror_axes, cfg.device, cfg.precision
            ),
            progress=cfg.progress,
        )
        self.bundle, self.chain, self.out_dir = bundle, chain, cfg.out_dir
        self.seg = options.output_format == "seg"  # DICOM SEG + SR (_segmentation_dicom)
        self.seg_type = options.seg_type
        self.settings = inference_settings(
            self.infer,
            output=f"DICOM SEG ({options.seg_type.upper()}) + SR on the series (.seg.dcm, .sr.dcm)"
            if self.seg
            else "uint8 labels on the image's stored grid (.nii.gz)",
            **backend_settings(options.backend),
        )

    def output(self, case: ResolvedCase) -> Path:
        return self.out_dir / f"{case.case_id}{'.seg.dcm' if self.seg else '.nii.gz'}"

    def run(self, case: ResolvedCase, batch_case: Any) -> None:
        network = (self.bundle.model, self.bundle.network)
        if self.seg:
            from medimg.tasks._segmentation_dicom import write_case_seg

            def labels(out: Path) -> Path:
                return predict_case(case, self.chain, network, self.infer, out)

            write_case_seg(case, labels, self.bundle, self.output(case), seg_type=self.seg_type)
            return
        predict_case(case, self.chain, network, self.infer, self.output(case))

    def is_done(self, case: ResolvedCase) -> bool:
        path = self.output(case)
        try:
            if on_grid_of(path, case.images[0]):
                return True
        except (MedimgError, OSError) as exc:
            logger.warning("%s: predicting %s again: %s", path, case.case_id, exc)
            return False
        logger.warning("%s: predicting %s again: not on the image's grid", path, case.case_id)
        return False

    def start(self) -> None:
        pass

    def finish(self, records: Sequence[Any]) -> Path:
        return self.out_dir
