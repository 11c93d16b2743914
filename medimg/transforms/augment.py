"""Seeded training augmentation per modality, recording what it drew.

:func:`augmentation_for` returns MONAI ``Rand*d`` transforms, each wrapped so that after it runs
the sample's ``augment_history`` list (:data:`Keys.HISTORY`) gains an entry with its name, whether
it fired and the parameters it sampled (TorchIO's *history*): an augmented sample can be
explained, and, with the seed, reproduced.

Flips are **off by default** for every modality. A left-right flip of a CT or MR body scan
makes a situs-inversus patient and swaps lateral labels (TotalSegmentator's ``kidney_left`` and
``kidney_right``); front-back and head-feet flips make anatomy no scanner produces, and a
flipped chest radiograph puts the heart on the right. nnU-Net mirrors every axis anyway;
``AugmentConfig(flip_axes=(0,))`` opts in where the task has no lateral labels (e.g. a lesion
class in the brain).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

import numpy as np
from monai.transforms.compose import Compose
from monai.transforms.intensity.dictionary import (
    RandAdjustContrastd,
    RandBiasFieldd,
    RandGaussianNoised,
    RandGaussianSmoothd,
    RandScaleIntensityFixedMeand,
)
from monai.transforms.spatial.dictionary import (
    Rand2DElasticd,
    Rand3DElasticd,
    RandAffined,
    RandFlipd,
    RandSimulateLowResolutiond,
)
from monai.transforms.transform import Randomizable, Transform

from medimg.errors import ConfigError
from medimg.keys import Keys
from medimg.modality import Modality, lookup_modality

__all__ = ["AugmentConfig", "RecordedRandom", "augmentation_for"]

IMAGE, LABEL = Keys.IMAGE.value, Keys.LABEL.value


@dataclass(frozen=True, kw_only=True)
class AugmentConfig:
    """Ranges and probabilities of the training augmentation (nnU-Net-like defaults).

    Attributes
    ----------
    rotation_deg : float
        Largest rotation about each axis, degrees (in-plane only for 2D).
    scale_range : (float, float)
        Zoom factor range, drawn per axis (recorded as the factors, 1 = unchanged).
    p_affine : float
        Probability of the rotation+scaling.
    p_elastic : float
        Probability of an elastic deformation (off by default: slow on full volumes).
    flip_axes : tuple of int
        Spatial axes (RAS order) that may be mirrored, each with ``p_flip``; empty by default.
    noise_std, p_noise : float
        Gaussian noise standard deviation (in normalised units) and probability.
    blur_sigma_vox : (float, float)
        Gaussian blur sigma range in voxels; probability ``p_blur``.
    gamma_range : (float, float)
        Gamma range; probability ``p_gamma``.
    contrast_range : float
        Contrast factor drawn in ``[-contrast_range, contrast_range]`` about the mean
        (``1 + factor`` scaling); probability ``p_contrast``.
    bias_coeff : float
        MRI bias-field coefficient range ``[-bias_coeff, bias_coeff]``; probability ``p_bias``.
    lowres_zoom : (float, float)
        Simulated low resolution: down-sampling factor range; probability ``p_lowres``.
    """

    rotation_deg: float = 15.0
    scale_range: tuple[float, float] = (0.85, 1.25)
    p_affine: float = 0.2
    p_elastic: float = 0.0
    flip_axes: tuple[int, ...] = ()
    p_flip: float = 0.5
    noise_std: float = 0.1
    p_noise: float = 0.15
    blur_sigma_vox: tuple[float, float] = (0.5, 1.0)
    p_blur: float = 0.2
    gamma_range: tuple[float, float] = (0.7, 1.5)
    p_gamma: float = 0.3
    contrast_range: float = 0.25
    p_contrast: float = 0.15
    bias_coeff: float = 0.5
    p_bias: float = 0.2
    lowres_zoom: tuple[float, float] = (0.5, 1.0)
    p_lowres: float = 0.25

    def __post_init__(self) -> None:
        for name in ("p_affine", "p_elastic", "p_flip", "p_noise", "p_blur", "p_gamma"):
            _check_probability(name, getattr(self, name))
        for name in ("p_contrast", "p_bias", "p_lowres"):
            _check_probability(name, getattr(self, name))
        for name in ("scale_range", "blur_sigma_vox", "gamma_range", "lowres_zoom"):
            low, high = getattr(self, name)
            if not 0 < low <= high:
                raise ConfigError(
                    f"{name} must be (low, high) with 0 < low <= high, got {(low, high)}"
                )
        if any(a not in (0, 1, 2) for a in self.flip_axes):
            raise ConfigError(f"flip_axes must name spatial axes 0, 1 or 2, got {self.flip_axes}")
        if self.rotation_deg < 0 or self.noise_std < 0 or self.contrast_range < 0:
            raise ConfigError(
                "rotation_deg, noise_std and contrast_range must be >= 0, got "
                f"{self.rotation_deg}, {self.noise_std}, {self.contrast_range}"
            )


def _check_probability(name: str, p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise ConfigError(f"{name} must be a probability in [0, 1], got {p}")


def _floats(values: Any) -> list[float]:
    return [float(v) for v in np.atleast_1d(np.asarray(values, dtype=np.float64))]


_PARAMS: Final[Mapping[type, Callable[[Any], dict[str, Any]]]] = MappingProxyType(
    {
        RandAffined: lambda t: {
            "rotate_rad": _floats(t.rand_affine.rand_affine_grid.rotate_params),
            "scale": _floats(t.rand_affine.rand_affine_grid.scale_params),
        },
        Rand3DElasticd: lambda t: {
            "sigma_vox": float(t.rand_3d_elastic.sigma),
            "magnitude": float(t.rand_3d_elastic.magnitude),
        },
        Rand2DElasticd: lambda t: {"spacing_vox": _floats(t.rand_2d_elastic.deform_grid.spacing)},
        RandFlipd: lambda t: {"axis": [int(a) for a in np.atleast_1d(t.flipper.spatial_axis)]},
        RandGaussianNoised: lambda t: {"std": float(t.rand_gaussian_noise.std)},
        RandGaussianSmoothd: lambda t: {
            "sigma_vox": [float(t.rand_smooth.x), float(t.rand_smooth.y), float(t.rand_smooth.z)]
        },
        RandAdjustContrastd: lambda t: {"gamma": float(t.adjuster.gamma_value)},
        RandScaleIntensityFixedMeand: lambda t: {"factor": float(t.scaler.factor)},
        RandBiasFieldd: lambda t: {"coeff": _floats(t.rand_bias_field._coeff)},
        RandSimulateLowResolutiond: lambda t: {"zoom": float(t.sim_lowres_tfm.zoom_factor)},
    }
)
"""Per MONAI transform, how to read the parameters it sampled on its last call."""


class RecordedRandom(Randomizable, Transform):
    """Run a MONAI ``Rand*d`` transform and append what it drew to ``sample[Keys.HISTORY]``.

    Parameters
    ----------
    transform
        A dictionary random transform of a type listed in ``_PARAMS``.
    name : str
        Entry name in the history.
    """

    def __init__(self, transform: Any, name: str) -> None:
        if type(transform) not in _PARAMS:
            raise ConfigError(
                f"transform must be one of {sorted(t.__name__ for t in _PARAMS)}, got "
                f"{type(transform).__name__}; add how to read its parameters to _PARAMS"
            )
        self.transform, self.name = transform, name

    def set_random_state(
        self, seed: int | None = None, state: np.random.RandomState | None = None
    ) -> RecordedRandom:
        """Seed the wrapped transform (``Compose.set_random_state`` calls this)."""
        self.transform.set_random_state(seed=seed, state=state)
        return self

    def randomize(self, data: Any) -> None:
        """Sampling happens in the wrapped transform's own ``randomize``."""

    def __call__(self, data: Mapping[Any, Any]) -> dict[Any, Any]:
        """Apply the wrapped transform and record its sampled parameters."""
        out = dict(self.transform(data))
        applied = bool(self.transform._do_transform)
        entry: dict[str, Any] = {"name": self.name, "applied": applied}
        if applied:
            entry.update(_PARAMS[type(self.transform)](self.transform))
        out[Keys.HISTORY] = [*data.get(Keys.HISTORY, []), entry]
        return out


def _spatial(config: AugmentConfig, ndim: int) -> list[RecordedRandom]:
    keys, modes = [IMAGE, LABEL], ["bilinear", "nearest"]
    rot = float(np.radians(config.rotation_deg))
    zoom = (config.scale_range[0] - 1.0, config.scale_range[1] - 1.0)
    steps = [
        RecordedRandom(
            RandAffined(
                keys,
                prob=config.p_affine,
                rotate_range=[(-rot, rot)] * (3 if ndim == 3 else 1),
                scale_range=[zoom] * ndim,
                mode=modes,
                padding_mode="border",
                allow_missing_keys=True,
            ),
            "affine",
        )
    ]
    if config.p_elastic > 0:
        steps.append(RecordedRandom(_elastic(config, ndim, keys, modes), "elastic"))
    if any(axis >= ndim for axis in config.flip_axes):
        raise ConfigError(
            f"flip_axes must name axes of a {ndim}D image (0..{ndim - 1}), got {config.flip_axes}"
        )
    for axis in config.flip_axes:
        flip = RandFlipd(keys, prob=config.p_flip, spatial_axis=axis, allow_missing_keys=True)
        steps.append(RecordedRandom(flip, f"flip_{axis}"))
    return steps


def _elastic(config: AugmentConfig, ndim: int, keys: list[str], modes: list[str]) -> Any:
    """MONAI's 3D or 2D elastic deformation (control-point spacing and magnitude in voxels)."""
    if ndim == 3:
        return Rand3DElasticd(
            keys,
            sigma_range=(5, 8),
            magnitude_range=(50, 150),
            prob=config.p_elastic,
            mode=modes,
            allow_missing_keys=True,
        )
    return Rand2DElasticd(
        keys,
        spacing=(20, 20),
        magnitude_range=(1, 2),
        prob=config.p_elastic,
        mode=modes,
        allow_missing_keys=True,
    )


def _intensity(config: AugmentConfig, ndim: int) -> list[RecordedRandom]:
    sigma = config.blur_sigma_vox
    return [
        RecordedRandom(
            RandGaussianNoised(IMAGE, prob=config.p_noise, std=config.noise_std, sample_std=False),
            "noise",
        ),
        RecordedRandom(
            RandGaussianSmoothd(
                IMAGE,
                sigma_x=sigma,
                sigma_y=sigma,
                sigma_z=sigma if ndim == 3 else (0.0, 0.0),
                prob=config.p_blur,
            ),
            "blur",
        ),
        RecordedRandom(
            RandScaleIntensityFixedMeand(
                IMAGE, prob=config.p_contrast, factors=config.contrast_range
            ),
            "contrast",
        ),
        RecordedRandom(
            RandAdjustContrastd(IMAGE, prob=config.p_gamma, gamma=config.gamma_range), "gamma"
        ),
    ]


def _lowres(config: AugmentConfig) -> RecordedRandom:
    return RecordedRandom(
        RandSimulateLowResolutiond(IMAGE, prob=config.p_lowres, zoom_range=config.lowres_zoom),
        "low_resolution",
    )


def _ct_augment(config: AugmentConfig) -> list[RecordedRandom]:
    return [*_spatial(config, 3), *_intensity(config, 3), _lowres(config)]


def _mr_augment(config: AugmentConfig) -> list[RecordedRandom]:
    bias = RandBiasFieldd(
        IMAGE, prob=config.p_bias, coeff_range=(-config.bias_coeff, config.bias_coeff)
    )
    return [
        *_spatial(config, 3),
        RecordedRandom(bias, "bias_field"),
        *_intensity(config, 3),
        _lowres(config),
    ]


def _xr_augment(config: AugmentConfig) -> list[RecordedRandom]:
    return [*_spatial(config, 2), *_intensity(config, 2)]


_AUGMENTS: Final[Mapping[Modality, Callable[[AugmentConfig], list[RecordedRandom]]]] = (
    MappingProxyType({Modality.CT: _ct_augment, Modality.MR: _mr_augment, Modality.XR: _xr_augment})
)


def augmentation_for(
    modality: Modality | str, config: AugmentConfig | None = None, seed: int = 0
) -> Compose:
    """Return the seeded training augmentation for ``modality`` (applied after preprocessing).

    Parameters
    ----------
    modality : Modality or str
    config : AugmentConfig, optional
        Defaults to ``AugmentConfig()``.
    seed : int
        Seeds every random transform: the same seed draws the same parameters in the same order.

    Returns
    -------
    monai.transforms.Compose
        Maps a preprocessed sample (image, optional label) to an augmented one with
        ``sample["augment_history"]``.

    Raises
    ------
    ValueError
        For an unknown modality (with a did-you-mean).
    """
    mod = modality if isinstance(modality, Modality) else lookup_modality(modality)
    chain = Compose(_AUGMENTS[mod](AugmentConfig() if config is None else config))
    chain.set_random_state(seed=seed)
    return chain
