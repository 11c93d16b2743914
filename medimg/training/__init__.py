"""Training machinery shared by the pipelines.

:func:`fit` (epochs or fixed iterations, AdamW/SGD, poly/cosine schedule, validation, best and
last checkpoints with SHA-256, exact resume with every random state, early stopping, opt-in
tqdm and TensorBoard) under the run-folder lock :func:`training_lock`, :class:`TrainConfig`,
device and autocast selection, seeding, :func:`segmentation_loss` (Dice + CE, deep
supervision), :func:`classification_loss` (weighted CE or BCE) with
:func:`balanced_class_weights` or the :func:`balanced_indices` sampler,
:func:`label_balanced_crop`, :func:`split_cases`, :func:`apply_chain`, the run record
:func:`write_run_record`, the trained-model folder (:func:`save_model_bundle`,
:func:`load_model_bundle`) and :func:`holdout_split`. torch and MONAI load only when a function
runs.
"""

from __future__ import annotations

from medimg.training.batches import balanced_indices, epoch_batches, holdout_split
from medimg.training.bundle import (
    MODEL_RECORD,
    ModelBundle,
    load_model_bundle,
    save_model_bundle,
)
from medimg.training.cases import apply_chain, split_cases
from medimg.training.checkpoint import (
    load_checkpoint,
    save_checkpoint,
    sha256_file,
)
from medimg.training.config import TrainConfig
from medimg.training.device import autocast, select_device
from medimg.training.lock import training_lock
from medimg.training.loop import BEST, LAST, FitResult, fit
from medimg.training.losses import (
    SEGMENTATION_LOSSES,
    balanced_class_weights,
    classification_loss,
    segmentation_loss,
)
from medimg.training.record import package_versions, utc_now, write_run_record
from medimg.training.sampling import label_balanced_crop
from medimg.training.seeding import restore_rng_state, rng_state, seed_everything

__all__ = [
    "BEST",
    "LAST",
    "MODEL_RECORD",
    "SEGMENTATION_LOSSES",
    "FitResult",
    "ModelBundle",
    "TrainConfig",
    "apply_chain",
    "autocast",
    "balanced_class_weights",
    "balanced_indices",
    "classification_loss",
    "epoch_batches",
    "fit",
    "holdout_split",
    "label_balanced_crop",
    "load_checkpoint",
    "load_model_bundle",
    "package_versions",
    "restore_rng_state",
    "rng_state",
    "save_checkpoint",
    "save_model_bundle",
    "seed_everything",
    "segmentation_loss",
    "select_device",
    "sha256_file",
    "split_cases",
    "training_lock",
    "utc_now",
    "write_run_record",
]
