"""Training machinery shared by the pipelines.

:func:`fit` (epochs or fixed iterations, AdamW/SGD, poly/cosine schedule, validation, best and
last checkpoints with SHA-256, resume with every random state, early stopping, opt-in tqdm and
TensorBoard), :class:`TrainConfig`, device and autocast selection, seeding,
:func:`segmentation_loss` (Dice + CE, deep supervision), :func:`label_balanced_crop` and the
run record :func:`write_run_record`. torch and MONAI load only when a function runs.
"""

from __future__ import annotations

from medimg.training.checkpoint import (
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
    sha256_file,
)
from medimg.training.config import TrainConfig
from medimg.training.device import autocast, select_device
from medimg.training.loop import BEST, LAST, FitResult, fit
from medimg.training.losses import segmentation_loss
from medimg.training.record import package_versions, utc_now, write_run_record
from medimg.training.sampling import label_balanced_crop
from medimg.training.seeding import restore_rng_state, rng_state, seed_everything

__all__ = [
    "BEST",
    "LAST",
    "CheckpointError",
    "FitResult",
    "TrainConfig",
    "autocast",
    "fit",
    "label_balanced_crop",
    "load_checkpoint",
    "package_versions",
    "restore_rng_state",
    "rng_state",
    "save_checkpoint",
    "seed_everything",
    "segmentation_loss",
    "select_device",
    "sha256_file",
    "utc_now",
    "write_run_record",
]
