"""Labels on an image's stored grid, slab by slab, from probabilities on the preprocessed grid.

The probabilities of a preprocessed image are small (the preprocessed grid is coarse and
cropped); the same probabilities on the stored grid are not (a 512 x 512 x 900 CT with 10
classes is 9 GB of float32). :func:`source_label_slabs` resamples them with
:func:`medimg.transforms.to_source_grid` one slab of the stored grid's last axis at a time
(``z_range``, which counts along the stored axis whatever the reorientation was) and keeps only
each slab's argmax, so the full-resolution probability volume never exists. The slabs go
straight to :func:`~medimg.inference.write_slabs_nifti`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch

from medimg.errors import ConfigError
from medimg.inference._stitch import Slab

if TYPE_CHECKING:
    from medimg.transforms.record import PreprocessRecord

__all__ = ["DEFAULT_SLAB_BYTES", "source_label_slabs"]

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
    from medimg.transforms.inversion import to_source_grid  # MONAI loads with medimg.transforms

    tensor = torch.as_tensor(probabilities).as_subclass(torch.Tensor)
    n_classes = int(tensor.shape[0])
    if n_classes > 256:
        raise ConfigError(
            f"labels are written as uint8, so probabilities must have at most 256 classes, "
            f"got {n_classes}"
        )
    nx, ny, nz = record.source_shape
    depth = max(1, slab_bytes // (n_classes * nx * ny * 4))
    fill = (1.0, *([0.0] * (n_classes - 1)))
    for z0 in range(0, nz, depth):
        z1 = min(z0 + depth, nz)
        block = to_source_grid(tensor, record, interp="linear", fill=fill, z_range=(z0, z1))
        yield Slab(z0, block.argmax(dim=0).to(torch.uint8))
