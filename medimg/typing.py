"""Type aliases that carry meaning (units and axis order) across medimg."""

from __future__ import annotations

import os
from typing import TypeAlias

import numpy as np
from numpy.typing import NDArray

__all__ = ["Affine", "PathLike", "Shape3D", "SpacingMM"]

PathLike: TypeAlias = str | os.PathLike[str]
SpacingMM: TypeAlias = tuple[float, ...]
"""Voxel size in millimetres, one value per spatial axis, in the array's axis order."""
Shape3D: TypeAlias = tuple[int, int, int]
Affine: TypeAlias = NDArray[np.float64]
"""4x4 voxel-to-world matrix, world in RAS+ millimetres (MONAI's and NIfTI's convention)."""
