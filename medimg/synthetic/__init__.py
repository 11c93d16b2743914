"""Seeded synthetic phantoms with answers known in advance.

Anatomy is defined in world coordinates (RAS+, millimetres) and sampled on any grid, so the
same phantom seen through an oblique, anisotropic or LPS-stored grid puts every structure at the
same place in the world: a test that mixes up axes gets a different answer.
"""

from __future__ import annotations

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
    "Ellipsoid",
    "Phantom",
    "XrayPhantom",
    "ct_phantom",
    "grid_affine",
    "mri_phantom",
    "xray_phantom",
]
