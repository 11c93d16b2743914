"""Seeded synthetic phantoms with answers known in advance.

Anatomy is defined in world coordinates (RAS+, millimetres) and sampled on any grid, so the
same phantom seen through an oblique, anisotropic or LPS-stored grid puts every structure at the
same place in the world: a test that mixes up axes gets a different answer. The detection
phantoms (:mod:`medimg.synthetic.detection`) carry nodule boxes known by construction.
"""

from __future__ import annotations

from medimg.synthetic.detection import (
    ChestSettings,
    DetectionPhantom,
    Nodule,
    Vessel,
    chest_ct_phantom,
)
from medimg.synthetic.detection_datasets import write_ct_detection_dataset
from medimg.synthetic.nodule_insertion import insert_nodules
from medimg.synthetic.phantoms import (
    CT_LABELS,
    MR_LABELS,
    Ellipsoid,
    Phantom,
    XrayPhantom,
    ct_phantom,
    grid_affine,
    mri_phantom,
    xray_phantom,
)

__all__ = [
    "CT_LABELS",
    "MR_LABELS",
    "ChestSettings",
    "DetectionPhantom",
    "Ellipsoid",
    "Nodule",
    "Phantom",
    "Vessel",
    "XrayPhantom",
    "chest_ct_phantom",
    "ct_phantom",
    "grid_affine",
    "insert_nodules",
    "mri_phantom",
    "write_ct_detection_dataset",
    "xray_phantom",
]
