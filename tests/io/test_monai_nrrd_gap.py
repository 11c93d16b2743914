"""Why medimg reads NRRD itself: MONAI's LoadImage hands .nrrd to its DICOM reader here."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import numpy as np
import pytest

from medimg.io import load_volume, save_volume
from medimg.synthetic import ct_phantom, grid_affine


@pytest.mark.skipif(
    importlib.util.find_spec("itk") is not None or importlib.util.find_spec("nrrd") is not None,
    reason="MONAI reads NRRD correctly when itk or pynrrd is installed",
)
def test_monai_load_image_fails_on_nrrd_but_medimg_reads_it(tmp_path: Path) -> None:
    from monai.transforms import LoadImage

    shape = (10, 8, 6)
    phantom = ct_phantom(shape, affine=grid_affine(shape, (1.0, 1.5, 2.5), axcodes="LPS"), seed=0)
    path = save_volume(phantom.image.array, tmp_path / "ct.nrrd", like=phantom.image)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MONAI warns about optional decoder plugins first
        with pytest.raises(Exception, match="DICOM") as info:
            LoadImage()(str(path))
    assert "Dicom" in type(info.value).__name__ or "DICOM" in str(info.value)
    volume = load_volume(path)
    np.testing.assert_array_equal(volume.array, phantom.image.array)
    np.testing.assert_allclose(volume.affine, phantom.image.affine, atol=1e-9)
