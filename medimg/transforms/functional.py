"""Pure, deterministic intensity and cropping operations used by the modality chains.

Each function takes a channel-first tensor and keyword arguments and returns a new tensor
(``inplace=True`` reuses the input's memory when the caller owns it, as the chains do after
resampling). They join MONAI chains through ``Lambdad(keys=..., func=partial(fn, ...))``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray

from medimg.errors import ConfigError

__all__ = [
    "clip_zscore",
    "equalize_histogram",
    "foreground_box",
    "percentile_window",
    "resize_pad_geometry",
    "resize_with_pad",
    "window",
    "zscore_masked",
]


def window(image: torch.Tensor, *, low: float, high: float, inplace: bool = False) -> torch.Tensor:
    """Clip intensities to ``[low, high]`` and rescale that range to ``[0, 1]``.

    Used for CT with a Hounsfield-unit window (``low``, ``high`` in HU).

    Raises
    ------
    ConfigError
        When ``high <= low``.

    Examples
    --------
    >>> window(torch.tensor([-1200.0, 40.0, 240.0]), low=-160.0, high=240.0).tolist()
    [0.0, 0.5, 1.0]
    """
    if not high > low:
        raise ConfigError(f"window must have high > low, got low={low}, high={high}")
    out = image if inplace and image.is_floating_point() else image.to(torch.float32, copy=True)
    return out.clamp_(low, high).sub_(low).div_(high - low)


def clip_zscore(
    image: torch.Tensor,
    *,
    low: Sequence[float],
    high: Sequence[float],
    mean: Sequence[float],
    std: Sequence[float],
    inplace: bool = False,
) -> torch.Tensor:
    """nnU-Net's CT normalisation: clip each channel to ``[low, high]``, then z-score it.

    The four values per channel come from the dataset fingerprint: the foreground 0.5 and 99.5
    percentiles and the foreground mean and standard deviation.

    Raises
    ------
    ConfigError
        When a ``std`` is not positive or the lengths do not match the channels.

    Examples
    --------
    >>> x = torch.tensor([[-1000.0, 50.0, 3000.0]])
    >>> clip_zscore(x, low=[-100.0], high=[300.0], mean=[100.0], std=[50.0]).tolist()
    [[-4.0, -1.0, 4.0]]
    """
    n = image.shape[0]
    if not len(low) == len(high) == len(mean) == len(std) == n:
        raise ConfigError(
            f"need one low/high/mean/std per channel ({n}), got {len(low)}, {len(high)}, "
            f"{len(mean)}, {len(std)}; the fingerprint must cover every channel"
        )
    if any(not s > 0 for s in std):
        raise ConfigError(f"std must be > 0 for every channel, got {list(std)}")
    out = image if inplace and image.is_floating_point() else image.to(torch.float32, copy=True)
    for c in range(n):
        out[c].clamp_(low[c], high[c]).sub_(mean[c]).div_(std[c])
    return out


def zscore_masked(
    image: torch.Tensor, *, mask: torch.Tensor | None = None, inplace: bool = False
) -> torch.Tensor:
    """Z-score each channel with the mean and std of its voxels inside ``mask``.

    Voxels outside the mask are set to 0 (nnU-Net's ``use_mask_for_norm``).

    Parameters
    ----------
    image : (C, ...) tensor
    mask : (1 or C, ...) bool tensor, optional
        Default: each channel's non-zero voxels.

    Raises
    ------
    ValueError
        When a channel is constant inside its mask (std 0) or the mask is empty.

    Examples
    --------
    >>> zscore_masked(torch.tensor([[0.0, 1.0, 3.0]])).tolist()
    [[0.0, -1.0, 1.0]]
    """
    out = image if inplace and image.is_floating_point() else image.to(torch.float32, copy=True)
    for c in range(out.shape[0]):
        m = (out[c] != 0) if mask is None else mask[min(c, mask.shape[0] - 1)].bool()
        values = out[c][m].to(torch.float64)
        if values.numel() == 0:
            raise ValueError(f"the normalisation mask of channel {c} is empty; pass another mask")
        mean, std = float(values.mean()), float(values.std(correction=0))
        if not std > 0:
            raise ValueError(
                f"channel {c} is constant ({mean}) inside its mask: std must be > 0 to z-score; "
                "check the image or use another mask"
            )
        out[c].sub_(mean).div_(std).masked_fill_(~m, 0.0)
    return out


def percentile_window(
    image: torch.Tensor, *, low_pct: float, high_pct: float, inplace: bool = False
) -> torch.Tensor:
    """Clip each channel to its own ``[low_pct, high_pct]`` percentiles and rescale to ``[0, 1]``.

    Raises
    ------
    ConfigError
        When not ``0 <= low_pct < high_pct <= 100``.
    ValueError
        When a channel's two percentiles are equal (a flat image).

    Examples
    --------
    >>> percentile_window(torch.arange(5.0)[None], low_pct=25.0, high_pct=75.0).tolist()
    [[0.0, 0.0, 0.5, 1.0, 1.0]]
    """
    if not 0 <= low_pct < high_pct <= 100:
        raise ConfigError(f"need 0 <= low_pct < high_pct <= 100, got {low_pct}, {high_pct}")
    out = image if inplace and image.is_floating_point() else image.to(torch.float32, copy=True)
    for c in range(out.shape[0]):
        lo, hi = np.percentile(out[c].numpy(), [low_pct, high_pct])
        if not hi > lo:
            raise ValueError(
                f"channel {c} has equal {low_pct} and {high_pct} percentiles ({lo}); the image "
                "is flat, nothing to window"
            )
        out[c].clamp_(float(lo), float(hi)).sub_(float(lo)).div_(float(hi - lo))
    return out


def equalize_histogram(image: torch.Tensor, *, bins: int = 256) -> torch.Tensor:
    """Histogram-equalise each channel of an image scaled to ``[0, 1]``; output in ``[0, 1]``.

    Examples
    --------
    >>> equalize_histogram(torch.tensor([[0.0, 0.1, 0.2, 1.0]]), bins=4).tolist()
    [[0.5, 0.5, 0.75, 1.0]]
    """
    if bins < 2:
        raise ConfigError(f"bins must be >= 2, got {bins}")
    out = image.to(torch.float32, copy=True)
    for c in range(out.shape[0]):
        idx = (out[c].clamp(0, 1) * (bins - 1)).round().long()
        cdf = torch.bincount(idx.flatten(), minlength=bins).cumsum(0).to(torch.float32)
        out[c] = (cdf / cdf[-1])[idx]
    return out


def resize_pad_geometry(
    shape: Sequence[int], size_px: Sequence[int]
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Size of the resized image and its offset in the padded one (:func:`resize_with_pad`).

    The image is scaled by ``min(size / shape)``; each axis becomes ``max(1, round(n * scale))``
    pixels and is centred. Output pixel ``j`` of axis ``a`` reads input coordinate
    ``(j - offset[a] + 0.5) * shape[a] / new[a] - 0.5`` (PyTorch's ``align_corners=False``).

    Raises
    ------
    ConfigError
        When the shapes are not two positive sizes each.

    Examples
    --------
    >>> resize_pad_geometry((64, 80), (100, 100))  # x 1.25: 80 x 100, 10 empty rows each side
    ((80, 100), (10, 0))
    """
    if len(shape) != 2 or len(size_px) != 2 or min(*shape, *size_px) <= 0:
        raise ConfigError(
            f"need a 2D image shape and a 2D size, both positive, got {tuple(shape)}, "
            f"{tuple(size_px)}"
        )
    scale = min(size_px[0] / shape[0], size_px[1] / shape[1])
    new = tuple(max(1, round(n * scale)) for n in shape)
    return new, tuple((s - n) // 2 for s, n in zip(size_px, new, strict=True))


def resize_with_pad(image: torch.Tensor, *, size_px: tuple[int, int]) -> torch.Tensor:
    """Resize a 2D channel-first image to fit ``size_px`` keeping its aspect ratio; pad with 0.

    The image is scaled by ``min(size / shape)`` (bilinear, antialiased when shrinking) and
    centred; the margins are zero (:func:`resize_pad_geometry` gives the sizes).

    Examples
    --------
    >>> resize_with_pad(torch.ones(1, 4, 2), size_px=(8, 8))[0, 0].tolist()
    [0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0]
    """
    if image.ndim != 3 or len(size_px) != 2 or any(n <= 0 for n in size_px):
        raise ConfigError(
            f"need a (C, X, Y) image and a positive size, got {tuple(image.shape)}, {size_px}"
        )
    new, (x0, y0) = resize_pad_geometry(image.shape[1:], size_px)
    scale = min(size_px[0] / image.shape[1], size_px[1] / image.shape[2])
    resized = F.interpolate(
        image[None].to(torch.float32),
        size=list(new),
        mode="bilinear",
        align_corners=False,
        antialias=scale < 1,
    )[0]
    out = torch.zeros((image.shape[0], *size_px), dtype=torch.float32)
    out[:, x0 : x0 + new[0], y0 : y0 + new[1]] = resized
    return out


def foreground_box(
    image: torch.Tensor | NDArray[Any], *, above: float, margin_vox: int = 0
) -> tuple[tuple[int, int], ...]:
    """Bounding box ``[start, stop)`` per spatial axis of voxels whose any channel is > ``above``.

    Accepts numpy arrays (including reoriented views) and CPU tensors.

    Raises
    ------
    ValueError
        When no voxel is above the threshold.

    Examples
    --------
    >>> x = np.zeros((1, 5, 4)); x[0, 1:3, 2] = 9.0
    >>> foreground_box(x, above=0.0, margin_vox=1)
    ((0, 4), (1, 4))
    """
    fg = (np.asarray(image) > above).any(axis=0)
    if not fg.any():
        raise ValueError(
            f"no voxel is above the foreground threshold {above}; lower crop_foreground_above "
            "or switch the crop off"
        )
    box = []
    for axis in range(fg.ndim):
        others = tuple(a for a in range(fg.ndim) if a != axis)
        hits = np.flatnonzero(np.any(fg, axis=others))
        start = max(int(hits[0]) - margin_vox, 0)
        stop = min(int(hits[-1]) + 1 + margin_vox, fg.shape[axis])
        box.append((start, stop))
    return tuple(box)
