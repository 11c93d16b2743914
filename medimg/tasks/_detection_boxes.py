"""Detection boxes between world RAS+ mm and the voxels of a grid (chain grid, stored grid).

A box is ``(x0, y0, z0, x1, y1, z1)`` in continuous voxel coordinates (voxel ``k``'s centre
at ``k``, :mod:`medimg.networks.detection`). Grids may be oblique to the world axes while
boxes are axis-aligned in their own frame, so a box is carried from one frame to another as
the ellipsoid it bounds: the centre maps exactly through the affines, and the half-size along
each new axis is that of the mapped ellipsoid, ``h'_i = sqrt(sum_j (M[i, j] h_j) ** 2)``. For a
sphere (a nodule) this is exact both ways (radius ``r`` mm is ``r / spacing_i`` voxels on any
grid, rotated or not); between grids that differ by axis permutations, flips and scaling (the
stored grid and the chain's RAS-resampled grid) it is exact for any box.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from medimg.manifests import Box

__all__ = ["boxes_to_grid", "map_boxes", "world_centre_size"]


def map_boxes(boxes_vox: NDArray[np.floating], matrix: NDArray[np.float64]) -> NDArray[np.float64]:
    """Carry voxel boxes ``(N, 6)`` by the homogeneous 4x4 ``matrix`` (module notes).

    Examples
    --------
    >>> scale = np.diag([2.0, 1.0, 0.5, 1.0]); scale[:3, 3] = (1.0, 0.0, 0.0)
    >>> map_boxes(np.array([[0.0, 0.0, 0.0, 2.0, 2.0, 2.0]]), scale).tolist()
    [[1.0, 0.0, 0.0, 5.0, 2.0, 1.0]]
    """
    boxes = np.asarray(boxes_vox, dtype=np.float64).reshape(-1, 6)
    centre, half = (boxes[:, :3] + boxes[:, 3:]) / 2, (boxes[:, 3:] - boxes[:, :3]) / 2
    new_centre = centre @ matrix[:3, :3].T + matrix[:3, 3]
    new_half = np.sqrt(((half[:, None, :] * matrix[None, :3, :3]) ** 2).sum(axis=2))
    return np.concatenate([new_centre - new_half, new_centre + new_half], axis=1)


def boxes_to_grid(
    boxes: Sequence[Box], classes: Sequence[str], grid_affine: NDArray[np.float64]
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """Manifest boxes (world RAS+ mm) as voxel boxes of the grid of ``grid_affine``, and labels.

    Returns ``(N, 6)`` float32 boxes and ``(N,)`` 0-based class indices into ``classes``.
    """
    if not boxes:
        return np.zeros((0, 6), np.float32), np.zeros(0, np.int64)
    world = np.array([[*b.min_mm, *b.max_mm] for b in boxes], dtype=np.float64)
    vox = map_boxes(world, np.asarray(np.linalg.inv(grid_affine), dtype=np.float64))
    labels = np.array([list(classes).index(b.class_name) for b in boxes], dtype=np.int64)
    return vox.astype(np.float32), labels


def world_centre_size(
    boxes_vox: NDArray[np.floating], affine: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """World RAS+ centres and sizes (mm, ``(N, 3)`` each) of voxel boxes on ``affine``'s grid."""
    world = map_boxes(boxes_vox, affine)
    return (world[:, :3] + world[:, 3:]) / 2, world[:, 3:] - world[:, :3]
