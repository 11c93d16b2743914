"""Grid and channel checks of a manifest's headers (no file is opened here).

Two inputs of a case must share one world grid once both are in RAS voxel order (a DICOM
series read LPS and its segmentation saved LAS compare equal), and each file must hold the
channels and spatial dimensions the manifest declares.
"""

from __future__ import annotations

from medimg.io.geometry import SourceGeometry, grid_difference_mm, reorient_affine
from medimg.manifests.schema import Case, Manifest
from medimg.modality import Modality

__all__ = ["channel_problems", "grid_problems", "spatial_ndim"]


def spatial_ndim(geometry: SourceGeometry) -> int:
    """Spatial dimensions of a header, trailing singleton axes dropped (down to 2).

    Examples
    --------
    >>> from pathlib import Path
    >>> import numpy as np
    >>> g = SourceGeometry(Path("x.nii"), "nifti", (64, 80, 1), np.eye(4), "<u2")
    >>> spatial_ndim(g)
    2
    """
    shape = list(geometry.shape)
    while len(shape) > 2 and shape[-1] == 1:
        shape.pop()
    return len(shape)


def channel_problems(
    manifest: Manifest, case: Case, geoms: list[tuple[str, SourceGeometry]]
) -> list[str]:
    """Channel counts (and a multi-channel file's 2D/3D) of a case's image headers."""
    problems: list[str] = []
    n_declared = len(manifest.channels)
    if isinstance(case.image, str) and geoms:
        where, geom = geoms[0]
        if geom.n_channels != n_declared:
            problems.append(
                f"{where}: holds {geom.n_channels} channel(s), the manifest declares "
                f"{n_declared}; fix 'channels' or give one path per channel"
            )
        if n_declared > 1:  # one single-channel file's 2D/3D is checked with its policies
            for modality in dict.fromkeys(manifest.modalities):
                problems += _multichannel_ndim_problem(where, geom, modality)  # (C, ...) file
    else:
        for (where, geom), channel in zip(geoms, manifest.channels, strict=False):
            if geom.n_channels != 1:
                problems.append(
                    f"{where}: holds {geom.n_channels} channels, expected 1 (channel "
                    f"{channel.name!r}); give a single-channel file"
                )
    return problems


def _multichannel_ndim_problem(where: str, geom: SourceGeometry, modality: Modality) -> list[str]:
    ndim, expected = spatial_ndim(geom), modality.spatial_dims
    if ndim == expected:
        return []
    return [
        f"{where}: is {ndim}D (shape {tuple(geom.shape)}) but {modality.value} images are "
        f"{expected}D; fix the channel's modality or the file"
    ]


def grid_problems(
    where: str, geom: SourceGeometry, ref_where: str, ref: SourceGeometry, tolerance_mm: float
) -> list[str]:
    """``where``'s grid against ``ref_where``'s, in RAS voxel order, within ``tolerance_mm``."""
    a, b = _ras_grid(geom), _ras_grid(ref)
    if a.shape != b.shape:
        return [
            f"{where}: grid shape {_squeezed(geom)} differs from {ref_where} shape "
            f"{_squeezed(ref)}; resample it onto the image grid"
        ]
    diff = grid_difference_mm(a, b)
    if diff > tolerance_mm:
        return [
            f"{where}: grid differs from {ref_where} by {diff:.4g} mm (tolerance "
            f"{tolerance_mm:g} mm); resample it onto the image grid or fix its affine"
        ]
    return []


def _squeezed(geom: SourceGeometry) -> tuple[int, ...]:
    return tuple(geom.shape[: spatial_ndim(geom)])


def _ras_grid(geom: SourceGeometry) -> SourceGeometry:
    """The grid with its axes permuted and flipped to RAS order (the order medimg works in).

    Two files storing the same world grid in different voxel orders (a DICOM series read LPS,
    its segmentation saved LAS) then compare equal, as they are once loaded and reoriented.
    """
    shape = _squeezed(geom)
    affine, ornt = reorient_affine(geom.affine, shape)
    ras_shape = [0] * len(shape)
    for axis, (target, _) in enumerate(ornt):
        ras_shape[int(target)] = shape[axis]
    return SourceGeometry(geom.path, geom.format, tuple(ras_shape), affine, geom.dtype)
