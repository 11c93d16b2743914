"""THE preprocessing registry: one chain per :class:`~medimg.modality.Modality`, defined here only.

Training, validation, inference and notebooks all call :func:`preprocessing_for`. Every 3D chain
loads, reorients to RAS, optionally crops to the foreground, resamples to the target spacing
(recording each grid in a :class:`~medimg.transforms.record.PreprocessRecord` so
:func:`~medimg.transforms.inversion.to_source_grid` can undo it) and then normalises
intensities the modality's way. The X-ray chain is 2D: load, reorient (the in-plane axes to
R/A/S order, see :func:`~medimg.io.geometry.reorient_affine`), window, then resize-with-pad,
which it records too, so X-ray predictions come back onto the stored grid the same way.

Two optional steps of every chain (:class:`PreprocessConfig`, both off by default): edge-preserving
denoising in native units before normalisation, and adaptive histogram equalisation as the last
intensity step. Both work in millimetres with the record's current voxel size.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import torch
from monai.transforms.compose import Compose
from monai.transforms.transform import MapTransform
from monai.transforms.utility.dictionary import Lambdad

from medimg.errors import ConfigError
from medimg.keys import Keys
from medimg.modality import Modality, lookup_modality
from medimg.transforms import filters
from medimg.transforms import functional as fn
from medimg.transforms.config import PreprocessConfig
from medimg.transforms.resample import Interp
from medimg.transforms.steps import (
    AttachAffined,
    CropToForegroundd,
    GridSpacingLambdad,
    LoadVolumed,
    ResampleToSpacingd,
    ResizeWithPadd,
    ToRASd,
)

if TYPE_CHECKING:
    from pathlib import Path

    from medimg.fingerprint import Fingerprint

__all__ = ["preprocessing_for", "target_spacing_for"]

_Chain = Callable[[PreprocessConfig, "Fingerprint | None"], list[Any]]
IMAGE, LABEL = Keys.IMAGE.value, Keys.LABEL.value


def target_spacing_for(
    config: PreprocessConfig, fingerprint: Fingerprint | None
) -> tuple[float, float, float]:
    """The RAS target spacing: the config's, else nnU-Net's choice from the fingerprint.

    nnU-Net takes the per-axis median spacing; for anisotropic data the coarse axis gets the
    10th percentile of its spacings instead, but never finer than the other axes.

    Raises
    ------
    ConfigError
        When neither the config nor a fingerprint gives a spacing.
    """
    if config.target_spacing_mm is not None:
        return config.target_spacing_mm
    if fingerprint is None:
        raise ConfigError(
            "target_spacing_mm must be set when no fingerprint is given, got None; pass the "
            "dataset's Fingerprint or set PreprocessConfig(target_spacing_mm=(x, y, z))"
        )
    target = [float(s) for s in fingerprint.median_spacing_mm]
    axis = fingerprint.lowres_axis
    if fingerprint.anisotropic and axis is not None:
        finest_other = max(t for i, t in enumerate(target) if i != axis)
        target[axis] = max(float(fingerprint.p10_spacing_mm[axis]), finest_other)
    return (target[0], target[1], target[2])


def _spatial(config: PreprocessConfig, fingerprint: Fingerprint | None) -> list[Any]:
    """Load, reorient, crop and resample: the geometric part every 3D chain shares."""
    masks = [config.mr_mask_key] if config.mr_mask_key else []
    keys = [IMAGE, LABEL, *masks]
    lowres: Interp = (
        config.image_interp if config.lowres_axis_interp == "same" else config.lowres_axis_interp
    )
    steps: list[Any] = [LoadVolumed(keys), ToRASd(keys, allow_missing_keys=True)]
    if config.crop_foreground_above is not None:
        steps.append(
            CropToForegroundd(
                keys,
                source_key=IMAGE,
                above=config.crop_foreground_above,
                margin_vox=config.crop_margin_vox,
            )
        )
    steps.append(
        ResampleToSpacingd(
            [IMAGE],
            [LABEL, *masks],
            target_spacing_mm=target_spacing_for(config, fingerprint),
            image_interp=config.image_interp,
            lowres_interp=lowres,
            label_interp=config.label_interp,
            anisotropy_threshold=config.anisotropy_threshold,
        )
    )
    return steps


def _denoise(config: PreprocessConfig) -> list[Any]:
    """The optional denoising step (native units, before normalisation)."""
    if not config.denoise:
        return []
    func = partial(
        filters.denoise_anisotropic,
        iterations=config.denoise_iterations,
        conductance=config.denoise_conductance,
    )
    return [GridSpacingLambdad([IMAGE], func)]


def _enhance(config: PreprocessConfig) -> list[Any]:
    """The optional adaptive histogram equalisation (the last intensity step)."""
    if not config.adaptive_equalize:
        return []
    func = partial(
        filters.adaptive_equalize,
        radius_mm=config.adaptive_radius_mm,
        alpha=config.adaptive_alpha,
        beta=config.adaptive_beta,
    )
    return [GridSpacingLambdad([IMAGE], func)]


def _ct_chain(config: PreprocessConfig, fingerprint: Fingerprint | None) -> list[Any]:
    bounds = config.hu_window_bounds
    if bounds is not None:
        norm = partial(fn.window, low=bounds[0], high=bounds[1], inplace=True)
    elif fingerprint is None:
        raise ConfigError(
            "CT normalisation needs the fingerprint's foreground statistics or a hu_window, got "
            "neither; pass the Fingerprint or set hu_window (e.g. 'soft_tissue')"
        )
    else:
        stats = fingerprint.intensity
        norm = partial(
            fn.clip_zscore,
            low=[s.percentile_00_5 for s in stats],
            high=[s.percentile_99_5 for s in stats],
            mean=[s.mean for s in stats],
            std=[s.std for s in stats],
            inplace=True,
        )
    return [
        *_spatial(config, fingerprint),
        *_denoise(config),
        Lambdad(IMAGE, norm),
        *_enhance(config),
        AttachAffined([IMAGE, LABEL], allow_missing_keys=True),
    ]


class ZScoreMaskedd(MapTransform):
    """MRI z-score of the image over a mask key (or its non-zero voxels); see ``zscore_masked``."""

    def __init__(self, key: str, *, mask_key: str | None, nonzero: bool) -> None:
        super().__init__([key])
        self.key, self.mask_key, self.nonzero = key, mask_key, nonzero

    def __call__(self, data: Mapping[Any, Any]) -> dict[Any, Any]:
        """Return a new sample with the image z-scored."""
        d = dict(data)
        image = d[self.key]
        mask: torch.Tensor | None
        if self.mask_key is not None:
            mask = torch.as_tensor(d[self.mask_key]) > 0
        else:
            mask = None if self.nonzero else torch.ones_like(image[:1], dtype=torch.bool)
        d[self.key] = fn.zscore_masked(image, mask=mask, inplace=True)
        return d


def _mr_chain(config: PreprocessConfig, fingerprint: Fingerprint | None) -> list[Any]:
    steps = [*_spatial(config, fingerprint), *_denoise(config)]
    if config.n4_bias_correction:
        steps.append(Lambdad(IMAGE, filters.n4_bias_correct))
    steps.append(
        ZScoreMaskedd(IMAGE, mask_key=config.mr_mask_key, nonzero=config.mr_mask == "nonzero")
    )
    steps += _enhance(config)
    keys = [IMAGE, LABEL, *([config.mr_mask_key] if config.mr_mask_key else [])]
    return [*steps, AttachAffined(keys, allow_missing_keys=True)]


def _as_float_tensor(array: Any) -> torch.Tensor:
    """A float32 tensor copy of an array (the X-ray chain's entry into torch)."""
    return torch.from_numpy(np.asarray(array, dtype=np.float32).copy())


def _xr_chain(config: PreprocessConfig, fingerprint: Fingerprint | None) -> list[Any]:
    low, high = config.xray_percentiles
    steps: list[Any] = [
        LoadVolumed([IMAGE, LABEL], ndim=2),
        ToRASd([IMAGE, LABEL], allow_missing_keys=True),
        Lambdad(IMAGE, _as_float_tensor),
        *_denoise(config),
        Lambdad(IMAGE, partial(fn.percentile_window, low_pct=low, high_pct=high, inplace=True)),
    ]
    if config.xray_equalize:
        steps.append(Lambdad(IMAGE, fn.equalize_histogram))
    steps.append(ResizeWithPadd([IMAGE], [LABEL], size_px=config.xray_size_px))
    return [*steps, *_enhance(config)]


_CHAINS: Final[Mapping[Modality, _Chain]] = MappingProxyType(
    {Modality.CT: _ct_chain, Modality.MR: _mr_chain, Modality.XR: _xr_chain}
)


def preprocessing_for(
    modality: Modality | str,
    config: PreprocessConfig | None = None,
    fingerprint: Fingerprint | None = None,
    *,
    cache_dir: Path | str | None = None,
) -> Compose:
    """Return the one preprocessing chain used for ``modality`` in training *and* inference.

    Parameters
    ----------
    modality : Modality or str
        A :class:`~medimg.modality.Modality` or its exact value (``"CT"``, ``"MR"``, ``"XR"``).
    config : PreprocessConfig, optional
        Settings; defaults to ``PreprocessConfig()``.
    fingerprint : Fingerprint, optional
        Dataset statistics; needed unless the config fixes the target spacing and (for CT) a
        HU window.
    cache_dir : path, optional
        Keep the chain's results on disk there, keyed by the input files and every parameter
        (see :mod:`medimg.transforms.cache`).

    Returns
    -------
    monai.transforms.Compose
        Maps ``{"image": path, "label": path}`` to float32 image and label ``MetaTensor`` s on
        the target grid plus ``sample["preprocess_record"]`` (X-ray: plain tensors on the
        padded grid, and the record too). PyTorch's
        ``default_collate`` cannot batch the record: training loaders drop it with
        ``DeleteItemsd(Keys.RECORD)``; inference keeps it for ``to_source_grid``.

    Raises
    ------
    ValueError
        For an unknown modality (with a did-you-mean).
    ConfigError
        When a needed fingerprint is missing.
    """
    mod = modality if isinstance(modality, Modality) else lookup_modality(modality)
    cfg = PreprocessConfig() if config is None else config
    chain = Compose(_CHAINS[mod](cfg, fingerprint))
    if cache_dir is None:
        return chain
    from medimg.transforms.cache import CachedChain, chain_key

    return Compose([CachedChain(chain, cache_dir, chain_key(mod, cfg, fingerprint))])
