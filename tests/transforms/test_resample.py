"""Separable resampler: known answers, equality with scipy and with MONAI's Spacingd."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from medimg.errors import ConfigError
from medimg.transforms.resample import (
    axis_taps,
    resample_onehot,
    resample_separable,
    spacing_coords,
)


def test_halving_spacing_doubles_extent() -> None:
    # 8 voxels at 2.5 mm span 7 * 2.5 = 17.5 mm between centres; at 1.25 mm that is 14 gaps,
    # so 15 voxels, and voxel 0 keeps its centre.
    coords = spacing_coords(8, 2.5, 1.25)
    assert len(coords) == 15
    assert coords[0] == 0.0
    assert coords[-1] == 7.0


def test_spacing_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="spacings must be > 0 mm"):
        spacing_coords(8, 0.0, 1.0)


@pytest.mark.parametrize("interp", ["nearest", "linear", "cubic"])
def test_taps_weights_sum_to_one(interp: str) -> None:
    coords = np.linspace(-1.0, 10.0, 37)
    index, weight = axis_taps(coords, 9, interp)  # type: ignore[arg-type]
    assert index.min() >= 0
    assert index.max() <= 8
    np.testing.assert_allclose(weight.sum(axis=0), 1.0, atol=1e-6)


def test_unknown_interp_is_refused() -> None:
    with pytest.raises(ConfigError, match="interp must be one of"):
        axis_taps(np.zeros(3), 4, "bicubic")  # type: ignore[arg-type]


def test_coordinate_count_must_match_axes() -> None:
    with pytest.raises(ConfigError, match="one coordinate vector and one interp per spatial axis"):
        resample_separable(torch.zeros(1, 4, 4), [np.arange(4.0)], "linear")


def _random_case(seed: int) -> tuple[torch.Tensor, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.normal(size=(2, 13, 11, 7)).astype(np.float32))
    coords = [
        spacing_coords(13, 1.0, 1.7),
        spacing_coords(11, 0.8, 0.5),
        spacing_coords(7, 3.0, 1.25),
    ]
    return x, coords


def test_linear_equals_scipy_map_coordinates() -> None:
    x, coords = _random_case(0)
    out = resample_separable(x, coords, "linear")
    grid = np.meshgrid(*coords, indexing="ij")
    for c in range(2):
        expected = ndimage.map_coordinates(
            x[c].numpy().astype(np.float64), grid, order=1, mode="nearest"
        )
        np.testing.assert_allclose(out[c].numpy(), expected, atol=1e-5)


def test_cubic_reproduces_a_quadratic_inside() -> None:
    # Keys' cubic convolution (a = -0.5) is exact for polynomials up to degree 2 away from the border.
    i = np.arange(20, dtype=np.float64)
    x = torch.from_numpy((0.5 * i**2 - 3 * i + 2).astype(np.float32))[None, :, None]
    coords = np.linspace(1.0, 17.9, 30)
    out = resample_separable(x, [coords, np.zeros(1)], "cubic")[0, :, 0].numpy()
    np.testing.assert_allclose(out, 0.5 * coords**2 - 3 * coords + 2, rtol=1e-5, atol=1e-3)


def test_memory_layout_and_flips_do_not_change_the_answer() -> None:
    x, coords = _random_case(1)
    expected = resample_separable(x.contiguous(), coords, "cubic")
    fortran = torch.from_numpy(np.asfortranarray(x.numpy().transpose(0, 3, 2, 1))).permute(
        0, 3, 2, 1
    )
    assert not fortran.is_contiguous()
    torch.testing.assert_close(resample_separable(fortran, coords, "cubic"), expected)


def test_nearest_keeps_dtype_and_values() -> None:
    lab = torch.tensor([[[0, 1, 2, 3]]], dtype=torch.uint8)
    out = resample_separable(lab, [np.zeros(1), np.array([0.0, 0.49, 0.51, 3.0])], "nearest")
    assert out.dtype == torch.uint8
    assert out.tolist() == [[[0, 0, 1, 3]]]


def test_per_axis_interp_uses_nearest_on_the_coarse_axis() -> None:
    x = torch.arange(4.0).reshape(1, 1, 4)
    out = resample_separable(x, [np.zeros(1), np.array([0.4, 1.6])], ["linear", "nearest"])
    assert out.tolist() == [[[0.0, 2.0]]]


def test_onehot_labels_keep_their_values() -> None:
    rng = np.random.default_rng(2)
    lab = torch.from_numpy(rng.integers(0, 4, size=(1, 9, 8, 5)).astype(np.uint8) * 3)
    coords = [spacing_coords(9, 1.0, 1.0), spacing_coords(8, 1.0, 1.0), spacing_coords(5, 2.0, 1.0)]
    out = resample_onehot(lab, coords)
    assert out.dtype == torch.uint8
    assert set(torch.unique(out).tolist()) <= {0, 3, 6, 9}
    # On the input voxels (every other z) the labels are unchanged.
    assert torch.equal(out[..., ::2], lab)


def test_onehot_needs_a_value() -> None:
    with pytest.raises(ConfigError, match="at least one label value"):
        resample_onehot(torch.zeros(1, 3, dtype=torch.uint8), [np.arange(3.0)], values=[])
