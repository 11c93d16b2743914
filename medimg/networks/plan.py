"""nnU-Net-style kernel and stride plan for DynUNet, derived from the patch size and spacing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from medimg.errors import ConfigError

__all__ = ["UNetPlan", "plan_unet"]

_MIN_FEATURE_MAP_VOX = 4
_MAX_POOLINGS = 5
_ANISOTROPY_RATIO = 2.0


@dataclass(frozen=True)
class UNetPlan:
    """Per-level convolution kernels and strides of a U-Net encoder.

    Attributes
    ----------
    kernels : tuple of tuple of int
        Kernel size per level and axis (first level first).
    strides : tuple of tuple of int
        Stride per level and axis; the first level's is all ones.
    """

    kernels: tuple[tuple[int, ...], ...]
    strides: tuple[tuple[int, ...], ...]

    @property
    def levels(self) -> int:
        """Number of resolution levels (poolings + 1)."""
        return len(self.strides)


def plan_unet(roi_size_vox: Sequence[int], spacing_mm: Sequence[float]) -> UNetPlan:
    """Kernels and strides the way nnU-Net plans them.

    At each level, an axis is downsampled by 2 when its spacing is within a factor 2 of the
    finest spacing and its feature map stays at least 4 voxels; otherwise its stride is 1. An
    axis much coarser than the finest one (ratio > 2) gets a kernel of 1 (in-plane convolution)
    until pooling the others has caught up. At most 5 poolings.

    Parameters
    ----------
    roi_size_vox : sequence of int
        Patch size per axis.
    spacing_mm : sequence of float
        Voxel size per axis, same order.

    Raises
    ------
    ConfigError
        When the lengths differ, or an axis that must be pooled has an odd size.

    Examples
    --------
    >>> p = plan_unet((64, 64, 16), (0.8, 0.8, 3.0))
    >>> p.strides
    ((1, 1, 1), (2, 2, 1), (2, 2, 2), (2, 2, 2), (2, 2, 1))
    >>> p.kernels
    ((3, 3, 1), (3, 3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3))
    """
    if len(roi_size_vox) != len(spacing_mm):
        raise ConfigError(
            f"roi_size_vox and spacing_mm must have one value per axis, "
            f"got {tuple(roi_size_vox)} and {tuple(spacing_mm)}"
        )
    sizes = [int(s) for s in roi_size_vox]
    spacing = [float(s) for s in spacing_mm]
    kernels: list[tuple[int, ...]] = []
    strides: list[tuple[int, ...]] = [tuple(1 for _ in sizes)]
    for _ in range(_MAX_POOLINGS):
        ratios = [s / min(spacing) for s in spacing]
        kernels.append(tuple(3 if r <= _ANISOTROPY_RATIO else 1 for r in ratios))
        stride = tuple(
            2 if r <= _ANISOTROPY_RATIO and n >= 2 * _MIN_FEATURE_MAP_VOX else 1
            for r, n in zip(ratios, sizes, strict=True)
        )
        if all(s == 1 for s in stride):
            break
        odd = [n for n, s in zip(sizes, stride, strict=True) if s == 2 and n % 2]
        if odd:
            raise ConfigError(
                f"roi_size_vox must be divisible by 2 at every pooling level, got "
                f"{tuple(roi_size_vox)} (a level of size {odd[0]}); use multiples of 16"
            )
        sizes = [n // s for n, s in zip(sizes, stride, strict=True)]
        spacing = [sp * s for sp, s in zip(spacing, stride, strict=True)]
        strides.append(stride)
    kernels = [*kernels[: len(strides) - 1], tuple(3 for _ in sizes)]
    return UNetPlan(kernels=tuple(kernels), strides=tuple(strides))
