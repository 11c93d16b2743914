"""Training augmentation: seeded, recorded, label-safe, and one set per modality."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
import torch

from medimg.errors import ConfigError
from medimg.keys import Keys
from medimg.modality import Modality
from medimg.transforms.augment import (
    _AUGMENTS,
    AugmentConfig,
    RecordedRandom,
    augmentation_for,
)

ALWAYS = AugmentConfig(
    p_affine=1.0,
    p_noise=1.0,
    p_blur=1.0,
    p_gamma=1.0,
    p_contrast=1.0,
    p_bias=1.0,
    p_lowres=1.0,
    flip_axes=(2,),
    p_flip=1.0,
    rotation_deg=20.0,
)


def _sample(ndim: int = 3) -> dict[str, Any]:
    shape = (14, 12, 10)[:ndim]
    rng = np.random.default_rng(0)
    image = torch.from_numpy(rng.normal(size=(1, *shape)).astype(np.float32))
    label = torch.zeros((1, *shape), dtype=torch.uint8)
    label[(slice(None), *(slice(3, 9) for _ in shape))] = 2
    return {"image": image, "label": label}


def _run(chain: Any, sample: dict[str, Any]) -> dict[str, Any]:
    return dict(chain(sample))


def test_every_modality_has_an_augmentation_set() -> None:
    assert set(_AUGMENTS) == set(Modality)


def test_same_seed_same_draws_different_seed_different() -> None:
    a = _run(augmentation_for("MR", ALWAYS, seed=3), _sample())
    b = _run(augmentation_for("MR", ALWAYS, seed=3), _sample())
    c = _run(augmentation_for("MR", ALWAYS, seed=4), _sample())
    assert a[Keys.HISTORY] == b[Keys.HISTORY]
    assert torch.equal(torch.as_tensor(a["image"]), torch.as_tensor(b["image"]))
    assert a[Keys.HISTORY] != c[Keys.HISTORY]


def test_history_records_sampled_parameters_within_their_ranges() -> None:
    out = _run(augmentation_for(Modality.MR, ALWAYS, seed=1), _sample())
    history = {e["name"]: e for e in out[Keys.HISTORY]}
    assert list(history) == [
        "affine",
        "flip_2",
        "bias_field",
        "noise",
        "blur",
        "contrast",
        "gamma",
        "low_resolution",
    ]
    assert all(e["applied"] for e in history.values())
    assert all(abs(r) <= np.radians(20.0) + 1e-9 for r in history["affine"]["rotate_rad"])
    assert all(0.85 <= s <= 1.25 for s in history["affine"]["scale"])
    assert history["flip_2"]["axis"] == [2]
    assert 0.7 <= history["gamma"]["gamma"] <= 1.5
    assert all(0.5 <= s <= 1.0 for s in history["blur"]["sigma_vox"])
    assert 0.5 <= history["low_resolution"]["zoom"] <= 1.0
    assert history["noise"]["std"] == 0.1


def test_ct_has_no_bias_field_and_no_flip_by_default() -> None:
    out = _run(augmentation_for("CT", seed=0), _sample())
    names = [e["name"] for e in out[Keys.HISTORY]]
    assert "bias_field" not in names
    assert not any(n.startswith("flip") for n in names)


def test_labels_stay_labels_and_follow_the_image() -> None:
    cfg = AugmentConfig(
        p_affine=1.0,
        p_noise=0.0,
        p_blur=0.0,
        p_gamma=0.0,
        p_contrast=0.0,
        p_lowres=0.0,
        rotation_deg=30.0,
    )
    sample = _sample()
    sample["image"] = sample["label"].float()  # image = label: spatial transforms must agree
    out = _run(augmentation_for("CT", cfg, seed=5), sample)
    label = torch.as_tensor(out["label"])
    assert set(torch.unique(label).tolist()) <= {0, 2}
    image = torch.as_tensor(out["image"])
    agree = ((image > 1.0) == (label == 2)).float().mean()
    assert float(agree) > 0.97


def test_flip_recorded_and_applied() -> None:
    cfg = AugmentConfig(
        flip_axes=(0,),
        p_flip=1.0,
        p_affine=0.0,
        p_noise=0.0,
        p_blur=0.0,
        p_gamma=0.0,
        p_contrast=0.0,
        p_lowres=0.0,
    )
    sample = _sample()
    out = _run(augmentation_for("CT", cfg, seed=0), sample)
    assert torch.equal(torch.as_tensor(out["image"]), sample["image"].flip(1))


def test_xray_set_is_2d() -> None:
    cfg = dataclasses.replace(ALWAYS, flip_axes=())
    out = _run(augmentation_for("XR", cfg, seed=2), {"image": _sample(2)["image"]})
    assert tuple(out["image"].shape) == (1, 14, 12)
    assert out[Keys.HISTORY][0]["name"] == "affine"
    with pytest.raises(ConfigError, match=r"flip_axes must name axes of a 2D image \(0..1\)"):
        augmentation_for("XR", ALWAYS)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"p_noise": 1.5}, r"p_noise must be a probability in \[0, 1\], got 1.5"),
        ({"gamma_range": (1.5, 0.7)}, r"gamma_range must be \(low, high\) with 0 < low <= high"),
        ({"flip_axes": (3,)}, r"flip_axes must name spatial axes 0, 1 or 2"),
        ({"rotation_deg": -1.0}, r"rotation_deg, noise_std and contrast_range must be >= 0"),
    ],
)
def test_invalid_config(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        AugmentConfig(**kwargs)


def test_only_known_transforms_can_be_recorded() -> None:
    with pytest.raises(ConfigError, match="transform must be one of"):
        RecordedRandom(object(), "mystery")


def test_elastic_is_recorded() -> None:
    cfg = AugmentConfig(
        p_elastic=1.0,
        p_affine=0.0,
        p_noise=0.0,
        p_blur=0.0,
        p_gamma=0.0,
        p_contrast=0.0,
        p_lowres=0.0,
    )
    out = _run(augmentation_for("CT", cfg, seed=0), _sample())
    entry = next(e for e in out[Keys.HISTORY] if e["name"] == "elastic")
    assert 5.0 <= entry["sigma_vox"] <= 8.0
    out2d = _run(augmentation_for("XR", cfg, seed=0), {"image": _sample(2)["image"]})
    assert any(e["name"] == "elastic" and e["applied"] for e in out2d[Keys.HISTORY])
