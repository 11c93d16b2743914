"""Synthetic phantoms: seeded, on any grid, with answers known in advance."""

from __future__ import annotations

import numpy as np
import pytest

from medimg.errors import ConfigError
from medimg.synthetic import (
    CT_LABELS,
    Ellipsoid,
    ct_phantom,
    grid_affine,
    mri_phantom,
    xray_phantom,
)


def test_same_seed_same_phantom_other_seed_differs() -> None:
    a, b, c = ct_phantom(seed=7), ct_phantom(seed=7), ct_phantom(seed=8)
    np.testing.assert_array_equal(a.image.array, b.image.array)
    assert not np.array_equal(a.label.array, c.label.array)


def test_ct_intensities_and_labels() -> None:
    phantom = ct_phantom(seed=0, noise_hu=0.0)
    image, label = phantom.image.array[0], phantom.label.array[0]
    assert set(np.unique(label)) <= set(CT_LABELS)
    # Without noise every structure has its documented HU value.
    assert np.all(image[label == 1] == 120.0)
    assert np.all(image[label == 2] == 80.0)
    assert np.all(image[label == 3] == 10.0)
    assert image.min() == -1000.0
    # The lesion lies inside the liver ellipsoid by construction.
    lesion, liver = phantom.structures["lesion"], phantom.structures["liver"]
    offset = (np.asarray(lesion.center_mm) - liver.center_mm) / np.asarray(liver.radii_mm)
    assert np.all(np.abs(offset) <= 0.35)


def test_label_volume_matches_the_ellipsoid_in_mm3() -> None:
    # Spleen: label voxels x voxel volume ~ 4/3 pi a b c (discretisation error only).
    spacing = (1.5, 1.5, 2.0)
    shape = (120, 100, 70)
    phantom = ct_phantom(shape, spacing, seed=4, noise_hu=0.0)
    spleen = phantom.structures["spleen"]
    measured = float((phantom.label.array == 2).sum()) * np.prod(spacing)
    assert measured == pytest.approx(spleen.volume_mm3, rel=0.03)


def test_oblique_grid_samples_the_same_world_anatomy() -> None:
    # Voxel centres inside the liver label map to world points inside the liver ellipsoid.
    shape = (30, 26, 16)
    affine = grid_affine(shape, (5.0, 5.5, 8.0), axcodes="LPS", rotation_deg=(20.0, -10.0, 30.0))
    phantom = ct_phantom(shape, affine=affine, seed=2, noise_hu=0.0)
    ijk = np.argwhere(phantom.label.array[0] == 2)
    world = (affine[:3, :3] @ ijk.T) + affine[:3, 3:4]
    spleen = phantom.structures["spleen"]
    assert ijk.shape[0] > 10
    assert spleen.contains(world).all()


def test_grid_affine_centres_the_grid() -> None:
    affine = grid_affine(
        (11, 21, 5), (2.0, 1.0, 3.0), rotation_deg=(0.0, 0.0, 90.0), center_mm=(5.0, 6.0, 7.0)
    )
    centre = affine @ np.array([5.0, 10.0, 2.0, 1.0])
    np.testing.assert_allclose(centre[:3], [5.0, 6.0, 7.0], atol=1e-5)
    # 90 degrees about z: the first voxel axis (R before rotation) points to A.
    np.testing.assert_allclose(affine[:3, 0], [0.0, 2.0, 0.0], atol=1e-6)


def test_grid_affine_errors() -> None:
    with pytest.raises(
        ConfigError, match=r"spacing_mm must be 3 positive values, got \(1\.0, 0\.0, 1\.0\)"
    ):
        grid_affine((2, 2, 2), (1.0, 0.0, 1.0))
    with pytest.raises(
        ConfigError, match=r"axcodes must name R/L, A/P and S/I once each, got 'RRS'"
    ):
        grid_affine((2, 2, 2), (1.0, 1.0, 1.0), axcodes="RRS")


def test_mri_background_is_nonzero_and_bias_is_recorded() -> None:
    phantom = mri_phantom(seed=1)
    image, label = phantom.image.array[0], phantom.label.array[0]
    assert np.all(image[label == 0] > 0)  # magnitude images: no exact zeros
    bias = phantom.extras["bias_field"]
    assert bias.shape == image.shape
    assert 0.6 < bias.min() < 1.0 < bias.max() < 1.6
    # The lesion is brighter than tissue once the bias field is divided out.
    flat = image / bias
    assert np.median(flat[label == 2]) > 1.5 * np.median(flat[label == 1])


def test_xray_classes() -> None:
    normal, nodule = xray_phantom(label=0, seed=3), xray_phantom(label=1, seed=3)
    assert normal.nodule is None
    assert nodule.nodule is not None
    assert normal.image.array.dtype == np.uint16
    assert {xray_phantom(seed=s).label for s in range(12)} == {0, 1}
    with pytest.raises(ConfigError, match=r"label must be 0 or 1, got 2"):
        xray_phantom(label=2)


def test_ellipse_area() -> None:
    assert Ellipsoid((0.0, 0.0), (2.0, 3.0)).volume_mm3 == pytest.approx(6 * np.pi)
