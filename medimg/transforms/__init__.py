"""Preprocessing chains, augmentation sets and the way back to the source grid.

Modules
-------
modality
    :func:`preprocessing_for`, THE registry of one chain per modality.
config
    :class:`PreprocessConfig` and the named CT windows.
functional
    Pure intensity and cropping operations (windows, z-scores, denoising, equalisation).
resample
    Separable float32 resampling (the fast path of every chain).
steps
    The record-keeping steps (load, RAS, crop, resample, X-ray resize-with-pad, spacing-aware
    intensity steps).
record
    :class:`PreprocessRecord`: every grid a sample passed through.
inversion
    :func:`to_source_grid`: a prediction back onto the stored grid, whole or slab by slab.
cache
    Persistent on-disk cache of a chain's output, keyed by files and parameters.
augment
    :func:`augmentation_for`: seeded training augmentation that records what it drew.
"""

from __future__ import annotations

from medimg.transforms.augment import AugmentConfig, augmentation_for
from medimg.transforms.config import HU_WINDOWS, PreprocessConfig
from medimg.transforms.inversion import to_source_grid
from medimg.transforms.modality import preprocessing_for
from medimg.transforms.record import PreprocessRecord

__all__ = [
    "HU_WINDOWS",
    "AugmentConfig",
    "PreprocessConfig",
    "PreprocessRecord",
    "augmentation_for",
    "preprocessing_for",
    "to_source_grid",
]
