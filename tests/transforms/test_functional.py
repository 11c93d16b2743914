"""Pure intensity and cropping functions: hand-worked answers and every error."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medimg.errors import ConfigError
from medimg.synthetic import mri_phantom
from medimg.transforms import filters
from medimg.transforms import functional as fn


def test_window_maps_level_to_half() -> None:
    # soft tissue: level 40, width 400 -> [-160, 240]; 40 HU is the middle.
    out = fn.window(torch.tensor([[-1000.0, 40.0, 3000.0]]), low=-160.0, high=240.0)
    assert out.tolist() == [[0.0, 0.5, 1.0]]


def test_window_needs_high_above_low() -> None:
    with pytest.raises(ConfigError, match="window must have high > low"):
        fn.window(torch.zeros(1, 2), low=10.0, high=10.0)


def test_window_inplace_reuses_memory_and_default_does_not() -> None:
    x = torch.tensor([[0.0, 100.0]])
    out = fn.window(x, low=0.0, high=100.0)
    assert x.tolist() == [[0.0, 100.0]]
    assert fn.window(x, low=0.0, high=100.0, inplace=True) is x
    assert out.tolist() == [[0.0, 1.0]]


def test_clip_zscore_per_channel() -> None:
    x = torch.tensor([[-1000.0, 100.0], [5.0, 7.0]])
    out = fn.clip_zscore(x, low=[-200.0, 0.0], high=[200.0, 6.0], mean=[0.0, 4.0], std=[100.0, 2.0])
    assert out.tolist() == [[-2.0, 1.0], [0.5, 1.0]]


def test_clip_zscore_needs_stats_for_every_channel() -> None:
    with pytest.raises(ConfigError, match=r"one low/high/mean/std per channel \(2\)"):
        fn.clip_zscore(torch.zeros(2, 3), low=[0.0], high=[1.0], mean=[0.0], std=[1.0])


def test_clip_zscore_needs_positive_std() -> None:
    with pytest.raises(ConfigError, match="std must be > 0"):
        fn.clip_zscore(torch.zeros(1, 3), low=[0.0], high=[1.0], mean=[0.0], std=[0.0])


def test_zscore_nonzero_mask_leaves_background_zero() -> None:
    out = fn.zscore_masked(torch.tensor([[0.0, 2.0, 4.0, 0.0]]))
    assert out.tolist() == [[0.0, -1.0, 1.0, 0.0]]


def test_zscore_given_mask() -> None:
    x = torch.tensor([[10.0, 1.0, 3.0]])
    mask = torch.tensor([[False, True, True]])
    assert fn.zscore_masked(x, mask=mask).tolist() == [[0.0, -1.0, 1.0]]


def test_zscore_of_a_constant_image_raises() -> None:
    with pytest.raises(ValueError, match="channel 0 is constant"):
        fn.zscore_masked(torch.full((1, 4, 4), 7.0))


def test_zscore_empty_mask_raises() -> None:
    with pytest.raises(ValueError, match="mask of channel 0 is empty"):
        fn.zscore_masked(torch.zeros(1, 4))


def test_percentile_window_errors() -> None:
    with pytest.raises(ConfigError, match="0 <= low_pct < high_pct <= 100"):
        fn.percentile_window(torch.zeros(1, 4), low_pct=50.0, high_pct=10.0)
    with pytest.raises(ValueError, match="the image is flat"):
        fn.percentile_window(torch.ones(1, 4), low_pct=1.0, high_pct=99.0)


def test_equalize_histogram_is_monotone_and_in_unit_range() -> None:
    x = torch.from_numpy(np.random.default_rng(0).random((1, 30, 20), dtype=np.float32) ** 3)
    out = fn.equalize_histogram(x)
    order = torch.argsort(x.flatten())
    assert bool((out.flatten()[order].diff() >= 0).all())
    assert float(out.max()) == 1.0
    # Equalised values are close to uniform: the median lands near 0.5.
    assert abs(float(out.median()) - 0.5) < 0.05
    with pytest.raises(ConfigError, match="bins must be >= 2"):
        fn.equalize_histogram(x, bins=1)


def test_resize_with_pad_keeps_aspect_ratio() -> None:
    # 40 x 20 into 64 x 64: scale 1.6 -> 64 x 32, padded by 16 columns each side.
    out = fn.resize_with_pad(torch.ones(1, 40, 20), size_px=(64, 64))
    assert out.shape == (1, 64, 64)
    assert out[0, :, 16:48].min() > 0.99
    assert float(out[0, :, :16].abs().max()) == 0.0
    assert float(out[0, :, 48:].abs().max()) == 0.0
    with pytest.raises(ConfigError, match=r"need a \(C, X, Y\) image and a positive size"):
        fn.resize_with_pad(torch.ones(1, 4, 4, 4), size_px=(8, 8))


def test_foreground_box_and_margin() -> None:
    x = np.full((1, 12, 10, 8), -1000.0)
    x[0, 2:5, 3:6, 1:4] = 40.0
    assert fn.foreground_box(x, above=-500.0) == ((2, 5), (3, 6), (1, 4))
    assert fn.foreground_box(x, above=-500.0, margin_vox=2) == ((0, 7), (1, 8), (0, 6))
    with pytest.raises(ValueError, match="no voxel is above the foreground threshold"):
        fn.foreground_box(x, above=100.0)


def test_n4_reduces_the_bias_field() -> None:
    ph = mri_phantom((24, 28, 16), (7.0, 6.0, 8.0), seed=3, bias_strength=0.6)
    image = torch.from_numpy(ph.image.array)
    tissue = torch.from_numpy(ph.label.array == 1)
    before = image[tissue].std() / image[tissue].mean()
    out = filters.n4_bias_correct(image, shrink_factor=2, iterations=20)
    after = out[tissue].std() / out[tissue].mean()
    assert after < 0.8 * before
    with pytest.raises(ConfigError, match="shrink_factor and iterations must be >= 1"):
        filters.n4_bias_correct(image, shrink_factor=0)
