"""The record a preprocessing chain keeps of what it did to a volume's grid.

A :class:`PreprocessRecord` holds every grid a volume passed through: the stored (source) grid,
the same grid in RAS voxel order, the crop box, and the current grid (after resampling). It is
all :func:`medimg.transforms.inversion.to_source_grid` needs to bring a prediction back.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from medimg.errors import GeometryError
from medimg.io.geometry import affine_spacing, reorient_affine
from medimg.typing import Affine

__all__ = ["PreprocessRecord"]


def _affine(a: Any) -> Affine:
    out = np.array(a, dtype=np.float64)
    if out.shape != (4, 4):
        raise GeometryError(f"an affine must be a 4x4 matrix, got shape {out.shape}")
    return out


@dataclass(frozen=True, eq=False)
class PreprocessRecord:
    """Grids a volume or a 2D image passed through during preprocessing (spatial shapes only).

    Attributes
    ----------
    source_shape, source_affine
        The grid as stored on disk (voxel-to-RAS affine).
    ornt : tuple of (int, int)
        For each stored axis ``i``, the RAS axis it becomes and ``1`` or ``-1`` for a flip
        (nibabel's orientation array).
    ras_shape, ras_affine
        The grid after permuting and flipping the axes to RAS order.
    crop_box : tuple of (int, int)
        ``[start, stop)`` per RAS axis of the region kept by the foreground crop.
    grid_shape, grid_affine
        The current grid: the cropped grid, resampled when resampling ran (for X-ray: the
        resized and padded grid; 2D affines are 4x4 too, the third column the plane normal).
    """

    source_shape: tuple[int, ...]
    source_affine: Affine
    ornt: tuple[tuple[int, int], ...]
    ras_shape: tuple[int, ...]
    ras_affine: Affine
    crop_box: tuple[tuple[int, int], ...]
    grid_shape: tuple[int, ...]
    grid_affine: Affine

    @classmethod
    def from_source(cls, shape: tuple[int, ...], affine: Affine) -> PreprocessRecord:
        """Record of a volume just loaded: every grid is the stored one (identity orientation)."""
        shape = tuple(int(n) for n in shape)
        aff = _affine(affine)
        return cls(
            source_shape=shape,
            source_affine=aff,
            ornt=tuple((i, 1) for i in range(len(shape))),
            ras_shape=shape,
            ras_affine=aff,
            crop_box=tuple((0, n) for n in shape),
            grid_shape=shape,
            grid_affine=aff,
        )

    def reoriented(self) -> PreprocessRecord:
        """Return the record after reorientation to RAS (before any crop or resample)."""
        if self.ras_shape != self.source_shape or self.grid_shape != self.source_shape:
            raise GeometryError(
                "reorientation must be the first grid change of a chain, got a record already "
                f"cropped or resampled to {self.grid_shape}; put the RAS step first"
            )
        ras_affine, ornt = reorient_affine(self.source_affine, self.source_shape)
        axes = [int(a) for a in ornt[:, 0]]
        ras_shape = tuple(self.source_shape[axes.index(p)] for p in range(len(axes)))
        return replace(
            self,
            ornt=tuple((int(a), int(f)) for a, f in ornt),
            ras_shape=ras_shape,
            ras_affine=ras_affine,
            crop_box=tuple((0, n) for n in ras_shape),
            grid_shape=ras_shape,
            grid_affine=ras_affine,
        )

    def cropped(self, box: tuple[tuple[int, int], ...]) -> PreprocessRecord:
        """Return the record after cropping the RAS grid to ``box`` (before any resampling)."""
        if self.grid_shape != tuple(b - a for a, b in self.crop_box):
            raise GeometryError(
                f"cropping must come before resampling, got a grid of {self.grid_shape} for a "
                f"crop box {self.crop_box}; move the crop step before the resample step"
            )
        base = [a for a, _ in self.crop_box]
        new_box = tuple((base[p] + a, base[p] + b) for p, (a, b) in enumerate(box))
        shift = np.eye(4)
        shift[: len(box), 3] = [a for a, _ in new_box]
        return replace(
            self,
            crop_box=new_box,
            grid_shape=tuple(b - a for a, b in new_box),
            grid_affine=self.ras_affine @ shift,
        )

    def resampled(self, shape: tuple[int, ...], affine: Affine) -> PreprocessRecord:
        """Return the record with the current grid replaced by a resampled one."""
        return replace(self, grid_shape=tuple(int(n) for n in shape), grid_affine=_affine(affine))

    @property
    def grid_spacing_mm(self) -> tuple[float, ...]:
        """Voxel size of the current grid, mm, RAS axis order."""
        return affine_spacing(self.grid_affine, len(self.grid_shape))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable form (for caches and run records)."""
        return {
            "source_shape": list(self.source_shape),
            "source_affine": self.source_affine.tolist(),
            "ornt": [list(o) for o in self.ornt],
            "ras_shape": list(self.ras_shape),
            "ras_affine": self.ras_affine.tolist(),
            "crop_box": [list(b) for b in self.crop_box],
            "grid_shape": list(self.grid_shape),
            "grid_affine": self.grid_affine.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreprocessRecord:
        """Inverse of :meth:`to_dict`."""
        return cls(
            source_shape=tuple(int(n) for n in data["source_shape"]),
            source_affine=_affine(data["source_affine"]),
            ornt=tuple((int(a), int(f)) for a, f in data["ornt"]),
            ras_shape=tuple(int(n) for n in data["ras_shape"]),
            ras_affine=_affine(data["ras_affine"]),
            crop_box=tuple((int(a), int(b)) for a, b in data["crop_box"]),
            grid_shape=tuple(int(n) for n in data["grid_shape"]),
            grid_affine=_affine(data["grid_affine"]),
        )
