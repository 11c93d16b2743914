"""Resample a tilted or unevenly spaced slice stack onto an orthogonal, even grid.

Only used when asked (``gantry_tilt="resample"`` or ``uneven_spacing="resample"``). The target
grid keeps the slice planes: its axes are the row and column directions and the slice normal,
its slice step the median distance between slice planes. A gantry tilt only shifts each slice
within its own plane, so it is undone by an in-plane (bilinear) shift, as dcm2niix and
dicom2nifti do, and the grid grows to hold the shifted slices. A target slice in a gap
(a missing slice) is interpolated linearly between the two slices that bracket it. Points
outside the stack get the modality's background (:func:`background_value`): air, -1024 HU,
for CT and 0 otherwise, never the stack's minimum (which may be a scanner's padding value or
a dark artefact).
"""

from __future__ import annotations

import logging

import numpy as np
from numpy.typing import NDArray

from medimg.io.dicom.checks import StackGeometry

__all__ = ["background_value", "resample_stack", "resampled_grid"]

logger = logging.getLogger(__name__)


_BACKGROUND = {"CT": -1024.0}  # air in HU; other modalities: 0 (no signal)


def background_value(modality: str) -> float:
    """Value of voxels outside the source stack: -1024 (air, HU) for CT, else 0.

    Examples
    --------
    >>> background_value("CT"), background_value("MR")
    (-1024.0, 0.0)
    """
    return _BACKGROUND.get(modality.upper(), 0.0)


def resample_stack(
    stack: NDArray[np.generic], geometry: StackGeometry, *, fill: float = 0.0
) -> tuple[NDArray[np.float32], NDArray[np.float64]]:
    """Resample ``stack`` (columns, rows, slices) onto an orthogonal grid with an even step.

    Parameters
    ----------
    stack : (X, Y, Z) ndarray
        Slices in the order of ``geometry.frames``.
    geometry : StackGeometry
        Where each slice lies.
    fill : float
        Value of target voxels outside the stack (see :func:`background_value`).

    Returns
    -------
    array : (X', Y', Z') ndarray of float32
        The resampled values.
    affine_lps : (4, 4) ndarray
        Its voxel-to-LPS affine: orthogonal axes, the pixel spacing in plane and the median
        slice step along the stacking direction.
    """
    from scipy.ndimage import map_coordinates

    frames = geometry.frames
    cosines, row_mm, col_mm, origin, rel = _stack_frame(geometry)
    normal = np.cross(cosines[:3], cosines[3:])
    t_k = rel @ normal  # slice offsets along the normal
    a_k, b_k = rel @ cosines[:3], rel @ cosines[3:]  # in-plane shift of each slice origin
    (n_x, n_y, n_z), affine = resampled_grid(geometry)
    source = stack.astype(np.float32, copy=False)
    out = np.empty((n_x, n_y, n_z), dtype=np.float32)
    ii, jj = np.meshgrid(np.arange(n_x), np.arange(n_y), indexing="ij")
    for kz in range(n_z):
        world = (
            affine[:3, 3]
            - origin
            + np.multiply.outer(ii, affine[:3, 0])
            + np.multiply.outer(jj, affine[:3, 1])
            + kz * affine[:3, 2]
        )
        t = world @ normal
        f = np.interp(t, t_k, np.arange(len(frames), dtype=np.float64))
        ci = (world @ cosines[:3] - np.interp(t, t_k, a_k)) / col_mm
        ri = (world @ cosines[3:] - np.interp(t, t_k, b_k)) / row_mm
        # voxels beyond the stack (by more than a rounding error) get the fill value
        outside = (t < t_k[0] - 1e-3) | (t > t_k[-1] + 1e-3)
        outside |= (ci < -1e-3) | (ci > stack.shape[0] - 1 + 1e-3)
        outside |= (ri < -1e-3) | (ri > stack.shape[1] - 1 + 1e-3)
        values = map_coordinates(source, [ci, ri, f], order=1, mode="nearest")
        values[outside] = fill
        out[:, :, kz] = values
    logger.warning(
        "resampled %d slices (tilt %.2f deg%s) onto an orthogonal %s grid at %.3f mm steps",
        len(frames),
        geometry.tilt_deg,
        ", uneven steps" if geometry.uneven else "",
        out.shape,
        float(np.linalg.norm(affine[:3, 2])),
    )
    return out, affine


def _stack_frame(
    geometry: StackGeometry,
) -> tuple[NDArray[np.float64], float, float, NDArray[np.float64], NDArray[np.float64]]:
    """Direction cosines, row and column spacing (mm), first slice origin, slice offsets (LPS)."""
    frames = geometry.frames
    cosines = np.asarray(frames[0].orientation, dtype=np.float64)
    row_mm, col_mm = frames[0].pixel_spacing_mm or (1.0, 1.0)
    positions = np.array([f.position_lps for f in frames], dtype=np.float64)
    return cosines, float(row_mm), float(col_mm), positions[0], positions - positions[0]


def resampled_grid(geometry: StackGeometry) -> tuple[tuple[int, int, int], NDArray[np.float64]]:
    """Shape and voxel-to-LPS affine of the grid :func:`resample_stack` produces."""
    cosines, row_mm, col_mm, origin, rel = _stack_frame(geometry)
    # the slice planes are kept: each target slice lies in the plane of a source slice (or
    # between two, for a gap), shifted in plane by the tilt; the new axes are row, column, normal
    axes = np.stack([cosines[:3], cosines[3:], np.cross(cosines[:3], cosines[3:])], axis=1)
    along = rel @ axes[:, 2]
    step = float(np.median(np.diff(along)))
    n_z = round((along[-1] - along[0]) / step) + 1
    # in-plane extent: every corner of every slice, in the target frame
    cols, rows, _ = geometry.shape
    corners = np.array(
        [[0, 0], [cols - 1, 0], [0, rows - 1], [cols - 1, rows - 1]], dtype=np.float64
    )
    pts = (
        rel[:, None, :]
        + corners[None, :, :1] * col_mm * cosines[:3]
        + corners[None, :, 1:] * row_mm * cosines[3:]
    ).reshape(-1, 3) @ axes[:, :2]
    low = pts.min(axis=0)
    n_x = int(np.floor((pts[:, 0].max() - low[0]) / col_mm + 1e-6)) + 1
    n_y = int(np.floor((pts[:, 1].max() - low[1]) / row_mm + 1e-6)) + 1
    affine = np.eye(4)
    affine[:3, :3] = axes * np.array([col_mm, row_mm, step])
    affine[:3, 3] = origin + axes[:, :2] @ low
    return (n_x, n_y, n_z), affine
