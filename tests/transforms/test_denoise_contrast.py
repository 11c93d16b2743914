"""Denoising and adaptive equalisation: the pure functions and their place in the chains."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medimg.errors import ConfigError
from medimg.modality import Modality
from medimg.synthetic import ct_phantom, mri_phantom
from medimg.transforms import PreprocessConfig, preprocessing_for
from medimg.transforms import filters as fn
from medimg.transforms.cache import chain_key


def _step(shape: tuple[int, ...], *, axis: int, at: int, contrast: float, seed: int) -> tuple:
    """A step edge of ``contrast`` along ``axis`` at index ``at``, plus unit Gaussian noise x 20."""
    clean = torch.zeros((1, *shape))
    index = [slice(None)] * (len(shape) + 1)
    index[axis + 1] = slice(at, None)
    clean[tuple(index)] = contrast
    noise = torch.from_numpy(np.random.default_rng(seed).normal(0, 20.0, shape).astype(np.float32))
    return clean, clean + noise[None]


def _crossing(image: torch.Tensor, axis: int, low: float, high: float) -> float:
    """Where the mean profile across the edge crosses the half height (linear interpolation)."""
    others = tuple(a for a in range(1, image.ndim) if a != axis + 1)
    profile = image.mean(dim=others)[0].numpy()
    t = (profile - low) / (high - low)
    return float(np.interp(0.5, t, np.arange(len(t))))


@pytest.mark.parametrize("spacing", [(1.0, 1.0), (0.7, 2.0)])
def test_constant_image_stays_constant(spacing: tuple[float, float]) -> None:
    flat = torch.full((2, 9, 7), 42.0)
    assert torch.equal(fn.denoise_anisotropic(flat, spacing_mm=spacing), flat)
    assert torch.equal(fn.adaptive_equalize(flat, spacing_mm=spacing), flat)


def test_denoise_2d_noise_drops_edge_stays() -> None:
    # Step of 100 at x = 32 in 64 x 48 pixels of 0.8 x 0.8 mm, noise std 20.
    clean, noisy = _step((64, 48), axis=0, at=32, contrast=100.0, seed=0)
    out = fn.denoise_anisotropic(noisy, spacing_mm=(0.8, 0.8))
    # Measured (seed 0, defaults 5 iterations, conductance 1.5): std 19.7 -> 6.9, x2.8.
    assert float(noisy[0, 4:26].std() / out[0, 4:26].std()) > 2.5
    # The half-height crossing stays between pixels 31 and 32 (at 31.5 in the clean step).
    assert _crossing(out, 0, 0.0, 100.0) == pytest.approx(31.5, abs=0.25)
    # Edge-preserving: the mean error next to the edge falls (a Gaussian would raise it).
    assert float((out - clean)[0, 29:35].abs().mean()) < float(
        (noisy - clean)[0, 29:35].abs().mean()
    )


def test_denoise_3d_respects_anisotropic_spacing() -> None:
    # Pure noise on (1, 1, 4) mm voxels: diffusion in mm couples z neighbours less.
    noise = np.random.default_rng(1).normal(0, 1, (24, 24, 24)).astype(np.float32)

    def corr(spacing: tuple[float, float, float]) -> list[float]:
        out = fn.denoise_anisotropic(torch.from_numpy(noise)[None], spacing_mm=spacing)[0].numpy()
        pairs = [(np.moveaxis(out, a, 0)[:-1], np.moveaxis(out, a, 0)[1:]) for a in range(3)]
        return [float(np.corrcoef(u.ravel(), v.ravel())[0, 1]) for u, v in pairs]

    # Neighbour correlation, measured: (1, 1, 4) mm 0.424, 0.425, 0.263; (1, 1, 1) mm 0.371,
    # 0.373, 0.374. A swapped spacing would make x the weakly coupled axis.
    x, y, z = corr((1.0, 1.0, 4.0))
    assert x == pytest.approx(y, abs=0.02)
    assert x > z + 0.1
    iso = corr((1.0, 1.0, 1.0))
    assert max(iso) - min(iso) < 0.02


@pytest.mark.parametrize("spacing", [(3.0, 3.0, 7.0), (0.1, 0.1, 0.3)])
def test_denoise_keeps_itk_quiet(
    spacing: tuple[float, ...], capfd: pytest.CaptureFixture[str]
) -> None:
    # ITK prints an instability warning to stderr when the time step is above its limit.
    fn.denoise_anisotropic(torch.rand(1, 12, 12, 6), spacing_mm=spacing)
    assert "WARNING" not in capfd.readouterr().err


def test_denoise_3d_edge_along_z() -> None:
    _clean, noisy = _step((16, 16, 20), axis=2, at=10, contrast=100.0, seed=2)
    out = fn.denoise_anisotropic(noisy, spacing_mm=(0.9, 0.9, 2.5))
    # Measured: std 20.0 -> 6.9 (x2.9), half height at 9.49.
    assert float(noisy[0, :, :, :8].std() / out[0, :, :, :8].std()) > 2.5
    assert _crossing(out, 2, 0.0, 100.0) == pytest.approx(9.5, abs=0.25)


def _striped(shape: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Mid-grey image with black and white bands, and a patch of 0.48 / 0.52 stripes."""
    x = torch.full((1, *shape), 0.5)
    x[0, :8], x[0, -8:] = 0.0, 1.0
    x[0, 20:40, 10:30] = 0.48
    x[0, 20:40:4, 10:30] = x[0, 21:40:4, 10:30] = 0.52
    return x, x[0, 20:40, 10:30] > 0.5


def test_adaptive_equalize_raises_local_contrast() -> None:
    x, bright = _striped((60, 40))
    out = fn.adaptive_equalize(x, spacing_mm=(1.0, 1.0), radius_mm=4.0)
    patch, before = out[0, 20:40, 10:30], 0.04
    gain = float(patch[bright].mean() - patch[~bright].mean()) / before
    assert gain > 3.0  # measured 6.3 (ITK's alpha = beta = 0.3, radius 4 px)
    assert float(out.min()) >= 0.0
    assert float(out.max()) <= 1.0
    # The stripes keep their place: bright rows stay bright.
    assert bool(patch[bright].min() > patch[~bright].max())


def test_adaptive_radius_in_mm_per_axis() -> None:
    # 1 x 4 mm pixels with an 8 mm radius = 8 x 2 pixels; the same pixels at 1 x 1 mm
    # with an 8 mm radius (8 x 8 pixels) give another answer, 8 x 2 px at 1 x 1 mm the same.
    x, _ = _striped((60, 40))
    aniso = fn.adaptive_equalize(x, spacing_mm=(1.0, 4.0), radius_mm=8.0)
    iso = fn.adaptive_equalize(x, spacing_mm=(1.0, 1.0), radius_mm=8.0)
    assert not torch.equal(aniso, iso)
    swapped = fn.adaptive_equalize(x, spacing_mm=(4.0, 1.0), radius_mm=8.0)
    assert not torch.equal(aniso, swapped)


def test_adaptive_equalize_3d() -> None:
    x, _ = _striped((60, 40))
    vol = x[..., None].repeat(1, 1, 1, 5)  # constant along z
    out = fn.adaptive_equalize(vol, spacing_mm=(1.0, 1.0, 3.0), radius_mm=4.0)
    assert tuple(out.shape) == (1, 60, 40, 5)
    assert torch.allclose(out[..., 2], out[..., 0])


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda x: fn.denoise_anisotropic(x, spacing_mm=(1.0,)), "one spacing > 0 mm"),
        (lambda x: fn.denoise_anisotropic(x, spacing_mm=(1.0, 0.0)), "one spacing > 0 mm"),
        (lambda x: fn.denoise_anisotropic(x, spacing_mm=(1.0, 1.0), iterations=0), "iterations"),
        (lambda x: fn.adaptive_equalize(x, spacing_mm=(1.0, 1.0), alpha=1.5), "alpha and beta"),
        (lambda x: fn.adaptive_equalize(x, spacing_mm=(1.0, 1.0), radius_mm=0), "radius_mm > 0"),
        (lambda x: fn.adaptive_equalize(x, spacing_mm=(1.0, 1.0), levels=1), "levels >= 2"),
    ],
)
def test_bad_arguments(call, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        call(torch.zeros((1, 4, 4)))


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("denoise_iterations", 0, "denoise_iterations must be an integer >= 1, got 0"),
        ("denoise_iterations", True, "denoise_iterations must be an integer"),
        ("denoise_conductance", 0.0, "denoise_conductance must be > 0"),
        ("adaptive_radius_mm", -1.0, "adaptive_radius_mm must be > 0 mm"),
        ("adaptive_alpha", 1.5, r"adaptive_alpha must be in \[0, 1\]"),
        ("adaptive_beta", -0.1, r"adaptive_beta must be in \[0, 1\]"),
    ],
)
def test_config_checks(field: str, value: object, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        PreprocessConfig(**{field: value})


def test_defaults_off_and_key_changes() -> None:
    cfg = PreprocessConfig()
    assert not cfg.denoise
    assert not cfg.adaptive_equalize
    for mod in Modality:
        base = chain_key(mod, cfg, None)
        keys = {
            chain_key(mod, PreprocessConfig(denoise=True), None),
            chain_key(mod, PreprocessConfig(denoise=True, denoise_iterations=6), None),
            chain_key(mod, PreprocessConfig(adaptive_equalize=True), None),
            chain_key(mod, PreprocessConfig(adaptive_equalize=True, adaptive_alpha=0.5), None),
        }
        assert base not in keys
        assert len(keys) == 4


CT = {"target_spacing_mm": (4.0, 4.0, 6.0), "hu_window": "soft_tissue"}


def test_ct_chain_denoises_before_the_window() -> None:
    ph = ct_phantom((24, 20, 12), (4.0, 4.0, 6.0), seed=0)
    plain = preprocessing_for("CT", PreprocessConfig(**CT))({"image": ph.image})["image"]
    cfg = PreprocessConfig(**CT, denoise=True)
    smooth = preprocessing_for("CT", cfg)({"image": ph.image})["image"]
    assert smooth.shape == plain.shape
    assert 0.0 <= float(smooth.min())
    assert float(smooth.max()) <= 1.0
    # Inside the body (window-interior voxels) the spread drops.
    inside = (plain > 0.05) & (plain < 0.95)
    assert float(smooth[inside].std()) < float(plain[inside].std())


def test_ct_and_mr_chains_equalize_last() -> None:
    ph = ct_phantom((24, 20, 12), (4.0, 4.0, 6.0), seed=0)
    cfg = PreprocessConfig(**CT, adaptive_equalize=True, adaptive_radius_mm=12.0)
    out = preprocessing_for("CT", cfg)({"image": ph.image})["image"]
    plain = preprocessing_for("CT", PreprocessConfig(**CT))({"image": ph.image})["image"]
    assert not torch.equal(out, plain)
    assert float(out.min()) >= float(plain.min())
    assert float(out.max()) <= float(plain.max())
    mr = mri_phantom((18, 20, 12), (10.0, 9.0, 12.0), seed=1)
    mr_cfg = PreprocessConfig(target_spacing_mm=(10.0, 9.0, 12.0), denoise=True,
                              adaptive_equalize=True, adaptive_radius_mm=20.0)  # fmt: skip
    assert preprocessing_for("MR", mr_cfg)({"image": mr.image})["image"].shape[1:] == (18, 20, 12)


def test_xray_chain_with_both_steps() -> None:
    from medimg.synthetic import xray_phantom

    ph = xray_phantom((64, 80), seed=4)
    cfg = PreprocessConfig(xray_size_px=(48, 48), denoise=True, adaptive_equalize=True)
    out = preprocessing_for("XR", cfg)({"image": ph.image})["image"]
    plain = preprocessing_for("XR", PreprocessConfig(xray_size_px=(48, 48)))({"image": ph.image})
    assert tuple(out.shape) == (1, 48, 48)
    assert not torch.equal(out, plain["image"])
    assert 0.0 <= float(out.min())
    assert float(out.max()) <= 1.0
