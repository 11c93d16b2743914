"""Content checks of a parsed manifest: files, headers, grids, channels, label values.

Each check returns problem lines (``field.path: what, found; fix``) instead of raising, so
:func:`medimg.manifests.load_manifest` can report every problem of every case at once. Only
headers are read, except label maps, whose voxels are needed to check the label values.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medimg.errors import MedimgError
from medimg.io.geometry import SourceGeometry, grid_difference_mm, reorient_affine
from medimg.manifests.load import Tolerances
from medimg.manifests.schema import Case, Manifest
from medimg.modality import Modality

__all__ = ["content_problems", "read_any_header", "spatial_ndim"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Ctx:
    manifest: Manifest
    root: Path
    tol: Tolerances


def content_problems(manifest: Manifest, root: Path, tolerances: Tolerances) -> list[str]:
    """Every file-level problem of every case of `manifest`, whose paths are relative to `root`.

    Parameters
    ----------
    manifest : Manifest
        A manifest that passed the schema checks.
    root : Path
        The manifest file's folder.
    tolerances : Tolerances
        Grid tolerance and whether label voxels are read.

    Returns
    -------
    list of str
        One line per problem, each naming the field path (``training[3].label``).
    """
    ctx = _Ctx(manifest, root, tolerances)
    problems: list[str] = []
    for split, i, case in manifest.cases():
        problems += _case_problems(ctx, f"{split}[{i}]", case)
    return problems


def read_any_header(path: Path) -> SourceGeometry:
    """Header of an image file, or of a DICOM series when `path` is a folder.

    Raises
    ------
    MedimgError
        If the file or series cannot be read (subclasses say why).
    ModuleNotFoundError
        If `path` is a folder and :mod:`medimg.io.dicom` is not available.
    """
    if path.is_dir():
        try:
            module = importlib.import_module("medimg.io.dicom")
            reader: Callable[[Path], SourceGeometry] = module.read_dicom_header
        except (ImportError, AttributeError):
            raise ModuleNotFoundError("medimg.io.dicom.read_dicom_header") from None
        return reader(path)
    from medimg.io import read_header

    return read_header(path)


def spatial_ndim(geometry: SourceGeometry) -> int:
    """Spatial dimensions of a header, trailing singleton axes dropped (down to 2).

    Examples
    --------
    >>> g = SourceGeometry(Path("x.nii"), "nifti", (64, 80, 1), np.eye(4), "<u2")
    >>> spatial_ndim(g)
    2
    """
    shape = list(geometry.shape)
    while len(shape) > 2 and shape[-1] == 1:
        shape.pop()
    return len(shape)


def _case_problems(ctx: _Ctx, where: str, case: Case) -> list[str]:
    problems: list[str] = []
    keys = (
        ["image"]
        if isinstance(case.image, str)
        else [f"image[{j}]" for j in range(len(case.images))]
    )
    geoms: list[tuple[str, SourceGeometry]] = []
    for key, rel in zip(keys, case.images, strict=True):
        geom = _header(ctx.root, rel, f"{where}.{key}", problems)
        if geom is not None:
            geoms.append((f"{where}.{key}", geom))
    problems += _channel_problems(ctx.manifest, case, geoms)
    if len(geoms) > 1:
        first_where, first = geoms[0]
        for other_where, other in geoms[1:]:
            problems += _grid_problems(other_where, other, first_where, first, ctx.tol.grid_mm)
    if case.label is not None:
        label = _header(ctx.root, case.label, f"{where}.label", problems)
        if label is not None and geoms:
            image_where, image = geoms[0]
            grid = _grid_problems(f"{where}.label", label, image_where, image, ctx.tol.grid_mm)
            problems += grid
            if ctx.tol.check_label_values and not grid:
                problems += _label_value_problems(ctx.manifest, f"{where}.label", label.path)
    return problems


def _header(root: Path, rel: str, where: str, problems: list[str]) -> SourceGeometry | None:
    path = Path(os.path.normpath(root / rel))
    if not path.exists():
        problems.append(f"{where}: file not found: {rel} (resolved: {path}); fix the path")
        return None
    try:
        return read_any_header(path)
    except ModuleNotFoundError:
        problems.append(
            f"{where}: {rel} is a folder (a DICOM series?) but medimg.io.dicom is not "
            "available to read it; convert the series to NIfTI or update medimg"
        )
    except MedimgError as exc:
        reason = str(exc).splitlines()[0]
        problems.append(f"{where}: cannot read {rel}: {reason}")
    return None


def _channel_problems(
    manifest: Manifest, case: Case, geoms: list[tuple[str, SourceGeometry]]
) -> list[str]:
    problems: list[str] = []
    n_declared = len(manifest.channels)
    if isinstance(case.image, str) and geoms:
        where, geom = geoms[0]
        if geom.n_channels != n_declared:
            problems.append(
                f"{where}: holds {geom.n_channels} channel(s), the manifest declares "
                f"{n_declared}; fix 'channels' or give one path per channel"
            )
        modalities = manifest.modalities
        entries = [(where, geom, m) for m in dict.fromkeys(modalities)]
    else:
        entries = []
        for (where, geom), channel in zip(geoms, manifest.channels, strict=False):
            if geom.n_channels != 1:
                problems.append(
                    f"{where}: holds {geom.n_channels} channels, expected 1 (channel "
                    f"{channel.name!r}); give a single-channel file"
                )
            entries.append((where, geom, channel.modality))
    for where, geom, modality in entries:
        problems += _ndim_problem(where, geom, modality)
    return problems


def _ndim_problem(where: str, geom: SourceGeometry, modality: Modality) -> list[str]:
    ndim, expected = spatial_ndim(geom), modality.spatial_dims
    if ndim == expected:
        return []
    return [
        f"{where}: is {ndim}D (shape {tuple(geom.shape)}) but {modality.value} images are "
        f"{expected}D; fix the channel's modality or the file"
    ]


def _grid_problems(
    where: str, geom: SourceGeometry, ref_where: str, ref: SourceGeometry, tolerance_mm: float
) -> list[str]:
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


def _label_value_problems(manifest: Manifest, where: str, path: Path) -> list[str]:
    declared = {d.value for d in manifest.labels or ()}
    try:
        values = _unique_values(path)
    except MedimgError as exc:
        return [f"{where}: cannot read the label voxels: {str(exc).splitlines()[0]}"]
    if values.dtype.kind == "f" and not np.all(np.mod(values, 1) == 0):
        return [f"{where}: holds non-integer values; label maps must hold integers"]
    undeclared = sorted(int(v) for v in values if int(v) not in declared)
    if not undeclared:
        return []
    return [
        f"{where}: holds undeclared label value(s) {undeclared} (declared: "
        f"{sorted(declared)}); add them to 'labels' or fix the label map"
    ]


def _unique_values(path: Path) -> Any:
    from medimg.io import load_volume

    volume = load_volume(path, ndim=None, nonfinite="keep", shear="keep")
    return np.unique(volume.array)
