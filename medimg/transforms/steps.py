"""The geometric steps of medimg's chains, as MONAI dictionary transforms that keep a record.

Each step updates the sample's :class:`~medimg.transforms.record.PreprocessRecord` (key
:data:`~medimg.transforms.record.Keys.RECORD`), which is why they are classes (lesson 3 of
STYLE.md: a class only for state or inversion). Until resampling the arrays stay numpy *views*
of the loaded data in the stored dtype: reorientation and cropping copy nothing, and the
resampler reads flipped axes by reversing its gather indices instead of copying them.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data.meta_tensor import MetaTensor
from monai.transforms.transform import MapTransform
from numpy.typing import NDArray

from medimg.errors import GeometryError
from medimg.io import Volume, read_image, reorient
from medimg.io.geometry import SourceGeometry, grid_difference_mm
from medimg.keys import Keys
from medimg.transforms.functional import foreground_box, resize_pad_geometry, resize_with_pad
from medimg.transforms.record import PreprocessRecord
from medimg.transforms.resample import Interp, resample_onehot, resample_separable, spacing_coords

__all__ = [
    "AttachAffined",
    "CropToForegroundd",
    "GridSpacingLambdad",
    "LoadVolumed",
    "ResampleToSpacingd",
    "ResizeWithPadd",
    "ToRASd",
    "resample_plan",
]


def _record(data: Mapping[Hashable, Any]) -> PreprocessRecord:
    record = data.get(Keys.RECORD)
    if not isinstance(record, PreprocessRecord):
        raise GeometryError(
            f"sample must hold a PreprocessRecord under {Keys.RECORD!r} (made by LoadVolumed), "
            f"got {type(record).__name__}; start the chain with LoadVolumed"
        )
    return record


class LoadVolumed(MapTransform):
    """Load images (or take :class:`~medimg.io.Volume` objects) and start the record.

    A path is read by :func:`~medimg.io.read_image`: an image file or a DICOM series folder,
    under the reader's default policies. Arrays keep their stored dtype and memory layout
    (no float cast, no C-order copy). The record follows the first key; every other key must
    be on the same grid.
    """

    def __init__(
        self, keys: Sequence[str], *, ndim: int = 3, allow_missing_keys: bool = True
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.ndim = ndim

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """Return a new sample with arrays for the keys and a fresh record."""
        d = dict(data)
        for key in self.key_iterator(d):
            vol = d[key]
            if not isinstance(vol, Volume):
                vol = read_image(Path(vol), ndim=self.ndim)
            record = PreprocessRecord.from_source(vol.source.shape, vol.source.affine)
            if not vol.source.same_grid(_grid(vol.source, vol.spatial_shape, vol.affine)):
                raise GeometryError(
                    f"{key}: LoadVolumed needs a volume on its stored grid, got one already "
                    "reoriented or resampled; pass the path or the Volume from read_image"
                )
            if Keys.RECORD not in d:
                d[Keys.RECORD] = record
            else:
                _check_same_grid(d[Keys.RECORD], vol.source, str(key))
            d[key] = vol.array
        return d


def _grid(like: SourceGeometry, shape: Sequence[int], affine: Any) -> SourceGeometry:
    """``like`` on another grid, for :meth:`SourceGeometry.same_grid` (the one grid test)."""
    return replace(like, shape=tuple(int(n) for n in shape), affine=np.asarray(affine, float))


def _check_same_grid(first: PreprocessRecord, other: SourceGeometry, key: str) -> None:
    reference = _grid(other, first.source_shape, first.source_affine)
    if not reference.same_grid(other):
        where = "" if reference.shape != other.shape else (
            f" (corners up to {grid_difference_mm(reference, other):.4g} mm apart)"
        )  # fmt: skip
        raise GeometryError(
            f"{key} must be on the image's grid, got shape {other.shape} vs "
            f"{first.source_shape}{where}; resample the label onto the image first"
        )


class ToRASd(MapTransform):
    """Permute and flip axes into RAS order (views, no copy, no interpolation)."""

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """Return a new sample with RAS-ordered views and the reoriented record."""
        d = dict(data)
        record = _record(d)
        for key in self.key_iterator(d):
            d[key] = reorient(np.asarray(d[key]), record.source_affine)[0]
        d[Keys.RECORD] = record.reoriented()
        return d


class CropToForegroundd(MapTransform):
    """Crop every key to the box of the image's voxels above a value; record the box."""

    def __init__(
        self, keys: Sequence[str], *, source_key: str, above: float, margin_vox: int = 0
    ) -> None:
        super().__init__(keys, allow_missing_keys=True)
        self.source_key, self.above, self.margin_vox = source_key, above, margin_vox

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """Return a new sample cropped to the foreground box, the box added to the record."""
        d = dict(data)
        box = foreground_box(d[self.source_key], above=self.above, margin_vox=self.margin_vox)
        where = (slice(None), *(slice(a, b) for a, b in box))
        for key in self.key_iterator(d):
            d[key] = d[key][where]
        d[Keys.RECORD] = _record(d).cropped(box)
        return d


def resample_plan(
    spacing_mm: Sequence[float],
    target_mm: Sequence[float],
    *,
    interp: Interp,
    lowres_interp: Interp,
    anisotropy_threshold: float,
) -> list[Interp]:
    """Interpolation per axis: ``lowres_interp`` along the coarse axis of anisotropic cases.

    nnU-Net's rule: a case is anisotropic when the max/min ratio of its spacing, or of the
    target spacing, exceeds the threshold; the axis with the coarsest spacing is then
    interpolated separately (nnU-Net: order 0), the others with ``interp``.

    Examples
    --------
    >>> resample_plan((0.7, 0.7, 2.5), (1.5, 1.5, 1.5), interp="cubic",
    ...               lowres_interp="nearest", anisotropy_threshold=3.0)
    ['cubic', 'cubic', 'nearest']
    """
    kinds: list[Interp] = [interp] * len(spacing_mm)
    for spacing in (spacing_mm, target_mm):
        if max(spacing) / min(spacing) > anisotropy_threshold:
            kinds[int(np.argmax(spacing))] = lowres_interp
            return kinds
    return kinds


def _unflip(array: NDArray[Any]) -> tuple[torch.Tensor, list[int]]:
    """A torch view of ``array`` with positive strides, and the axes that had to be reversed."""
    flipped = [a for a, s in enumerate(array.strides) if s < 0]
    if flipped:
        array = np.flip(array, axis=tuple(flipped))
    return torch.from_numpy(array), flipped


class ResampleToSpacingd(MapTransform):
    """Resample image and label onto the target spacing (separable, float32) and record it.

    Parameters
    ----------
    image_keys, label_keys : sequence of str
        Keys resampled with ``image_interp`` (float32 output) and ``label_interp``.
    target_spacing_mm : (x, y, z) float
        RAS-order target voxel size.
    image_interp, lowres_interp : str
        In-plane and coarse-axis interpolation (see :func:`resample_plan`).
    label_interp : {"nearest", "linear_onehot"}
    anisotropy_threshold : float
    """

    def __init__(
        self,
        image_keys: Sequence[str],
        label_keys: Sequence[str],
        *,
        target_spacing_mm: Sequence[float],
        image_interp: Interp,
        lowres_interp: Interp,
        label_interp: str,
        anisotropy_threshold: float,
    ) -> None:
        super().__init__([*image_keys, *label_keys], allow_missing_keys=True)
        self.image_keys, self.label_keys = list(image_keys), list(label_keys)
        self.target = tuple(float(s) for s in target_spacing_mm)
        self.image_interp, self.lowres_interp = image_interp, lowres_interp
        self.label_interp, self.threshold = label_interp, anisotropy_threshold

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """Return a new sample resampled to the target spacing, with the new grid recorded."""
        d = dict(data)
        record = _record(d)
        spacing = record.grid_spacing_mm
        coords = [
            spacing_coords(n, s, t)
            for n, s, t in zip(record.grid_shape, spacing, self.target, strict=True)
        ]
        kinds = resample_plan(
            spacing,
            self.target,
            interp=self.image_interp,
            lowres_interp=self.lowres_interp,
            anisotropy_threshold=self.threshold,
        )
        for key in self.key_iterator(d):
            d[key] = self._resample(d[key], coords, kinds, is_label=key in self.label_keys)
        scale = np.diag([*(t / s for s, t in zip(spacing, self.target, strict=True)), 1.0])
        new_shape = tuple(len(c) for c in coords)
        d[Keys.RECORD] = record.resampled(new_shape, record.grid_affine @ scale)
        return d

    def _resample(
        self, array: Any, coords: list[NDArray[np.float64]], kinds: list[Interp], *, is_label: bool
    ) -> torch.Tensor:
        x, flipped = _unflip(np.asarray(array))
        coords = [(x.shape[a + 1] - 1) - c if a + 1 in flipped else c for a, c in enumerate(coords)]
        if is_label and self.label_interp == "linear_onehot":
            return resample_onehot(x, coords, "linear")
        out = resample_separable(x, coords, "nearest" if is_label else kinds)
        if out is x or out.data_ptr() == x.data_ptr():
            out = out.clone()
        return out if is_label else out.to(torch.float32)


class AttachAffined(MapTransform):
    """Wrap arrays as MONAI ``MetaTensor`` s with the record's current affine (no copy)."""

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """Return a new sample whose arrays are ``MetaTensor`` s on the record's grid."""
        d = dict(data)
        record = _record(d)
        affine = torch.as_tensor(record.grid_affine)
        for key in self.key_iterator(d):
            value = d[key]
            if isinstance(value, np.ndarray):
                value = torch.from_numpy(np.ascontiguousarray(value))
            d[key] = MetaTensor(value.as_subclass(torch.Tensor), affine=affine.clone())
        return d


class GridSpacingLambdad(MapTransform):
    """Apply ``func(image, spacing_mm=...)`` with the record's current voxel size.

    For the intensity steps whose filter works in millimetres (denoising, adaptive
    equalisation): ``func`` is a pure function of :mod:`medimg.transforms.functional` with its
    other settings bound by ``functools.partial``.
    """

    def __init__(self, keys: Sequence[str], func: Any) -> None:
        super().__init__(keys, allow_missing_keys=True)
        self.func = func

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """Return a new sample with ``func`` applied to the keys."""
        d = dict(data)
        spacing = _record(d).grid_spacing_mm
        for key in self.key_iterator(d):
            d[key] = self.func(torch.as_tensor(d[key]), spacing_mm=spacing)
        return d


class ResizeWithPadd(MapTransform):
    """Resize 2D images (bilinear) and labels (nearest) to fit ``size_px``, pad, record the grid.

    The geometry is :func:`~medimg.transforms.functional.resize_pad_geometry`'s; the new grid's
    affine maps each output pixel to the input coordinate PyTorch's bilinear resize reads, so
    :func:`~medimg.transforms.inversion.to_source_grid` undoes the step. Labels are read at the
    same coordinates with nearest neighbour and padded with 0: when the image is enlarged, a
    label map brought back with ``interp="nearest"`` equals the original exactly.
    """

    def __init__(
        self, image_keys: Sequence[str], label_keys: Sequence[str], *, size_px: tuple[int, int]
    ) -> None:
        super().__init__([*image_keys, *label_keys], allow_missing_keys=True)
        self.label_keys, self.size_px = list(label_keys), size_px

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """Return a new sample on the padded grid, with that grid recorded."""
        d = dict(data)
        record = _record(d)
        new, offset = resize_pad_geometry(record.grid_shape, self.size_px)
        ratio = [n / m for n, m in zip(record.grid_shape, new, strict=True)]
        for key in self.key_iterator(d):
            if key in self.label_keys:
                d[key] = self._label(np.asarray(d[key]), new, offset, ratio)
            else:
                d[key] = resize_with_pad(torch.as_tensor(d[key]), size_px=self.size_px)
        step = np.eye(4)
        for a, (r, x0) in enumerate(zip(ratio, offset, strict=True)):
            step[a, a], step[a, 3] = r, (0.5 - x0) * r - 0.5
        d[Keys.RECORD] = record.resampled(self.size_px, record.grid_affine @ step)
        return d

    def _label(
        self, array: NDArray[Any], new: tuple[int, ...], offset: tuple[int, ...], ratio: list[float]
    ) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(array))
        coords = [
            (np.arange(n, dtype=np.float64) + 0.5) * r - 0.5
            for n, r in zip(new, ratio, strict=True)
        ]
        out = torch.zeros((x.shape[0], *self.size_px), dtype=x.dtype)
        where = tuple(slice(x0, x0 + n) for x0, n in zip(offset, new, strict=True))
        out[(slice(None), *where)] = resample_separable(x, coords, "nearest")
        return out
