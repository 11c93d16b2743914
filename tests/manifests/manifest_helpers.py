"""Helpers for manifest tests: tiny datasets: 12 x 10 x 8 voxels, 1 x 1 x 2.5 mm, oblique, LPS."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medimg.io import save_volume
from medimg.synthetic import grid_affine

SHAPE = (12, 10, 8)
SPACING_MM = (1.0, 1.0, 2.5)
AFFINE = grid_affine(SHAPE, SPACING_MM, axcodes="LPS", rotation_deg=(0.0, 0.0, 15.0))


def write_pair(root: Path, case_id: str, *, label_value: int = 1) -> tuple[str, str]:
    """Image with a 3x3x3 box of 100 on 0, label with the box = label_value."""
    image = np.zeros(SHAPE, np.float32)
    image[2:5, 3:6, 1:4] = 100.0
    label = np.zeros(SHAPE, np.uint8)
    label[2:5, 3:6, 1:4] = label_value
    save_volume(image[None], root / "images" / f"{case_id}.nii.gz", like=AFFINE)
    save_volume(label[None], root / "labels" / f"{case_id}.nii.gz", like=AFFINE)
    return f"images/{case_id}.nii.gz", f"labels/{case_id}.nii.gz"
