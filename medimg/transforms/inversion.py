"""Bring a prediction made on the preprocessed grid back onto the image's stored grid.

:func:`to_source_grid` undoes a chain from its :class:`~medimg.transforms.record.PreprocessRecord`
alone: one separable resample from the current grid onto the cropped RAS grid (the map is
diagonal because resampling keeps the axes' directions), padding for the crop, then the axis
permutation and flips of the reorientation. Shapes come from the record, never from rounding,
so a 101-voxel axis comes back as 101 voxels.

``z_range`` computes only a slab of the output's last (stored) axis; slabs concatenated along
that axis equal the whole, so an inference engine can write a full-resolution probability map
without ever holding it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np
import torch
from numpy.typing import NDArray

from medimg.errors import GeometryError
from medimg.transforms.record import PreprocessRecord
from medimg.transforms.resample import Interp, resample_separable

__all__ = ["to_source_grid"]

ArrayT = TypeVar("ArrayT", torch.Tensor, NDArray[Any])


def _grid_to_ras_map(record: PreprocessRecord) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Per-axis (scale, offset) with ``current-grid coord = scale * ras_index + offset``."""
    m = np.linalg.solve(record.grid_affine, record.ras_affine)
    ndim = len(record.ras_shape)
    off_diag = m[:ndim, :ndim] - np.diag(np.diag(m[:ndim, :ndim]))
    if np.abs(off_diag).max(initial=0.0) > 1e-6:
        raise GeometryError(
            "the current grid must share the RAS grid's axis directions (a diagonal map), got "
            f"the map {np.round(m[:ndim, :ndim], 6).tolist()}; the record was not made by "
            "medimg's chain"
        )
    scale = np.asarray(np.diag(m)[:ndim], dtype=np.float64)
    return scale, np.asarray(m[:ndim, 3], dtype=np.float64)


def _ras_ranges(record: PreprocessRecord, z_range: tuple[int, int] | None) -> list[tuple[int, int]]:
    """Requested [start, stop) along each RAS axis (all, or the slab of the last stored axis)."""
    ranges = [(0, n) for n in record.ras_shape]
    if z_range is None:
        return ranges
    last = len(record.source_shape) - 1
    n = record.source_shape[last]
    z0, z1 = z_range
    if not 0 <= z0 < z1 <= n:
        raise GeometryError(
            f"z_range must satisfy 0 <= z0 < z1 <= {n} (the stored last axis), got {z_range}"
        )
    axis, flip = record.ornt[last]
    ranges[axis] = (n - z1, n - z0) if flip < 0 else (z0, z1)
    return ranges


def _check_prediction(prediction: torch.Tensor, record: PreprocessRecord) -> None:
    if tuple(prediction.shape[1:]) != record.grid_shape:
        raise GeometryError(
            f"prediction must be (C, *{record.grid_shape}) (the preprocessed grid), got shape "
            f"{tuple(prediction.shape)}; pass the record of the sample it was predicted from"
        )


def _fill(n_channels: int, fill: float | Sequence[float]) -> torch.Tensor:
    values = [float(fill)] * n_channels if isinstance(fill, (int, float)) else list(fill)
    if len(values) != n_channels:
        raise GeometryError(
            f"fill must be one value or one per channel ({n_channels}), got {len(values)} values"
        )
    return torch.tensor(values, dtype=torch.float32)


def _block(
    prediction: torch.Tensor,
    record: PreprocessRecord,
    ranges: list[tuple[int, int]],
    interp: Interp,
    fill: torch.Tensor,
) -> torch.Tensor:
    """The block ``ranges`` of the RAS grid, each axis already running in its stored direction.

    Flips are folded into the resampling coordinates (read backwards), so undoing the
    orientation afterwards is a permutation only: no flipped copy of the full-size output.
    """
    scale, offset = _grid_to_ras_map(record)
    priority = [1.0 / abs(float(s)) for s in scale]  # the whole grid's ratios, for every slab
    flipped = {axis for axis, flip in record.ornt if flip < 0}
    coords, where = [], []
    for p, ((r0, r1), (c0, c1)) in enumerate(zip(ranges, record.crop_box, strict=True)):
        ras_index = np.arange(r0, r1)[::-1] if p in flipped else np.arange(r0, r1)
        inside = np.flatnonzero((ras_index >= c0) & (ras_index < c1))
        coords.append(scale[p] * ras_index[inside] + offset[p])
        where.append(slice(int(inside[0]), int(inside[-1]) + 1) if inside.size else slice(0, 0))
    sizes = [r1 - r0 for r0, r1 in ranges]
    if all(w.stop - w.start == n for w, n in zip(where, sizes, strict=True)):
        return resample_separable(prediction, coords, interp, priority=priority)
    dtype = torch.float32 if interp != "nearest" else prediction.dtype
    out = torch.empty((prediction.shape[0], *sizes), dtype=dtype)
    out[:] = fill.view(-1, *([1] * len(sizes))).to(dtype)
    if all(c.size for c in coords):
        out[(slice(None), *where)] = resample_separable(
            prediction, coords, interp, priority=priority
        )
    return out


def _undo_orientation(block: torch.Tensor, ornt: tuple[tuple[int, int], ...]) -> torch.Tensor:
    """Permute a channel-first block from RAS axis order back into stored axis order (a view)."""
    return block.permute([0, *(axis + 1 for axis, _ in ornt)])


def to_source_grid(
    prediction: ArrayT,
    record: PreprocessRecord,
    *,
    interp: Interp = "linear",
    fill: float | Sequence[float] = 0.0,
    z_range: tuple[int, int] | None = None,
) -> ArrayT:
    """Resample a prediction from the preprocessed grid onto the stored (source) grid.

    Parameters
    ----------
    prediction : (C, *record.grid_shape) tensor or ndarray
        Probabilities, logits or a label map on the grid the chain produced.
    record : PreprocessRecord
        The record the chain kept for the sample (``sample["preprocess_record"]``).
    interp : {"linear", "cubic", "nearest"}
        ``"nearest"`` for label maps (keeps their dtype), ``"linear"`` for probabilities.
    fill : float or sequence of float
        Value outside the crop box, for all channels or one per channel (probabilities:
        ``(1.0, 0.0, ...)`` makes the area outside the crop background).
    z_range : (int, int), optional
        ``[z0, z1)`` along the stored grid's last axis: only that slab is computed.

    Returns
    -------
    (C, *record.source_shape) tensor or ndarray
        Same kind as ``prediction``; the last axis is ``z1 - z0`` long when ``z_range`` is given.
        For stored orders other than RAS's axis order it is a permuted view (not C-contiguous).

    Raises
    ------
    GeometryError
        When the prediction is not on the record's grid, the record's grids are inconsistent,
        or ``z_range`` is out of bounds.
    """
    as_numpy = isinstance(prediction, np.ndarray)
    tensor = torch.from_numpy(prediction) if isinstance(prediction, np.ndarray) else prediction
    tensor = tensor.as_subclass(torch.Tensor)
    _check_prediction(tensor, record)
    ranges = _ras_ranges(record, z_range)
    block = _block(tensor, record, ranges, interp, _fill(int(tensor.shape[0]), fill))
    out = _undo_orientation(block, record.ornt)
    return out.numpy() if as_numpy else out  # type: ignore[return-value]  # kind follows input
