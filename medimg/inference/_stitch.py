"""Window grid and the cell-wise Gaussian stitcher (private).

The padded volume is cut into *cells* at every window start and end, along each axis. A cell
is covered by the same windows everywhere, so it is final once the last of them has been
added: it is then divided by its summed weights, reduced (argmax or softmax) into its layer of
the output, and freed. A layer (a Z range between two cuts) is handed out as a slab once all
its cells are final.

Windows come in rows of equal Z start, X then Y within a row, so the cells alive at once are
about one Z step of the volume (the cells the current row still has to finish) plus the cells
of the next step the row has opened: about ``K * X * Y * step_z`` floats. A ring one window
deep would hold ``(K + 1) * X * Y * roi_z``, about twice as much at overlap 0.5. MONAI moves
the last window back to end at the volume's edge, which leaves the last two rows closer than
the others; when that would hold more open, those two rows run together, X column by column
(:func:`window_grid` replays both orders and keeps the leaner).

For labels the weights are not kept: dividing every class by the same positive weight does
not change the argmax.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from medimg.inference._argmax import class_argmax
from medimg.inference.config import OutputKind
from medimg.inference.gaussian import padding_for, window_starts

__all__ = [
    "Slab",
    "StitchMemory",
    "Stitcher",
    "WindowGrid",
    "class_weights",
    "stitch_memory",
    "window_grid",
]

_F32 = 4


@dataclass(frozen=True)
class WindowGrid:
    """Where the windows of a volume lie, in padded coordinates, and in which order they run.

    Attributes
    ----------
    shape, roi, pad, padded : tuple of 3 int
        The volume, the window, the zeros added before each axis, and the padded volume.
    starts : tuple of 3 tuples of int
        Window starts along X, Y and Z.
    interleave_tail : bool
        Whether the last two rows of windows (Z starts) run together, X column by X column.
    """

    shape: tuple[int, int, int]
    roi: tuple[int, int, int]
    pad: tuple[int, int, int]
    padded: tuple[int, int, int]
    starts: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]
    interleave_tail: bool = False

    @property
    def needs_padding(self) -> bool:
        """Whether the volume is smaller than the window along some axis."""
        return self.padded != self.shape

    @property
    def n_windows(self) -> int:
        """Total number of windows."""
        return len(self.starts[0]) * len(self.starts[1]) * len(self.starts[2])

    def windows(self) -> list[tuple[int, int, int]]:
        """Window starts (x, y, z) in run order.

        Rows of equal Z start in increasing Z, X then Y within a row; with
        :attr:`interleave_tail`, the last two rows go X column by X column instead (both rows'
        windows of one X start, then the next X start).
        """
        xs, ys, zs = self.starts
        split = len(zs) - 2 if self.interleave_tail and len(zs) >= 2 else len(zs)
        rows = [(x, y, z) for z in zs[:split] for x in xs for y in ys]
        return rows + [(x, y, z) for x in xs for z in zs[split:] for y in ys]


def window_grid(shape: Sequence[int], roi: Sequence[int], overlap: float) -> WindowGrid:
    """The windows MONAI's ``sliding_window_inference`` would use on a volume of ``shape``.

    Their order is the one (of plain rows, or rows with the last two interleaved) that keeps
    the fewest scores open at once. The last window along Z is moved back to end at the
    volume's edge, so the last two rows are often closer than the others; run one after the
    other they would hold ``roi_z - step`` more planes open than the rows before them.
    """
    shape3 = (int(shape[0]), int(shape[1]), int(shape[2]))
    roi3 = (int(roi[0]), int(roi[1]), int(roi[2]))
    return _window_grid(shape3, roi3, float(overlap))


@functools.lru_cache(maxsize=32)  # the planner and the run ask for the same grid
def _window_grid(
    shape3: tuple[int, int, int], roi3: tuple[int, int, int], overlap: float
) -> WindowGrid:
    padded = (max(shape3[0], roi3[0]), max(shape3[1], roi3[1]), max(shape3[2], roi3[2]))
    pad = padding_for(shape3, roi3)
    starts = tuple(tuple(window_starts(n, r, overlap)) for n, r in zip(padded, roi3, strict=True))
    rows = WindowGrid(shape3, roi3, (pad[0], pad[1], pad[2]), padded, starts)  # type: ignore[arg-type]  # 3 axes by construction
    if len(starts[2]) < 2:
        return rows
    tail = replace(rows, interleave_tail=True)
    # one float per voxel: the figure is the number of open cell voxels (times 4)
    by_order = {grid: stitch_memory(grid, 1, "labels").cells for grid in (rows, tail)}
    return tail if by_order[tail] < by_order[rows] else rows


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


@dataclass(frozen=True)
class _Axis:
    """The cells along one axis: boundaries, the cells under each window, coverage counts."""

    cuts: tuple[int, ...]
    spans: dict[int, range]
    needed: tuple[int, ...]

    @classmethod
    def of(cls, starts: Sequence[int], roi: int, size: int) -> _Axis:
        cuts = tuple(sorted({0, size, *starts, *(s + roi for s in starts)}))
        where = {c: i for i, c in enumerate(cuts)}
        spans = {s: range(where[s], where[s + roi]) for s in starts}
        needed = tuple(
            sum(1 for s in starts if s <= lo and hi <= s + roi)
            for lo, hi in itertools.pairwise(cuts)
        )
        return cls(cuts, spans, needed)

    def extent(self, cell: int) -> tuple[int, int]:
        return self.cuts[cell], self.cuts[cell + 1]


Cell = tuple[int, int, int]
"""A cell by its X, Y and Z indices."""


@dataclass
class _Step:
    """What adding one window did.

    The cells it covers (``new``: those it opened), the cells it finished, and the layers (Z
    cell indices, increasing) that became complete.
    """

    cells: list[Cell]
    new: list[Cell]
    done: list[Cell]
    ready: list[int]


@dataclass
class _Book:
    """The bookkeeping of the stitcher, without tensors (the planner replays it)."""

    grid: WindowGrid
    axes: tuple[_Axis, _Axis, _Axis] = field(init=False)
    remaining: dict[Cell, int] = field(default_factory=dict)
    layer_left: list[int] = field(init=False)
    next_layer: int = 0

    def __post_init__(self) -> None:
        g = self.grid
        x, y, z = (_Axis.of(g.starts[a], g.roi[a], g.padded[a]) for a in range(3))
        self.axes = (x, y, z)
        self.layer_left = [len(x.needed) * len(y.needed)] * len(z.needed)

    @property
    def z(self) -> _Axis:
        """The Z axis, whose cells are the layers."""
        return self.axes[2]

    def add(self, start: tuple[int, int, int]) -> _Step:
        step = _Step([], [], [], [])
        x, y, z = self.axes
        spans = (x.spans[start[0]], y.spans[start[1]], z.spans[start[2]])
        for cell in itertools.product(*spans):
            if cell not in self.remaining:
                self.remaining[cell] = x.needed[cell[0]] * y.needed[cell[1]] * z.needed[cell[2]]
                step.new.append(cell)
            step.cells.append(cell)
            self.remaining[cell] -= 1
            if self.remaining[cell] == 0:
                del self.remaining[cell]
                step.done.append(cell)
                self.layer_left[cell[2]] -= 1
        while self.next_layer < len(self.layer_left) and self.layer_left[self.next_layer] == 0:
            step.ready.append(self.next_layer)
            self.next_layer += 1
        return step

    @property
    def complete(self) -> bool:
        return self.next_layer == len(self.layer_left)

    def extent(self, cell: Cell) -> tuple[tuple[int, int], ...]:
        """``(start, end)`` of the cell along X, Y and Z, in padded coordinates."""
        return tuple(a.extent(c) for a, c in zip(self.axes, cell, strict=True))

    def cell_shape(self, cell: Cell) -> tuple[int, int, int]:
        (x0, x1), (y0, y1), (z0, z1) = self.extent(cell)
        return x1 - x0, y1 - y0, z1 - z0

    def layer_inside(self, layer: int) -> tuple[int, int]:
        """The part of a layer inside the volume, in volume Z coordinates (may be empty)."""
        z0, z1 = self.z.extent(layer)
        pad, n = self.grid.pad[2], self.grid.shape[2]
        return max(z0 - pad, 0), min(z1 - pad, n)


def _keeps_weight(output: OutputKind) -> bool:
    return output != "labels"


def _out_bytes(output: OutputKind, n_classes: int) -> int:
    """Bytes per voxel of a finished slab."""
    return 1 if output == "labels" else n_classes * _F32


@dataclass(frozen=True)
class StitchMemory:
    """Peak memory of a stitcher run.

    Bytes of open cells and of finished layers not yet handed out, and the deepest layer in
    Z voxels.
    """

    cells: int
    layers: int
    depth: int


@functools.lru_cache(maxsize=64)  # the planner asks once per batch choice, then again
def stitch_memory(grid: WindowGrid, n_classes: int, output: OutputKind) -> StitchMemory:
    """Replay a run's bookkeeping to find the stitcher's peak memory, and the deepest slab.

    Cells are counted at their largest simultaneous total, which is exact: a cell is allocated
    by the first window that covers it and freed by the last. Layer buffers likewise.
    """
    book = _Book(grid)
    per_voxel = (n_classes + int(_keeps_weight(output))) * _F32
    plane = grid.shape[0] * grid.shape[1] * _out_bytes(output, n_classes)
    opened: set[int] = set()
    cells = peak_cells = layers = peak_layers = 0
    for start in grid.windows():
        step = book.add(start)
        cells += sum(int(np.prod(book.cell_shape(cell))) for cell in step.new) * per_voxel
        peak_cells = max(peak_cells, cells)
        cells -= sum(int(np.prod(book.cell_shape(cell))) for cell in step.done) * per_voxel
        for layer in {cell[2] for cell in step.done} - opened:
            opened.add(layer)  # its buffer is made by its first finished cell
            layers += _depth(book.layer_inside(layer)) * plane
        peak_layers = max(peak_layers, layers)
        layers -= sum(_depth(book.layer_inside(layer)) for layer in step.ready) * plane
    depth = max(b - a for a, b in itertools.pairwise(book.z.cuts))
    return StitchMemory(peak_cells, peak_layers, depth)


def _depth(z_range: tuple[int, int]) -> int:
    return max(z_range[1] - z_range[0], 0)


def class_weights(importance: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """The importance map repeated for each class, in the memory layout of ``logits[0]``.

    Multiplying a batch of logits ``(B, K, *roi)`` by it is one vectorised pass; weighting
    each cell's part with the ``(X, Y, Z)`` map instead broadcast it along the class axis,
    which is innermost in channels-last output, and ran about as long as the convolutions.
    """
    window = logits[0]
    return torch.empty_like(window).copy_(importance.to(window.device).expand_as(window))


class Stitcher:
    """Accumulates weighted window logits cell by cell and hands out finished slabs."""

    def __init__(
        self,
        grid: WindowGrid,
        n_classes: int,
        importance: torch.Tensor,
        output: OutputKind,
        device: torch.device,
    ) -> None:
        self.grid, self.output, self.device = grid, output, device
        self.n_classes = n_classes
        self.importance = importance.to(device)
        self.book = _Book(grid)
        self.cells: dict[Cell, tuple[torch.Tensor, torch.Tensor | None]] = {}
        self.live_bytes = self.peak_bytes = 0
        self.layers: dict[int, torch.Tensor] = {}

    @property
    def complete(self) -> bool:
        """Whether every cell has been finished and handed out."""
        return self.book.complete

    def add(self, weighted: torch.Tensor, start: tuple[int, int, int]) -> list[Slab]:
        """Add one window's weighted logits ``(K, rx, ry, rz)`` at ``start`` (padded).

        ``weighted`` is float32 logits already multiplied by the importance map (see
        :func:`class_weights`). Returns the slabs this window completed, in Z order (often
        none).
        """
        step = self.book.add(start)
        for cell in step.new:
            self._open(cell)
        fresh = set(step.new)  # allocated empty: the first window is copied, not added
        for cell in step.cells:
            part = tuple(
                slice(a - s, b - s) for (a, b), s in zip(self.book.extent(cell), start, strict=True)
            )
            scores, weight = self.cells[cell]
            logits = weighted[(slice(None), *part)]
            scores.copy_(logits) if cell in fresh else scores.add_(logits)
            if weight is not None:
                w = self.importance[part]
                weight.copy_(w) if cell in fresh else weight.add_(w)
        for cell in step.done:
            self._finish(cell)
        return [s for layer in step.ready if (s := self._hand_out(layer)) is not None]

    def _open(self, cell: Cell) -> None:
        shape = self.book.cell_shape(cell)
        # Physical layout (X, Y, Z, K) matches channels-last network output (K fastest).
        store = torch.empty((*shape, self.n_classes), device=self.device)
        weight = torch.empty(shape, device=self.device) if _keeps_weight(self.output) else None
        self.cells[cell] = (store.permute(3, 0, 1, 2), weight)
        self.live_bytes += self._bytes(shape)
        self.peak_bytes = max(self.peak_bytes, self.live_bytes)

    def _bytes(self, shape: tuple[int, int, int]) -> int:
        return int(np.prod(shape)) * (self.n_classes + int(_keeps_weight(self.output))) * _F32

    def _finish(self, cell: Cell) -> None:
        scores, weight = self.cells.pop(cell)
        self.live_bytes -= self._bytes(self.book.cell_shape(cell))
        # the part of the cell inside the volume, in cell and in layer coordinates
        in_cell: list[slice] = []
        in_layer: list[slice] = []
        for (a, b), pad, n in zip(
            self.book.extent(cell), self.grid.pad, self.grid.shape, strict=True
        ):
            lo, hi = max(a, pad), min(b, pad + n)
            if hi <= lo:
                return  # all padding
            in_cell.append(slice(lo - a, hi - a))
            in_layer.append(slice(lo - pad, hi - pad))
        part = scores[(slice(None), *in_cell)]
        if weight is not None:
            part = part / weight[tuple(in_cell)]
        lz0, lz1 = self.book.layer_inside(cell[2])
        layer = self._layer(cell[2], lz1 - lz0)
        (x, y, z) = in_layer
        layer[..., x, y, z.start - lz0 : z.stop - lz0] = self._reduce(part).cpu()

    def _layer(self, layer: int, depth: int) -> torch.Tensor:
        if layer not in self.layers:
            nx, ny, _ = self.grid.shape
            if self.output == "labels":
                dtype = torch.uint8 if self.n_classes <= 256 else torch.int32
                self.layers[layer] = torch.empty((nx, ny, depth), dtype=dtype)
            else:
                self.layers[layer] = torch.empty((self.n_classes, nx, ny, depth))
        return self.layers[layer]

    def _hand_out(self, layer: int) -> Slab | None:
        data = self.layers.pop(layer, None)
        return None if data is None else Slab(self.book.layer_inside(layer)[0], data)

    def _reduce(self, logits: torch.Tensor) -> torch.Tensor:
        if self.output == "labels":
            dtype = torch.uint8 if logits.shape[0] <= 256 else torch.int32
            return class_argmax(logits, dtype)
        if self.output == "probabilities":
            return torch.softmax(logits, dim=0)
        return logits
