"""Sliding-window inference on large scans in bounded memory.

* :func:`predict_volume` -- a network over a whole volume, Gaussian-weighted windows, mirror
  TTA, labels or probabilities, returned in memory;
* :func:`iter_slabs` -- the same, yielding the finished output slab by slab along Z;
* :func:`predict_to_nifti` / :func:`write_slabs_nifti` -- the output streamed to an uncompressed
  NIfTI file slab by slab, for volumes whose outputs do not fit in memory;
* :func:`source_label_slabs` -- probabilities on the preprocessed grid to uint8 labels on the
  stored grid, slab by slab, never holding the full-resolution probabilities (and
  :func:`streamed_source_label_slabs`, from :func:`iter_slabs`'s probability slabs through a
  scratch file, never holding the preprocessed grid's class map either);
* :func:`measure_usage` -- wall time and peak memory of one case;
* :func:`plan_inference` -- predicted peak memory, batch size and placement, before running;
* :class:`PredictionBatch` / :func:`run_batch` -- resumable batch prediction into a locked
  folder: a case is reused only under an equal :class:`ResumeKey` (model, preprocessing,
  settings, input contents), with ``summary.json`` rewritten after every case;
* :class:`InferenceConfig` -- the settings.
"""

from __future__ import annotations

from medimg.inference.batch import (
    CASE_ERRORS,
    BatchCase,
    BatchModel,
    PredictionBatch,
    run_batch,
)
from medimg.inference.config import InferenceConfig
from medimg.inference.gaussian import gaussian_importance_map, window_starts
from medimg.inference.planner import InferencePlan, MemoryEstimate, plan_inference
from medimg.inference.resume import CaseRecord, ResumeKey, inference_settings, input_identities
from medimg.inference.sliding import Slab, iter_slabs, predict_volume
from medimg.inference.source import SlabSource, open_source
from medimg.inference.to_source import (
    DEFAULT_SLAB_BYTES,
    source_label_slabs,
    streamed_source_label_slabs,
)
from medimg.inference.usage import Usage, measure_usage
from medimg.inference.writer import predict_to_nifti, write_slabs_nifti

__all__ = [
    "CASE_ERRORS",
    "DEFAULT_SLAB_BYTES",
    "BatchCase",
    "BatchModel",
    "CaseRecord",
    "InferenceConfig",
    "InferencePlan",
    "MemoryEstimate",
    "PredictionBatch",
    "ResumeKey",
    "Slab",
    "SlabSource",
    "Usage",
    "gaussian_importance_map",
    "inference_settings",
    "input_identities",
    "iter_slabs",
    "measure_usage",
    "open_source",
    "plan_inference",
    "predict_to_nifti",
    "predict_volume",
    "run_batch",
    "source_label_slabs",
    "streamed_source_label_slabs",
    "window_starts",
    "write_slabs_nifti",
]
