"""SimpleITK filters of the modality chains: N4, edge-preserving denoising, adaptive equalising.

Same contract as :mod:`medimg.transforms.functional`: each takes a channel-first tensor and
keyword arguments and returns a new float32 tensor; voxel spacing is passed in millimetres where
the filter works in physical units.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from medimg.errors import ConfigError

__all__ = ["adaptive_equalize", "denoise_anisotropic", "n4_bias_correct"]


def n4_bias_correct(
    image: torch.Tensor, *, shrink_factor: int = 4, iterations: int = 50
) -> torch.Tensor:
    """N4 bias-field correction of each channel through SimpleITK (Otsu foreground mask).

    The field is estimated on an image shrunk by ``shrink_factor`` and applied at full
    resolution. Voxel spacing does not matter for N4's B-spline fit at this level, so the
    array is corrected in voxel units.
    """
    import SimpleITK as sitk

    if shrink_factor < 1 or iterations < 1:
        raise ConfigError(
            f"shrink_factor and iterations must be >= 1, got {shrink_factor}, {iterations}"
        )
    out = image.to(torch.float32, copy=True)
    for c in range(out.shape[0]):
        full = sitk.GetImageFromArray(out[c].numpy())
        mask = sitk.OtsuThreshold(full, 0, 1, 200)
        small = sitk.Shrink(full, [shrink_factor] * full.GetDimension())
        small_mask = sitk.Shrink(mask, [shrink_factor] * full.GetDimension())
        corrector = sitk.N4BiasFieldCorrectionImageFilter()
        corrector.SetMaximumNumberOfIterations([iterations] * 4)
        corrector.Execute(small, small_mask)
        log_field = corrector.GetLogBiasFieldAsImage(full)
        out[c] /= torch.from_numpy(np.exp(sitk.GetArrayFromImage(log_field)))
    return out


def _check_spacing(spacing_mm: Sequence[float], image: torch.Tensor) -> tuple[float, ...]:
    spacing = tuple(float(s) for s in spacing_mm)
    if len(spacing) != image.ndim - 1 or image.ndim not in (3, 4) or min(spacing) <= 0:
        raise ConfigError(
            f"need a (C, X, Y) or (C, X, Y, Z) image and one spacing > 0 mm per spatial axis, "
            f"got shape {tuple(image.shape)} and spacing_mm {spacing}"
        )
    return spacing


def _to_sitk(channel: torch.Tensor, spacing_mm: tuple[float, ...]) -> Any:
    """A SimpleITK image of one channel; ITK's axis order is numpy's reversed."""
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(channel.numpy())
    img.SetSpacing(spacing_mm[::-1])
    return img


def denoise_anisotropic(
    image: torch.Tensor,
    *,
    spacing_mm: Sequence[float],
    iterations: int = 5,
    conductance: float = 1.5,
) -> torch.Tensor:
    """Edge-preserving denoising of each channel: ITK's curvature anisotropic diffusion.

    Diffusion runs in millimetres (ITK uses the spacing), so a coarse axis is smoothed less
    than a fine one. ``conductance`` is unitless: ITK scales it by the image's mean gradient
    magnitude at each iteration, so the same value suits HU, MR and X-ray units. The time step
    is 90% of the stable limit ``min(spacing_mm, 1 mm) / 2 ** (ndim + 1)`` (ITK checks the
    limit without the spacing and prints a warning above it; coarse grids are therefore
    smoothed less per iteration, in voxels, than fine ones).

    Parameters
    ----------
    image : (C, X, Y) or (C, X, Y, Z) tensor
        Native units (before normalisation).
    spacing_mm : sequence of float
        Voxel size along each spatial axis, in the array's axis order.
    iterations : int
        Diffusion steps (>= 1); more smooths more.
    conductance : float
        Edge sensitivity (> 0); lower keeps weaker edges.

    Returns
    -------
    tensor
        float32, same shape.

    Raises
    ------
    ConfigError
        For a bad shape, spacing, iteration count or conductance.

    Examples
    --------
    >>> flat = torch.full((1, 6, 5), 7.0)
    >>> bool((denoise_anisotropic(flat, spacing_mm=(0.5, 2.0)) == 7.0).all())
    True
    """
    import SimpleITK as sitk

    spacing = _check_spacing(spacing_mm, image)
    if iterations < 1 or not conductance > 0:
        raise ConfigError(
            f"iterations must be >= 1 and conductance > 0, got {iterations}, {conductance}"
        )
    time_step = 0.9 * min(*spacing, 1.0) / 2 ** (image.ndim)  # 2 ** (spatial ndim + 1)
    out = image.to(torch.float32, copy=True)
    for c in range(out.shape[0]):
        smoothed = sitk.CurvatureAnisotropicDiffusion(
            _to_sitk(out[c], spacing),
            timeStep=time_step,
            conductanceParameter=float(conductance),
            numberOfIterations=int(iterations),
        )
        out[c] = torch.from_numpy(sitk.GetArrayFromImage(smoothed))
    return out


def adaptive_equalize(
    image: torch.Tensor,
    *,
    spacing_mm: Sequence[float],
    radius_mm: float = 25.0,
    alpha: float = 0.3,
    beta: float = 0.3,
    levels: int = 256,
) -> torch.Tensor:
    """Adaptive histogram equalisation of each channel: ITK's ``AdaptiveHistogramEqualization``.

    ITK's filter is Stark's generalisation of adaptive histogram equalisation: each pixel is
    mapped through the cumulation function of the histogram of its neighbourhood (a box of
    ``radius_mm`` each way, converted to voxels per axis with ``spacing_mm``). ``alpha`` goes
    from plain adaptive equalisation (0) to an unsharp mask (1); ``beta`` from an unsharp mask
    (0) to no change (1); together they limit the contrast gain, the role of CLAHE's clip
    limit. Each channel is quantised to ``levels`` grey levels between its minimum and maximum
    first (ITK's cost grows with the number of distinct values) and mapped back to that range.
    A constant channel is returned unchanged.

    Parameters
    ----------
    image : (C, X, Y) or (C, X, Y, Z) tensor
    spacing_mm : sequence of float
        Voxel size along each spatial axis, in the array's axis order.
    radius_mm : float
        Half-size of the neighbourhood (> 0); at least one voxel along every axis.
    alpha, beta : float
        In ``[0, 1]``.
    levels : int
        Grey levels (>= 2).

    Returns
    -------
    tensor
        float32, same shape, each channel within its input's ``[min, max]``.

    Raises
    ------
    ConfigError
        For a bad shape, spacing, radius, ``alpha``, ``beta`` or ``levels``.
    """
    import SimpleITK as sitk

    spacing = _check_spacing(spacing_mm, image)
    if not radius_mm > 0 or not (0 <= alpha <= 1 and 0 <= beta <= 1) or levels < 2:
        raise ConfigError(
            "need radius_mm > 0, alpha and beta in [0, 1] and levels >= 2, got "
            f"{radius_mm}, {alpha}, {beta}, {levels}"
        )
    radius = [max(1, round(radius_mm / s)) for s in spacing[::-1]]
    out = image.to(torch.float32, copy=True)
    for c in range(out.shape[0]):
        lo, hi = float(out[c].min()), float(out[c].max())
        if not hi > lo:
            continue
        q = ((out[c] - lo) / (hi - lo) * (levels - 1)).round_() / (levels - 1)
        eq = sitk.AdaptiveHistogramEqualization(
            _to_sitk(q, spacing), radius=radius, alpha=float(alpha), beta=float(beta)
        )
        mapped = torch.from_numpy(sitk.GetArrayFromImage(eq)).clamp_(0.0, 1.0)
        out[c] = mapped.mul_(hi - lo).add_(lo)
    return out
