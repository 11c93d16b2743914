"""Window grid and the slab-wise Gaussian stitcher (private).

The accumulator is a ring buffer one window deep along the last axis: the windows of one row
(same Z start) are added, then everything before the next row's start is final, so it is
divided by the summed weights, reduced (argmax or softmax) and handed out as a slab, and its
ring positions are zeroed for reuse. Peak memory is therefore ``K * X * Y * roi_z`` floats for
the class scores, whatever the volume's depth.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from medimg.inference.config import OutputKind
from medimg.inference.gaussian import padding_for, window_starts

__all__ = ["Slab", "Stitcher", "WindowGrid", "slab_depth", "window_grid"]


@dataclass(frozen=True)
class WindowGrid:
    """Where the windows of a volume lie, in padded coordinates."""

    shape: tuple[int, int, int]
    roi: tuple[int, int, int]
    pad: tuple[int, int, int]
    padded: tuple[int, int, int]
    starts: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]

    @property
    def n_windows(self) -> int:
        """Total number of windows."""
        return len(self.starts[0]) * len(self.starts[1]) * len(self.starts[2])

    def windows(self) -> list[tuple[int, int, int]]:
        """Window starts (x, y, z), rows of equal z together, z increasing."""
        return [(x, y, z) for z in self.starts[2] for x in self.starts[0] for y in self.starts[1]]


def window_grid(shape: Sequence[int], roi: Sequence[int], overlap: float) -> WindowGrid:
    """The windows MONAI's ``sliding_window_inference`` would use on a volume of ``shape``."""
    shape3 = (int(shape[0]), int(shape[1]), int(shape[2]))
    roi3 = (int(roi[0]), int(roi[1]), int(roi[2]))
    padded = (max(shape3[0], roi3[0]), max(shape3[1], roi3[1]), max(shape3[2], roi3[2]))
    pad = padding_for(shape3, roi3)
    starts = tuple(tuple(window_starts(n, r, overlap)) for n, r in zip(padded, roi3, strict=True))
    return WindowGrid(shape3, roi3, (pad[0], pad[1], pad[2]), padded, starts)  # type: ignore[arg-type]  # 3 axes by construction


SLAB_BYTES = 64 * 1024**2
"""Largest float32 score block reduced at once; thinner slabs are handed out past it."""


def slab_depth(grid: WindowGrid, n_classes: int) -> int:
    """Z planes finished at once: the step between rows of windows, or fewer.

    Fewer when that step's ``K * X * Y`` float32 scores would exceed :data:`SLAB_BYTES`.
    """
    starts = grid.starts[2]
    step = max([b - a for a, b in itertools.pairwise(starts)] or [grid.roi[2]])
    plane = n_classes * grid.shape[0] * grid.shape[1] * 4
    return max(1, min(step, SLAB_BYTES // plane))


@dataclass(frozen=True)
class Slab:
    """A finished part of the output: Z range ``[z_start, z_start + depth)`` of the input grid.

    Attributes
    ----------
    z_start : int
        First voxel along the last axis.
    data : torch.Tensor
        ``(X, Y, depth)`` uint8 labels, or ``(K, X, Y, depth)`` float32 probabilities/logits,
        on the CPU.
    """

    z_start: int
    data: torch.Tensor

    @property
    def depth(self) -> int:
        """Number of voxels along the last axis."""
        return int(self.data.shape[-1])


def _ring(start: int, length: int, size: int) -> list[tuple[int, int, int]]:
    """Split ``[start, start + length)`` on a ring of ``size``: (ring_from, ring_to, offset)."""
    a = start % size
    if a + length <= size:
        return [(a, a + length, 0)]
    first = size - a
    return [(a, size, 0), (0, length - first, first)]


class Stitcher:
    """Accumulates weighted window logits and hands out finished slabs."""

    def __init__(
        self,
        grid: WindowGrid,
        n_classes: int,
        importance: torch.Tensor,
        output: OutputKind,
        device: torch.device,
    ) -> None:
        px, py, _ = grid.padded
        depth = grid.roi[2]
        self.grid, self.output, self.depth = grid, output, depth
        self.slab_depth = slab_depth(grid, n_classes)
        self.importance = importance.to(device)
        # Physical layout (X, Y, Z, K) matches channels-last network output (K fastest).
        if device.type == "cpu":  # numpy-backed so tracemalloc can see it
            store = torch.from_numpy(np.zeros((px, py, depth, n_classes), np.float32))
            weight = torch.from_numpy(np.zeros((px, py, depth), np.float32))
        else:
            store = torch.zeros((px, py, depth, n_classes), device=device)
            weight = torch.zeros((px, py, depth), device=device)
        self.scores = store.permute(3, 0, 1, 2)
        self.weight = weight

    def add(self, logits: torch.Tensor, start: tuple[int, int, int]) -> None:
        """Add one window's float32 logits ``(K, rx, ry, rz)`` at ``start`` (padded)."""
        rx, ry, rz = self.grid.roi
        sx, sy, sz = start
        for lo, hi, off in _ring(sz, rz, self.depth):
            w = self.importance[:, :, off : off + hi - lo]
            target = self.scores[:, sx : sx + rx, sy : sy + ry, lo:hi]
            target.addcmul_(logits[..., off : off + hi - lo], w)
            self.weight[sx : sx + rx, sy : sy + ry, lo:hi].add_(w)

    def finish(self, z_from: int, z_to: int) -> Iterator[Slab]:
        """Reduce padded Z range ``[z_from, z_to)``, clear it, yield its parts inside the volume.

        The range is reduced ``self.slab_depth`` planes at a time, so the temporaries of the
        reduction stay one slab deep even for the last row of windows.
        """
        for lo in range(z_from, z_to, self.slab_depth):
            slab = self._finish_part(lo, min(lo + self.slab_depth, z_to))
            if slab is not None:
                yield slab

    def _finish_part(self, z_from: int, z_to: int) -> Slab | None:
        (x0, y0, z_pad), (nx, ny, nz) = self.grid.pad, self.grid.shape
        lo_in, hi_in = max(z_from, z_pad), min(z_to, z_pad + nz)
        result = None
        if hi_in > lo_in:
            lo, hi, _ = _ring(lo_in, hi_in - lo_in, self.depth)[0]
            if hi - lo < hi_in - lo_in:  # wraps around the ring: gather the two parts
                index = torch.tensor([z % self.depth for z in range(lo_in, hi_in)])
                scores = self.scores[:, x0 : x0 + nx, y0 : y0 + ny].index_select(3, index)
                weight = self.weight[x0 : x0 + nx, y0 : y0 + ny].index_select(2, index)
            else:
                scores = self.scores[:, x0 : x0 + nx, y0 : y0 + ny, lo:hi]
                weight = self.weight[x0 : x0 + nx, y0 : y0 + ny, lo:hi]
            result = Slab(lo_in - z_pad, self._reduce(scores / weight).cpu())
        for lo, hi, _ in _ring(z_from, z_to - z_from, self.depth):
            self.scores[..., lo:hi].zero_()
            self.weight[..., lo:hi].zero_()
        return result

    def _reduce(self, logits: torch.Tensor) -> torch.Tensor:
        if self.output == "labels":
            dtype = torch.uint8 if logits.shape[0] <= 256 else torch.int32
            return logits.argmax(dim=0).to(dtype)
        if self.output == "probabilities":
            return torch.softmax(logits, dim=0).contiguous()
        return logits.contiguous()
