"""The registry: one chain per modality, nnU-Net's choices, and equality with stock MONAI."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from medimg.errors import ConfigError, GeometryError
from medimg.fingerprint import Fingerprint
from medimg.io import Volume
from medimg.keys import Keys
from medimg.modality import Modality
from medimg.synthetic import ct_phantom, grid_affine, mri_phantom, xray_phantom
from medimg.transforms import PreprocessConfig, preprocessing_for
from medimg.transforms.modality import _CHAINS, target_spacing_for
from medimg.transforms.steps import LoadVolumed, resample_plan


def test_every_modality_has_a_chain() -> None:
    assert set(_CHAINS) == set(Modality)


def test_unknown_modality_suggests_the_right_one() -> None:
    with pytest.raises(ValueError, match=r"'ct' is not a modality; did you mean 'CT'\?"):
        preprocessing_for("ct", PreprocessConfig(target_spacing_mm=(1.0, 1.0, 1.0)))


def test_target_spacing_is_the_median_for_isotropic_data(
    make_fingerprint: Callable[..., Fingerprint],
) -> None:
    fp = make_fingerprint((0.8, 0.8, 1.0))
    assert target_spacing_for(PreprocessConfig(), fp) == (0.8, 0.8, 1.0)
    assert target_spacing_for(PreprocessConfig(target_spacing_mm=(2.0, 2.0, 2.0)), fp) == (
        2.0,
        2.0,
        2.0,
    )


def test_target_spacing_uses_the_10th_percentile_of_the_coarse_axis(
    make_fingerprint: Callable[..., Fingerprint],
) -> None:
    # median 0.7 x 0.7 x 5 mm is anisotropic (ratio 7.1): z gets its 10th percentile, 3 mm.
    fp = make_fingerprint((0.7, 0.7, 5.0), (0.6, 0.6, 3.0))
    assert target_spacing_for(PreprocessConfig(), fp) == (0.7, 0.7, 3.0)


def test_target_spacing_needs_a_source() -> None:
    with pytest.raises(
        ConfigError, match="target_spacing_mm must be set when no fingerprint is given"
    ):
        target_spacing_for(PreprocessConfig(), None)


def test_anisotropic_cases_use_nearest_through_plane() -> None:
    kinds = resample_plan(
        (0.7, 0.7, 2.5),
        (1.5, 1.5, 1.5),
        interp="cubic",
        lowres_interp="nearest",
        anisotropy_threshold=3.0,
    )
    assert kinds == ["cubic", "cubic", "nearest"]
    kinds = resample_plan(
        (1.0, 1.0, 2.5),
        (1.0, 1.0, 2.5),
        interp="cubic",
        lowres_interp="nearest",
        anisotropy_threshold=3.0,
    )
    assert kinds == ["cubic", "cubic", "cubic"]


def test_ct_chain_uses_fingerprint_clip_and_zscore(
    make_fingerprint: Callable[..., Fingerprint],
) -> None:
    ph = ct_phantom((20, 16, 10), (4.0, 4.5, 7.0), seed=2)
    fp = make_fingerprint((4.0, 4.5, 7.0), mean=100.0, std=50.0, p005=-100.0, p995=300.0)
    sample = preprocessing_for(Modality.CT, PreprocessConfig(), fp)(
        {"image": ph.image, "label": ph.label}
    )
    image = sample["image"]
    assert image.dtype == torch.float32
    # air (-1000 HU) clips to -100, i.e. (-100 - 100) / 50 = -4; nothing exceeds (300 - 100) / 50.
    assert float(image.min()) == pytest.approx(-4.0, abs=1e-5)
    assert float(image.max()) <= 4.0 + 1e-5
    np.testing.assert_allclose(image.affine.numpy(), sample[Keys.RECORD].grid_affine, atol=1e-6)


def test_ct_chain_needs_stats_or_a_window() -> None:
    with pytest.raises(
        ConfigError, match="CT normalisation needs the fingerprint's foreground statistics"
    ):
        preprocessing_for("CT", PreprocessConfig(target_spacing_mm=(1.0, 1.0, 1.0)))


def test_mr_chain_zscores_the_head(make_fingerprint: Callable[..., Fingerprint]) -> None:
    ph = mri_phantom((18, 20, 12), (10.0, 9.0, 12.0), seed=1)
    head = ph.label.array > 0
    image = np.where(head, ph.image.array, 0.0).astype(np.float32)  # skull-stripped: zero outside
    vol = Volume(array=image, affine=ph.image.affine, source=ph.image.source)
    cfg = PreprocessConfig(target_spacing_mm=(10.0, 9.0, 12.0))
    out = preprocessing_for("MR", cfg)({"image": vol, "label": ph.label})["image"]
    inside = torch.from_numpy(head)
    assert float(out[inside].mean()) == pytest.approx(0.0, abs=1e-4)
    assert float(out[inside].std(correction=0)) == pytest.approx(1.0, abs=1e-4)
    assert float(out[~inside].abs().max()) == 0.0


def test_mr_chain_with_a_mask_key() -> None:
    ph = mri_phantom((18, 20, 12), (10.0, 9.0, 12.0), seed=1)
    cfg = PreprocessConfig(
        target_spacing_mm=(10.0, 9.0, 12.0), mr_mask_key="mask", n4_bias_correction=True
    )
    sample = preprocessing_for("MR", cfg)({"image": ph.image, "mask": ph.label})
    mask = sample["mask"].as_tensor() > 0
    assert float(sample["image"][mask].mean()) == pytest.approx(0.0, abs=1e-4)
    assert float(sample["image"][mask].std(correction=0)) == pytest.approx(1.0, abs=1e-4)


def test_mr_chain_all_voxels() -> None:
    ph = mri_phantom((18, 20, 12), (10.0, 9.0, 12.0), seed=1)
    cfg = PreprocessConfig(target_spacing_mm=(10.0, 9.0, 12.0), mr_mask="all")
    out = preprocessing_for("MR", cfg)({"image": ph.image})["image"]
    assert float(out.mean()) == pytest.approx(0.0, abs=1e-4)


def test_xray_chain_windows_and_pads(tmp_path: Path) -> None:
    ph = xray_phantom((64, 80), seed=4)
    path = ph.write(tmp_path, "cxr")
    cfg = PreprocessConfig(xray_size_px=(100, 100), xray_equalize=True)
    sample = preprocessing_for("XR", cfg)({"image": str(path)})
    image = sample["image"]
    assert tuple(image.shape) == (1, 100, 100)
    assert Keys.RECORD in sample  # the X-ray chain records its grids too (test_xray_record.py)
    # 64 x 80 scaled by 1.25 to 80 x 100: 10 empty rows above and below.
    assert float(image[0, :10].abs().max()) == 0.0
    assert float(image[0, 90:].abs().max()) == 0.0
    # Equalised values fill [0, 1]; bilinear resizing only softens the extremes a little.
    assert 0.95 < float(image[0, 10:90].max()) <= 1.0
    assert float(image[0, 10:90].median()) == pytest.approx(0.5, abs=0.1)


def test_label_on_another_grid_is_refused() -> None:
    ph = ct_phantom((20, 16, 10), (4.0, 4.5, 7.0), seed=2)
    other = ct_phantom((20, 16, 10), (4.0, 4.5, 6.0), seed=2)
    chain = preprocessing_for(
        "CT", PreprocessConfig(target_spacing_mm=(4.0, 4.0, 4.0), hu_window="bone")
    )
    with pytest.raises(RuntimeError) as info:
        chain({"image": ph.image, "label": other.label})
    assert isinstance(info.value.__cause__, GeometryError)
    assert "label must be on the image's grid" in str(info.value.__cause__)


def test_load_refuses_a_reoriented_volume() -> None:
    ph = ct_phantom(
        (6, 5, 4), affine=grid_affine((6, 5, 4), (1.0, 1.0, 2.0), axcodes="LPS"), seed=0
    )
    with pytest.raises(GeometryError, match="needs a volume on its stored grid"):
        LoadVolumed(["image"])({"image": ph.image.to_ras()})


def test_steps_need_the_record() -> None:
    from medimg.transforms.steps import ToRASd

    with pytest.raises(GeometryError, match="must hold a PreprocessRecord"):
        ToRASd(["image"])({"image": np.zeros((1, 2, 2, 2))})


def _monai_chain(target: tuple[float, float, float]) -> Any:
    from monai.transforms import (
        Compose,
        EnsureChannelFirstd,
        LoadImaged,
        Orientationd,
        ScaleIntensityRanged,
        Spacingd,
    )

    return Compose(
        [
            LoadImaged("image", reader="NibabelReader"),
            EnsureChannelFirstd("image"),
            Orientationd("image", axcodes="RAS"),
            Spacingd("image", pixdim=target, mode="bilinear"),
            ScaleIntensityRanged(
                "image", a_min=-1000.0, a_max=1000.0, b_min=0.0, b_max=1.0, clip=True
            ),
        ]
    )


def test_ct_chain_equals_stock_monai_on_an_anisotropic_lps_file(tmp_path: Path) -> None:
    # Same grid convention as MONAI's Spacingd (voxel 0 keeps its centre), so the outputs agree
    # voxel for voxel. (For oblique float32 affines MONAI's compute_shape_offset misses the
    # corner test by rounding noise and centre-aligns instead, a shift of up to half a voxel;
    # medimg always keeps voxel 0, which the inversion tests rely on.)
    shape = (23, 19, 11)
    affine = grid_affine(shape, (1.3, 1.1, 3.2), axcodes="LPS")
    image_path, _ = ct_phantom(shape, affine=affine, seed=5).write(tmp_path, "ct")
    target = (1.0, 0.9, 1.6)
    cfg = PreprocessConfig(
        target_spacing_mm=target,
        image_interp="linear",
        lowres_axis_interp="linear",
        hu_window=(-1000.0, 1000.0),
    )
    ours = preprocessing_for("CT", cfg)({"image": str(image_path)})["image"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MONAI warns about its optional DICOM decoder plugins
        stock_chain = _monai_chain(target)
    stock = stock_chain({"image": str(image_path)})["image"]
    assert ours.shape == stock.shape
    np.testing.assert_allclose(ours.affine.numpy(), stock.affine.numpy(), atol=1e-4)
    np.testing.assert_allclose(ours.numpy(), stock.numpy(), atol=1e-4)
