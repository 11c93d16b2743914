"""Grid geometry: the source record, axis codes, spacing, shear checks and reorientation.

Conventions
-----------
Arrays are channel-first, ``(C, X, Y[, Z])``; affines are 4x4 voxel-to-world matrices whose world
frame is RAS+ in millimetres (NIfTI's and MONAI's convention). DICOM, NRRD and MetaImage store
LPS+; :func:`lps_to_ras` converts, which flips the sign of the first two world rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from medimg.errors import GeometryError
from medimg.typing import Affine, SpacingMM

__all__ = [
    "SHEAR_TOLERANCE_DEG",
    "SourceGeometry",
    "affine_axcodes",
    "affine_spacing",
    "lps_to_ras",
    "max_shear_deg",
    "reorient",
    "reorient_affine",
]

SHEAR_TOLERANCE_DEG = 0.01
"""Largest deviation from 90 degrees between two voxel axes that is still called orthogonal."""

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass(frozen=True, eq=False)
class SourceGeometry:
    """Where a volume came from and the grid it lives on.

    Attributes
    ----------
    path : Path
        The file (or DICOM series folder) read.
    format : str
        ``"nifti"``, ``"analyze"``, ``"nrrd"``, ``"metaimage"`` or ``"dicom"``.
    shape : tuple of int
        Spatial shape as stored (without the channel axis).
    affine : (4, 4) ndarray of float64
        Voxel-to-world matrix, RAS+ millimetres, for the stored voxel order.
    dtype : str
        On-disk voxel dtype (before any scaling), as a numpy dtype string.
    n_channels : int
        Number of channels (1 for a plain 3D volume; the 4th dimension of a 4D file).
    """

    path: Path
    format: str
    shape: tuple[int, ...]
    affine: Affine
    dtype: str
    n_channels: int = 1

    @property
    def axcodes(self) -> tuple[str, ...]:
        """Anatomical direction each stored voxel axis points to, e.g. ``('L', 'P', 'S')``."""
        return affine_axcodes(self.affine, len(self.shape))

    @property
    def spacing_mm(self) -> SpacingMM:
        """Voxel size in millimetres along each stored axis."""
        return affine_spacing(self.affine, len(self.shape))

    @property
    def ndim(self) -> int:
        """Number of spatial dimensions (2 or 3)."""
        return len(self.shape)

    def same_grid(self, other: SourceGeometry, *, tolerance_mm: float = 1e-3) -> bool:
        """Whether ``other`` has the same shape and an affine within ``tolerance_mm``."""
        return self.shape == other.shape and grid_difference_mm(self, other) <= tolerance_mm

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SourceGeometry):
            return NotImplemented
        return (
            self.path == other.path
            and self.format == other.format
            and self.shape == other.shape
            and self.dtype == other.dtype
            and self.n_channels == other.n_channels
            and np.array_equal(self.affine, other.affine)
        )

    __hash__ = None  # type: ignore[assignment]  # mutable ndarray inside: not hashable

    def describe(self) -> dict[str, object]:
        """Plain-data summary (JSON-serialisable) used by ``medimg info`` and run records."""
        return {
            "file": str(self.path),
            "format": self.format,
            "shape": list(self.shape),
            "channels": self.n_channels,
            "spacing_mm": [round(s, 6) for s in self.spacing_mm],
            "axcodes": "".join(self.axcodes),
            "dtype": self.dtype,
            "affine": [[round(float(v), 6) for v in row] for row in self.affine],
        }


def grid_difference_mm(a: SourceGeometry, b: SourceGeometry) -> float:
    """Largest distance in mm between corresponding corner voxel centres of two grids.

    Both grids must have the same shape; this is the number manifests print when an image and
    its label do not line up.
    """
    if a.shape != b.shape:
        raise GeometryError(
            f"grids must have the same shape to be compared, got {a.shape} and {b.shape}"
        )
    corners = np.array(np.meshgrid(*[[0, n - 1] for n in a.shape], indexing="ij")).reshape(
        a.ndim, -1
    )
    hom = np.vstack(
        [corners, np.zeros((3 - a.ndim, corners.shape[1])), np.ones((1, corners.shape[1]))]
    )
    diff = (a.affine @ hom - b.affine @ hom)[:3]
    return float(np.sqrt((diff**2).sum(axis=0)).max())


def lps_to_ras(affine_lps: NDArray[np.float64]) -> Affine:
    """Convert a voxel-to-LPS affine (DICOM, NRRD, MetaImage) to voxel-to-RAS.

    Examples
    --------
    >>> lps_to_ras(np.eye(4)).diagonal().tolist()
    [-1.0, -1.0, 1.0, 1.0]
    """
    return np.asarray(_LPS_TO_RAS @ affine_lps, dtype=np.float64)


def affine_spacing(affine: NDArray[np.float64], ndim: int = 3) -> SpacingMM:
    """Voxel size in mm along each voxel axis: the norms of the affine's first ``ndim`` columns.

    Examples
    --------
    >>> affine_spacing(np.diag([0.5, -0.7, 2.5, 1.0]))
    (0.5, 0.7, 2.5)
    """
    return tuple(float(np.linalg.norm(affine[:3, i])) for i in range(ndim))


def affine_axcodes(affine: NDArray[np.float64], ndim: int = 3) -> tuple[str, ...]:
    """Closest anatomical direction (RAS+ letters) of each voxel axis.

    Examples
    --------
    >>> affine_axcodes(np.diag([-1.0, -1.0, 2.0, 1.0]))
    ('L', 'P', 'S')
    """
    from nibabel.orientations import aff2axcodes

    codes = aff2axcodes(np.asarray(affine, dtype=np.float64))
    return tuple(str(c) for c in codes[:ndim])


def max_shear_deg(affine: NDArray[np.float64]) -> float:
    """Largest deviation from 90 degrees between any two voxel axes of ``affine``, in degrees.

    Zero for every rotation-times-scaling affine; non-zero for a sheared grid.

    Examples
    --------
    >>> max_shear_deg(np.diag([1.0, 2.0, 3.0, 1.0]))
    0.0
    """
    cols = np.asarray(affine, dtype=np.float64)[:3, :3]
    norms = np.linalg.norm(cols, axis=0)
    if np.any(norms == 0):
        raise GeometryError(f"affine has a zero-length voxel axis (column norms {norms.tolist()})")
    unit = cols / norms
    worst = 0.0
    for i in range(3):
        for j in range(i + 1, 3):
            cos = float(np.clip(abs(unit[:, i] @ unit[:, j]), 0.0, 1.0))
            worst = max(worst, 90.0 - float(np.degrees(np.arccos(cos))))
    return worst


def _orientation_to_ras(affine: NDArray[np.float64], ndim: int) -> NDArray[np.float64]:
    """Orientation array (nibabel form) mapping the stored voxel axes onto R, A, S order.

    For a 2D image (the affine's third column is the plane normal) the two in-plane axes are
    ordered by the world axis each is closest to and flipped to point to +R, +A or +S, so a
    coronal radiograph stored ``LS`` becomes ``RS``.
    """
    from nibabel.orientations import io_orientation

    ornt = np.asarray(io_orientation(np.asarray(affine, dtype=np.float64)), dtype=np.float64)
    if ndim == 2:
        in_plane = ornt[:2].copy()
        in_plane[:, 0] = np.argsort(np.argsort(in_plane[:, 0]))  # world axis -> rank 0 or 1
        return in_plane
    return ornt


def reorient_affine(
    affine: NDArray[np.float64], spatial_shape: tuple[int, ...]
) -> tuple[Affine, NDArray[np.float64]]:
    """The RAS-ordered affine of a grid, and the nibabel orientation array that gets there.

    Returns
    -------
    affine_ras : (4, 4) ndarray
        Affine of the grid after its axes are permuted and flipped to RAS order. The world
        position of every voxel centre is unchanged.
    ornt : (ndim, 2) ndarray
        nibabel orientation (axis, flip) for :func:`nibabel.orientations.apply_orientation`.
    """
    from nibabel.orientations import inv_ornt_aff

    ndim = len(spatial_shape)
    ornt = _orientation_to_ras(affine, ndim)
    full = np.vstack([ornt, [[2.0, 1.0]]]) if ndim == 2 else ornt
    shape3 = (*spatial_shape, 1) if ndim == 2 else spatial_shape
    new_affine = np.asarray(affine, dtype=np.float64) @ inv_ornt_aff(full, shape3)
    return new_affine, ornt


def reorient(
    array: NDArray[np.generic], affine: NDArray[np.float64]
) -> tuple[NDArray[np.generic], Affine]:
    """Permute and flip a channel-first array so its voxel axes run R, A, S (closest axes).

    Only axis permutations and flips are used, never interpolation, so voxel values are
    unchanged and a 101-voxel axis stays 101 voxels long.

    Parameters
    ----------
    array : (C, X, Y[, Z]) ndarray
        Channel-first array on the grid of ``affine``.
    affine : (4, 4) ndarray
        Voxel-to-RAS affine of the array's spatial axes.

    Returns
    -------
    array_ras : ndarray
        A view of ``array`` (no copy) with spatial axes in RAS order.
    affine_ras : (4, 4) ndarray
        Its affine.

    Examples
    --------
    >>> arr = np.arange(6).reshape(1, 3, 2, 1)
    >>> out, aff = reorient(arr, np.diag([-1.0, 1.0, 1.0, 1.0]))
    >>> out[0, :, 0, 0].tolist(), float(aff[0, 0])
    ([4, 2, 0], 1.0)
    """
    from nibabel.orientations import apply_orientation

    spatial = tuple(array.shape[1:])
    new_affine, ornt = reorient_affine(affine, spatial)
    # apply_orientation works on the leading axes; move the channel axis last and back.
    moved = np.moveaxis(array, 0, -1)
    out = np.moveaxis(apply_orientation(moved, ornt), -1, 0)
    return out, new_affine
