"""Labels on an image's stored grid, slab by slab, from probabilities on the preprocessed grid.

The probabilities of a preprocessed image are small (the preprocessed grid is coarse and
cropped); the same probabilities on the stored grid are not (a 512 x 512 x 900 CT with 10
classes is 9 GB of float32). :func:`source_label_slabs` resamples them with
:func:`medimg.transforms.to_source_grid` one slab of the stored grid's last axis at a time
(``z_range``, which counts along the stored axis whatever the reorientation was) and keeps only
each slab's argmax, so the full-resolution probability volume never exists. The slabs go
straight to :func:`~medimg.inference.write_slabs_nifti`.

:func:`streamed_source_label_slabs` does the same from the sliding window's probability slabs
(:func:`~medimg.inference.iter_slabs`) through a scratch file, so the preprocessed grid's class
map is not held in memory either; each stored slab reads back only the planes it needs.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from numpy.typing import NDArray

from medimg.errors import ConfigError, GeometryError
from medimg.inference._argmax import class_argmax
from medimg.inference._stitch import Slab
from medimg.typing import PathLike

if TYPE_CHECKING:
    from medimg.transforms.record import PreprocessRecord

__all__ = ["DEFAULT_SLAB_BYTES", "source_label_slabs", "streamed_source_label_slabs"]

DEFAULT_SLAB_BYTES = 64 * 2**20
"""Default float32 probabilities of one slab on the stored grid: 64 MB."""


def source_label_slabs(
    probabilities: Any,
    record: PreprocessRecord,
    *,
    slab_bytes: int = DEFAULT_SLAB_BYTES,
) -> Iterator[Slab]:
    """Yield uint8 label slabs on the stored grid, in Z order, from preprocessed probabilities.

    Each slab is the argmax over classes of the linearly resampled probabilities (nnU-Net's
    way back: resample probabilities, then take the argmax). Voxels outside the chain's crop box
    are background (class 0). Slabs concatenated along Z equal the argmax of the whole-volume
    :func:`~medimg.transforms.to_source_grid` output (its slabs agree with the whole up to
    float32 rounding; only a tie within that rounding could pick a different class).

    Parameters
    ----------
    probabilities : (K, *record.grid_shape) tensor or ndarray
        Class probabilities (or any per-class scores whose argmax is the label) on the grid
        the chain produced; ``K <= 256``.
    record : PreprocessRecord
        The record the chain kept for the sample.
    slab_bytes : int
        Budget for one slab's float32 probabilities on the stored grid; at least one plane
        per slab whatever the budget.

    Yields
    ------
    Slab
        ``(X, Y, depth)`` uint8 labels for stored-grid planes ``[z_start, z_start + depth)``.

    Raises
    ------
    ConfigError
        When there are more than 256 classes (labels are written as uint8).
    GeometryError
        When the probabilities are not on the record's grid.

    Examples
    --------
    >>> import numpy as np
    >>> from medimg.transforms import PreprocessRecord
    >>> rec = PreprocessRecord.from_source((4, 3, 5), np.eye(4))
    >>> probs = torch.zeros(2, 4, 3, 5)
    >>> probs[1, :, :, 2:] = 1.0
    >>> [(s.z_start, s.depth) for s in source_label_slabs(probs, rec, slab_bytes=200)]
    [(0, 2), (2, 2), (4, 1)]
    """
    tensor = torch.as_tensor(probabilities).as_subclass(torch.Tensor)
    for z0, z1 in _stored_slabs(record, int(tensor.shape[0]), slab_bytes):
        yield _labels(tensor, record, (z0, z1))


def streamed_source_label_slabs(
    slabs: Iterable[Slab],
    record: PreprocessRecord,
    *,
    scratch_dir: PathLike,
    name: str = "probabilities",
    slab_bytes: int = DEFAULT_SLAB_BYTES,
) -> Generator[Slab, None, None]:
    """:func:`source_label_slabs` from probability slabs, never holding the whole class map.

    The finished ``(K, X, Y, depth)`` probability slabs of the preprocessed grid (for example
    :func:`~medimg.inference.iter_slabs` with ``output="probabilities"``) are written, as they
    come, to a float32 scratch file in ``scratch_dir``, stored with the preprocessed axis that
    becomes the stored grid's last axis outermost. Each stored-grid slab then reads back only the
    few preprocessed planes its interpolation needs, so memory holds one slab of each grid, never
    the ``(K, *record.grid_shape)`` float map. The labels are those of
    :func:`source_label_slabs` on the whole map (the same resampling on a block of it).

    The scratch file is named like :func:`medimg.io.atomic_path`'s temporaries
    (``.NAME.<8 random>.tmp.f32``), so :func:`~medimg.io.integrity.remove_stale_temporaries`
    deletes one left by a killed run; it is deleted when the generator finishes or is closed.

    Parameters
    ----------
    slabs : iterable of Slab
        ``(K, X, Y, depth)`` float32 probabilities covering the record's grid along Z once.
    record : PreprocessRecord
        The record the chain kept for the sample.
    scratch_dir : path-like
        Folder for the scratch file (the output folder: same disk, cleaned by its owner).
    name : str
        Part of the scratch file's name (for example the output file's name).
    slab_bytes : int
        As for :func:`source_label_slabs`.

    Yields
    ------
    Slab
        ``(X, Y, depth)`` uint8 labels on the stored grid, in Z order.

    Raises
    ------
    ConfigError
        When there are more than 256 classes.
    GeometryError
        When the slabs are not on the record's grid or do not cover it exactly once.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp.f32", dir=scratch_dir)
    try:
        scratch = _Scratch.write(fd, slabs, record, Path(tmp))
        for z0, z1 in _stored_slabs(record, scratch.n_classes, slab_bytes):
            block, sub = scratch.block(record, z0, z1)
            yield _labels(block, sub, (z0, z1))
    finally:
        os.close(fd)
        Path(tmp).unlink(missing_ok=True)


def _stored_slabs(
    record: PreprocessRecord, n_classes: int, slab_bytes: int
) -> Iterator[tuple[int, int]]:
    """``[z0, z1)`` of each stored-grid slab: as many planes as ``slab_bytes`` holds, >= 1."""
    if n_classes > 256:
        raise ConfigError(
            f"labels are written as uint8, so probabilities must have at most 256 classes, "
            f"got {n_classes}"
        )
    nx, ny, nz = record.source_shape
    depth = max(1, slab_bytes // (n_classes * nx * ny * 4))
    for z0 in range(0, nz, depth):
        yield z0, min(z0 + depth, nz)


def _labels(probabilities: torch.Tensor, record: PreprocessRecord, z: tuple[int, int]) -> Slab:
    from medimg.transforms.inversion import to_source_grid  # MONAI loads with medimg.transforms

    fill = (1.0, *([0.0] * (int(probabilities.shape[0]) - 1)))
    block = to_source_grid(probabilities, record, interp="linear", fill=fill, z_range=z)
    return Slab(z[0], class_argmax(block))


_MARGIN = 2
"""Preprocessed planes read beyond a stored slab's interpolation taps on each side."""


@dataclass(frozen=True)
class _Scratch:
    """Probabilities ``(K, X, Y, Z)`` on disk, axes stored in ``order`` (outermost first)."""

    fd: int
    path: Path
    shape: tuple[int, int, int, int]
    order: tuple[int, int, int, int]

    @property
    def n_classes(self) -> int:
        return self.shape[0]

    @classmethod
    def write(
        cls, fd: int, slabs: Iterable[Slab], record: PreprocessRecord, path: Path
    ) -> _Scratch:
        outer = record.ornt[len(record.source_shape) - 1][0] + 1  # (K, X, Y, Z) axis
        rest = [a for a in (3, 1, 2) if a != outer]
        order = (outer, 0, rest[0], rest[1])
        gx, gy, gz = record.grid_shape
        covered = np.zeros(gz, dtype=bool)
        shape: tuple[int, int, int, int] | None = None
        for slab in slabs:
            data = slab.data
            z0, z1 = slab.z_start, slab.z_start + slab.depth
            k = int(data.shape[0]) if shape is None else shape[0]
            if data.shape != (k, gx, gy, z1 - z0) or z1 > gz or z0 < 0:
                raise GeometryError(
                    f"{path}: probability slabs must be (K, {gx}, {gy}, depth) within Z 0..{gz} "
                    f"(the record's grid), got shape {tuple(data.shape)} at z_start {z0}"
                )
            if covered[z0:z1].any():
                raise GeometryError(f"{path}: slabs must not overlap, Z {z0}..{z1} came twice")
            shape = shape or (k, gx, gy, gz)
            _write_slab(fd, data.numpy().astype(np.float32, copy=False), z0, shape, order)
            covered[z0:z1] = True
        if shape is None or not covered.all():
            raise GeometryError(
                f"{path}: probability slabs must cover Z (0..{gz}) exactly once, got "
                f"{int(covered.sum())} planes"
            )
        return cls(fd, path, shape, order)

    def block(self, record: PreprocessRecord, z0: int, z1: int) -> tuple[torch.Tensor, Any]:
        """The planes of the outer axis that stored slab ``[z0, z1)`` reads, and their record."""
        outer = self.order[0]
        a, b = _planes_needed(record, outer - 1, z0, z1)
        stored = [self.shape[axis] for axis in self.order]
        per_plane = int(np.prod(stored[1:])) * 4
        raw = _pread(self.fd, (b - a) * per_plane, a * per_plane)
        data = np.frombuffer(raw, dtype=np.float32).reshape(b - a, *stored[1:])
        array = np.ascontiguousarray(data.transpose(np.argsort(self.order)))  # (K, X, Y, Z)
        shift = np.eye(4)
        shift[outer - 1, 3] = a
        grid = list(record.grid_shape)
        grid[outer - 1] = b - a
        sub = replace(record, grid_shape=tuple(grid), grid_affine=record.grid_affine @ shift)
        return torch.from_numpy(array), sub


def _write_slab(
    fd: int,
    data: NDArray[np.float32],
    z0: int,
    shape: tuple[int, int, int, int],
    order: tuple[int, int, int, int],
) -> None:
    """Write a ``(K, X, Y, depth)`` slab at ``z0`` into the file laid out in ``order``."""
    stored = [shape[axis] for axis in order]
    moved = np.ascontiguousarray(data.transpose(order))
    if order[0] == 3:  # Z outermost: the slab is one contiguous run
        os.pwrite(fd, moved.tobytes(), z0 * int(np.prod(stored[1:])) * 4)
        return
    # (outer, K, Z, rest): each (outer, class) holds the slab's planes as one run
    plane = stored[3] * 4
    for i in range(stored[0]):
        for k in range(stored[1]):
            offset = ((i * stored[1] + k) * stored[2] + z0) * plane
            os.pwrite(fd, moved[i, k].tobytes(), offset)


def _pread(fd: int, size: int, offset: int) -> bytearray:
    out = bytearray()
    while len(out) < size:
        chunk = os.pread(fd, size - len(out), offset + len(out))
        if not chunk:
            raise GeometryError(f"probability scratch file ended at byte {offset + len(out)}")
        out += chunk
    return out


def _planes_needed(record: PreprocessRecord, axis: int, z0: int, z1: int) -> tuple[int, int]:
    """``[a, b)`` along grid ``axis`` covering the linear taps of stored planes ``[z0, z1)``."""
    n = record.grid_shape[axis]
    flip = record.ornt[len(record.source_shape) - 1][1]
    nz = record.source_shape[-1]
    r0, r1 = (nz - z1, nz - z0) if flip < 0 else (z0, z1)
    lo, hi = max(r0, record.crop_box[axis][0]), min(r1, record.crop_box[axis][1])
    if lo >= hi:
        return 0, 1  # outside the crop: filled, the block is not read
    m = np.linalg.solve(record.grid_affine, record.ras_affine)
    ends = m[axis, axis] * np.array([lo, hi - 1], dtype=np.float64) + m[axis, 3]
    a = max(0, int(np.floor(ends.min())) - _MARGIN)
    return a, min(n, max(int(np.floor(ends.max())) + 2 + _MARGIN, a + 1))
