"""Synthetic DICOM series with known arrays and affines."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medimg.synthetic import ct_phantom, grid_affine
from medimg.synthetic.dicom import DicomSeriesSpec, write_dicom_series

SHAPE = (12, 10, 6)
SPACING_MM = (0.8, 0.9, 2.5)


@pytest.fixture
def oblique_ct(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """An oblique, LPS-stored, anisotropic CT written in shuffled file order.

    Returns the folder, the expected HU array (rounded: DICOM stores integers) and the affine.
    """
    affine = grid_affine(SHAPE, SPACING_MM, axcodes="LPS", rotation_deg=(12.0, -7.0, 20.0))
    phantom = ct_phantom(SHAPE, SPACING_MM, affine=affine, seed=3)
    expected = np.round(phantom.image.array[0]).astype(np.int16)
    folder = tmp_path / "ct"
    spec = DicomSeriesSpec(modality="CT", rescale_intercept=-1024.0, description="ABD 2.5mm")
    write_dicom_series(expected, affine, folder, spec, shuffle_seed=7)
    return folder, expected, affine


def linear_z(shape: tuple[int, int, int], affine: np.ndarray) -> np.ndarray:
    """Values 10 * (world z in mm) + 500 on the grid: trilinear resampling keeps them exact."""
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=0)
    z = np.einsum("j,j...->...", affine[2, :3], ijk) + affine[2, 3]
    return 10.0 * z + 500.0
