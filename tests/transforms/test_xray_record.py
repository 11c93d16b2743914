"""The X-ray chain's preprocessing record: predictions come back onto the stored 2D grid exactly.

The radiograph phantom is a 2D MetaImage (LPS on disk, so both axes point to L and P and the
chain's reorientation flips both), 30 x 20 pixels of 0.7 x 1.3 mm, with a known mask.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from medimg.io import read_image
from medimg.keys import Keys
from medimg.modality import Modality
from medimg.transforms import PreprocessConfig, PreprocessRecord, preprocessing_for, to_source_grid
from medimg.transforms.cache import chain_key

SHAPE, SPACING = (30, 20), (0.7, 1.3)


def _write(array: np.ndarray, path: Path) -> Path:
    img = sitk.GetImageFromArray(array.T)  # ours (X, Y) -> ITK's (y, x)
    img.SetSpacing(SPACING)
    img.SetOrigin((12.5, -40.0))
    sitk.WriteImage(img, str(path))
    return path


@pytest.fixture
def radiograph(tmp_path: Path) -> tuple[Path, Path, np.ndarray]:
    rng = np.random.default_rng(3)
    image = (1000 + 50 * rng.standard_normal(SHAPE)).astype(np.float32)
    mask = np.zeros(SHAPE, dtype=np.uint8)
    mask[4:11, 3:9] = 1  # off-centre, so a wrong flip or swap moves it
    mask[20:27, 12:18] = 2
    image[mask > 0] += 400
    return _write(image, tmp_path / "cxr.mha"), _write(mask, tmp_path / "mask.mha"), mask


def test_stored_lps_reads_as_l_and_p(radiograph: tuple[Path, Path, np.ndarray]) -> None:
    vol = read_image(radiograph[0], ndim=2)
    assert vol.source.axcodes == ("L", "P")
    assert vol.source.spacing_mm == pytest.approx(SPACING)


@pytest.mark.parametrize("size_px", [(64, 64), (100, 70), (61, 47)])
def test_mask_round_trip_is_exact(
    radiograph: tuple[Path, Path, np.ndarray], size_px: tuple[int, int]
) -> None:
    image_path, mask_path, mask = radiograph
    cfg = PreprocessConfig(xray_size_px=size_px)
    sample = preprocessing_for("XR", cfg)({"image": str(image_path), "label": str(mask_path)})
    record = sample[Keys.RECORD]
    assert isinstance(record, PreprocessRecord)
    assert record.source_shape == SHAPE
    assert record.grid_shape == size_px
    assert tuple(sample["image"].shape) == (1, *size_px) == tuple(sample["label"].shape)
    assert record.ornt == ((0, -1), (1, -1))  # LP -> RA: both axes flipped, none swapped
    back = to_source_grid(sample["label"], record, interp="nearest")
    assert back.dtype == torch.uint8
    assert torch.equal(back[0], torch.from_numpy(mask))
    # Slab by slab along the stored last axis gives the same map.
    slabs = [to_source_grid(sample["label"], record, interp="nearest", z_range=(z0, z1))
             for z0, z1 in ((0, 7), (7, 14), (14, 20))]  # fmt: skip
    assert torch.equal(torch.cat(slabs, dim=2)[0], torch.from_numpy(mask))


def test_mask_keeps_its_world_position(radiograph: tuple[Path, Path, np.ndarray]) -> None:
    image_path, mask_path, mask = radiograph
    sample = preprocessing_for("XR", PreprocessConfig(xray_size_px=(64, 64)))(
        {"image": str(image_path), "label": str(mask_path)}
    )
    record = sample[Keys.RECORD]

    def centre_mm(label: np.ndarray, affine: np.ndarray, value: int) -> np.ndarray:
        idx = np.argwhere(label == value).mean(axis=0)
        return (affine @ np.array([*idx, 0.0, 1.0]))[:3]

    for value in (1, 2):
        source = centre_mm(mask, record.source_affine, value)
        grid = centre_mm(sample["label"][0].numpy(), record.grid_affine, value)
        # Nearest-neighbour edges move a centre by under half a source pixel.
        assert np.abs(source - grid).max() < 0.5 * max(SPACING)
    # Pixels keep their (non-square) aspect: both axes enlarged by the same factor.
    assert record.grid_spacing_mm[0] / record.grid_spacing_mm[1] == pytest.approx(
        SPACING[0] / SPACING[1], rel=0.03
    )


def test_image_unchanged_by_the_record(radiograph: tuple[Path, Path, np.ndarray]) -> None:
    # The image is what resize-with-pad made of the windowed, reoriented radiograph.
    from medimg.transforms import functional as fn

    sample = preprocessing_for("XR", PreprocessConfig(xray_size_px=(64, 64)))(
        {"image": str(radiograph[0])}
    )
    raw = torch.from_numpy(np.ascontiguousarray(read_image(radiograph[0], ndim=2).to_ras().array))
    expected = fn.resize_with_pad(
        fn.percentile_window(raw.float(), low_pct=0.5, high_pct=99.5), size_px=(64, 64)
    )
    assert torch.equal(sample["image"], expected)


def test_xray_key_changes_with_the_new_steps() -> None:
    base = chain_key(Modality.XR, PreprocessConfig(), None)
    for cfg in (PreprocessConfig(denoise=True), PreprocessConfig(adaptive_equalize=True)):
        assert chain_key(Modality.XR, cfg, None) != base
