"""Window weights and window positions for sliding-window inference.

Both follow ``monai.inferers.sliding_window_inference`` exactly (MONAI 1.4-1.6), so that medimg
and MONAI stitch the same windows with the same weights: a separable Gaussian centred on the
window with ``sigma = sigma_scale * roi`` (nnU-Net's 1/8 by default), clamped below at
``max(min, 1e-3)``; window starts every ``int(roi * (1 - overlap))`` voxels, the last one moved
back to end at the volume's edge.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

__all__ = ["gaussian_importance_map", "padding_for", "window_starts"]


def gaussian_importance_map(
    roi_size_vox: Sequence[int], sigma_scale: float = 0.125
) -> torch.Tensor:
    """Gaussian weight of each voxel of a window, float32, shape ``roi_size_vox``.

    Parameters
    ----------
    roi_size_vox : sequence of int
        Window size in voxels.
    sigma_scale : float
        Standard deviation of the Gaussian as a fraction of the window size along each axis.

    Returns
    -------
    torch.Tensor
        Weights in ``(0, 1]``: 1 at the centre of an odd-sized window, never below 1e-3.

    Examples
    --------
    >>> w = gaussian_importance_map((5, 4), sigma_scale=0.125)
    >>> tuple(w.shape), float(w[2, 0]) == float(w[2, 3]), float(w.min()) >= 1e-3
    ((5, 4), True, True)
    """
    weights = torch.ones(())
    for i, size in enumerate(roi_size_vox):
        x = torch.arange(-(size - 1) / 2.0, (size - 1) / 2.0 + 1, dtype=torch.float32)
        g = torch.exp(x**2 / (-2 * (size * sigma_scale) ** 2))
        weights = weights.unsqueeze(-1) * g if i > 0 else g
    floor = max(float(weights.min()), 1e-3)
    return weights.clamp_(min=floor)


def window_starts(size: int, roi: int, overlap: float) -> list[int]:
    """First voxel of each window along one axis of a (padded) volume of ``size`` voxels.

    Parameters
    ----------
    size : int
        Axis length after padding to at least ``roi``.
    roi : int
        Window length, at most ``size``.
    overlap : float
        Fraction of the window shared with its neighbour, in ``[0, 1)``.

    Examples
    --------
    >>> window_starts(100, 48, 0.5)
    [0, 24, 48, 52]
    >>> window_starts(48, 48, 0.5)
    [0]
    """
    interval = roi if roi == size else max(int(roi * (1 - overlap)), 1)
    count = next(
        (d + 1 for d in range(math.ceil(size / interval)) if d * interval + roi >= size), 1
    )
    return [i * interval - max(i * interval + roi - size, 0) for i in range(count)]


def padding_for(shape: Sequence[int], roi_size_vox: Sequence[int]) -> tuple[int, ...]:
    """Zeros added before each axis when the volume is smaller than the window there.

    The same amount (rounded down) goes after, plus one when the difference is odd, as in MONAI.

    Examples
    --------
    >>> padding_for((37, 10, 96), (32, 16, 96))
    (0, 3, 0)
    """
    return tuple(max(r - n, 0) // 2 for n, r in zip(shape, roi_size_vox, strict=True))
