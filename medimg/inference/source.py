"""Reading the input of sliding-window inference one slab (a range of the last axis) at a time.

A slab along the last axis is one contiguous block of an uncompressed NIfTI file (voxels are
stored with the first axis fastest), so a volume larger than memory is read with one sequential
read per row of windows, and only that slab is ever held.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medimg.errors import ConfigError
from medimg.io import Volume
from medimg.typing import Affine

__all__ = ["SlabSource", "open_source"]


@dataclass(frozen=True, eq=False)
class SlabSource:
    """A channel-first image that hands out slabs along its last axis.

    Attributes
    ----------
    data : array-like
        ``(C, X, Y, Z)`` array, tensor or memory map, or a spatial-first ``(X, Y, Z[, C])``
        nibabel array proxy when ``channels_last_on_disk`` is true.
    shape : tuple of int
        ``(C, X, Y, Z)``.
    affine : (4, 4) ndarray or None
        Voxel-to-RAS affine when known (a :class:`~medimg.io.Volume` or a file).
    channels_last_on_disk : bool
        Whether ``data`` is indexed ``(X, Y, Z[, C])`` (NIfTI order).
    """

    data: Any
    shape: tuple[int, int, int, int]
    affine: Affine | None = None
    channels_last_on_disk: bool = False

    def read(self, z0: int, z1: int) -> torch.Tensor:
        """Voxels ``[..., z0:z1]`` as a float32 tensor of shape ``(C, X, Y, z1 - z0)``."""
        if isinstance(self.data, torch.Tensor):
            return self.data[..., z0:z1].to("cpu", torch.float32)
        if self.channels_last_on_disk:
            block = np.asarray(self.data[:, :, z0:z1, ...], dtype=np.float32)
            block = block[np.newaxis] if block.ndim == 3 else np.moveaxis(block, -1, 0)
        else:
            block = np.asarray(self.data[..., z0:z1], dtype=np.float32)
        return torch.from_numpy(np.ascontiguousarray(block))

    @property
    def random_access(self) -> bool:
        """Whether any block can be cut cheaply (an array, tensor or memory map, not a file)."""
        return not self.channels_last_on_disk

    def read_window(self, start: Sequence[int], size: Sequence[int], out: torch.Tensor) -> None:
        """Copy the ``(C, *size)`` block at ``start`` into ``out`` (float32), without a row.

        Only for :attr:`random_access` sources.
        """
        index = (slice(None), *(slice(s, s + n) for s, n in zip(start, size, strict=True)))
        if isinstance(self.data, torch.Tensor):
            out.copy_(self.data[index])
        else:  # numpy casts any dtype, and reads read-only memory maps without a warning
            out.numpy()[...] = self.data[index]


def open_source(image: Any) -> SlabSource:
    """Wrap an image for slab-wise reading, without reading its voxels.

    Parameters
    ----------
    image : Volume, ndarray, np.memmap, torch.Tensor, path-like or nibabel image
        Arrays and tensors are channel-first ``(C, X, Y, Z)``. A path is opened with nibabel
        without memory-mapping (uncompressed ``.nii`` is then read slab by slab from disk; a
        ``.nii.gz`` must be decompressed from the start for each slab, so prefer ``.nii`` for
        volumes larger than memory).

    Returns
    -------
    SlabSource

    Raises
    ------
    ConfigError
        When an array does not have 4 axes, or a file is not 3D or 4D.
    """
    if isinstance(image, SlabSource):
        return image
    if isinstance(image, Volume):
        return SlabSource(image.array, _checked_shape(image.array.shape), image.affine)
    if isinstance(image, (str, Path)) or hasattr(image, "dataobj"):
        return _open_nibabel(image)
    if isinstance(image, torch.Tensor):
        image = image.as_tensor() if hasattr(image, "as_tensor") else image
        return SlabSource(image.detach(), _checked_shape(tuple(image.shape)))
    if not hasattr(image, "shape") or not hasattr(image, "__getitem__"):
        raise ConfigError(
            f"image must be a Volume, an array or tensor (C, X, Y, Z), a path or a nibabel image, "
            f"got {type(image).__name__}"
        )
    return SlabSource(image, _checked_shape(tuple(image.shape)))


def _checked_shape(shape: Sequence[int]) -> tuple[int, int, int, int]:
    if len(shape) != 4 or min(shape) < 1:
        raise ConfigError(
            f"image must be channel-first (C, X, Y, Z) with 4 non-empty axes, got shape "
            f"{tuple(shape)}; add a channel axis with image[None]"
        )
    c, x, y, z = (int(n) for n in shape)
    return c, x, y, z


def _open_nibabel(image: Any) -> SlabSource:
    import nibabel as nib

    img: Any = nib.load(str(image), mmap=False) if isinstance(image, (str, Path)) else image
    spatial = tuple(int(n) for n in img.shape)
    if len(spatial) not in (3, 4):
        raise ConfigError(
            f"image file must be 3D or 4D (X, Y, Z[, C]), got shape {spatial} in "
            f"{getattr(img, 'get_filename', lambda: image)()}"
        )
    channels = spatial[3] if len(spatial) == 4 else 1
    shape = _checked_shape((channels, *spatial[:3]))
    affine = np.asarray(img.affine, dtype=np.float64)
    return SlabSource(img.dataobj, shape, affine, channels_last_on_disk=True)
