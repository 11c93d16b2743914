"""Content checks of a parsed manifest: files, links, headers, load policies, grids, labels.

Each check returns problem lines (``field.path: what, found; fix``) instead of raising, so
:func:`medimg.manifests.load_manifest` can report every problem of every case at once.

A clean result means training will accept the files: each is read through the one read path
(:func:`medimg.io.read_image_header`, then :func:`medimg.io.read_image` where voxels are
needed, as :class:`medimg.transforms.LoadVolumed` reads it) and checked against the policies
training's reads apply:

* an image **file** or a **DICOM series folder** holding one volume, inside the manifest's
  folder once links are resolved (unless ``allow_paths_outside_root``);
* a header that parses (for a DICOM folder: every slice header, and the series' geometry
  checks), with a supported voxel **dtype** (no RGB, vector or complex voxels) and a finite
  affine;
* **no shear** (voxel axes orthogonal within
  :data:`~medimg.io.geometry.SHEAR_TOLERANCE_DEG`);
* the **dimensionality** training asks for: 3D for CT and MR (trailing singleton axes
  dropped, as the reader does), 2D for XR;
* a decoded size within the **decode limit** (``Tolerances.max_bytes``);
* **finite voxels**. Only float-stored images, and integer NIfTI images whose
  ``scl_slope``/``scl_inter`` could overflow float32, can hold NaN or infinity, so only their
  voxels are read (one volume at a time), besides label maps for the label-value check and
  DICOM series, whose pixels are decoded and rescaled as training decodes them.
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medimg.errors import MedimgError
from medimg.io.geometry import (
    SHEAR_TOLERANCE_DEG,
    SourceGeometry,
    max_shear_deg,
)
from medimg.manifests._grid_checks import channel_problems, grid_problems, spatial_ndim
from medimg.manifests.load import Tolerances
from medimg.manifests.schema import Case, Manifest
from medimg.modality import Modality

__all__ = ["content_problems", "spatial_ndim"]

logger = logging.getLogger(__name__)

_FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class _Ctx:
    manifest: Manifest
    root: Path
    real_root: Path
    tol: Tolerances
    max_bytes: int


@dataclass(frozen=True)
class _File:
    """One input of a case (an image file or a DICOM series folder) as the checks see it."""

    where: str  # field path, e.g. "training[3].label"
    rel: str  # as written in the manifest
    path: Path  # as training opens it
    modality: Modality | None  # what training reads it as (None: a multi-channel file)

    @property
    def ndim(self) -> int | None:
        """Spatial dimensions training asks the reader for."""
        return None if self.modality is None else self.modality.spatial_dims


def content_problems(manifest: Manifest, root: Path, tolerances: Tolerances) -> list[str]:
    """Every file-level problem of every case of `manifest`, whose paths are relative to `root`.

    Parameters
    ----------
    manifest : Manifest
        A manifest that passed the schema checks.
    root : Path
        The manifest file's folder.
    tolerances : Tolerances
        Grid tolerance, whether label voxels are read, and the decode limit.

    Returns
    -------
    list of str
        One line per problem, each naming the field path (``training[3].label``).
    """
    from medimg.io import default_max_bytes

    max_bytes = default_max_bytes() if tolerances.max_bytes is None else tolerances.max_bytes
    ctx = _Ctx(manifest, root, root.resolve(), tolerances, max_bytes)
    problems: list[str] = []
    if len(manifest.channels) > 1:
        problems.append(
            f"channels: {len(manifest.channels)} channels declared, but training and prediction "
            "in this version of medimg read one single-channel image per case (multi-channel "
            "input is not implemented yet); keep one channel, or train elsewhere"
        )
    for split, i, case in manifest.cases():
        problems += _case_problems(ctx, f"{split}[{i}]", case)
    return problems


def _case_problems(ctx: _Ctx, where: str, case: Case) -> list[str]:
    problems: list[str] = []
    modalities = ctx.manifest.modalities
    if isinstance(case.image, str):
        # one file for every channel: a multi-channel file is read with ndim=None
        single = modalities[0] if len(modalities) == 1 else None
        files = [_File(f"{where}.image", case.image, _path(ctx, case.image), single)]
    else:
        files = [
            _File(f"{where}.image[{j}]", rel, _path(ctx, rel), m)
            for j, (rel, m) in enumerate(zip(case.images, modalities, strict=False))
        ]
    geoms: list[tuple[str, SourceGeometry]] = []
    for file in files:
        geom = _checked_file(ctx, file, problems, read_voxels=True)
        if geom is not None:
            geoms.append((file.where, geom))
    problems += channel_problems(ctx.manifest, case, geoms)
    if len(geoms) > 1:
        first_where, first = geoms[0]
        for other_where, other in geoms[1:]:
            problems += grid_problems(other_where, other, first_where, first, ctx.tol.grid_mm)
    if case.label is not None:
        problems += _label_problems(ctx, where, case.label, geoms)
    from medimg.manifests.boxes import box_content_problems

    return problems + box_content_problems(where, case, geoms)  # boxes inside the image grid


def _path(ctx: _Ctx, rel: str) -> Path:
    return Path(os.path.normpath(ctx.root / rel))


def _checked_file(
    ctx: _Ctx, file: _File, problems: list[str], *, read_voxels: bool
) -> SourceGeometry | None:
    """The file's header after every check training's read makes; its problems appended.

    With `read_voxels`, the voxels are read when they may be non-finite, else a compressed
    body is verified (CRC and length); without it the caller reads the voxels itself.
    Returns the header when it could be read (so grids are still compared), else None.
    """
    found = _exists_problem(ctx, file)
    if found is not None:
        problems.append(found)
        return None
    from medimg.io import read_image_header

    try:
        geom = read_image_header(file.path)
    except MedimgError as exc:
        problems.append(f"{file.where}: cannot read {file.rel}: {_first_line(exc)}")
        return None
    if not np.isfinite(geom.affine).all():
        problems.append(
            f"{file.where}: {file.rel} has a non-finite affine (NaN or infinity in its "
            "voxel-to-world matrix); fix the header's sform/qform or spacing/origin"
        )
        return None
    scaling = _scaling(geom)
    policy = _policy_problems(ctx, file, geom, scaling)
    problems += policy
    wrong_channels = file.modality is not None and geom.n_channels != 1  # reported per case
    if read_voxels and not policy and not wrong_channels:
        if _may_hold_nonfinite(geom, scaling):
            problems += _voxel_problems(ctx, file)  # load_volume verifies compressed data too
        else:
            problems += _compressed_problems(file)
    return geom


def _compressed_problems(file: _File) -> list[str]:
    """A compressed body's CRC and length, checked in one streaming pass (training's read does)."""
    from medimg.io import verify_compressed

    try:
        verify_compressed(file.path)
    except MedimgError as exc:
        return [f"{file.where}: {file.rel}: {_first_line(exc).removeprefix(f'{file.path}: ')}"]
    return []


def _exists_problem(ctx: _Ctx, file: _File) -> str | None:
    """Missing, unreachable, neither file nor folder, or linked outside the manifest's folder."""
    try:
        mode = os.stat(file.path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        broken = ""
        if os.path.islink(file.path):
            broken = f", a broken link to {os.readlink(file.path)}"
        return (
            f"{file.where}: file not found: {file.rel} (resolved: {file.path}{broken}); "
            "fix the path"
        )
    except OSError as exc:
        return f"{file.where}: cannot open {file.rel} ({file.path}): {exc.strerror}; fix the path"
    if not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):  # a folder: a DICOM series
        return (
            f"{file.where}: {file.rel} is not a regular file (a device, pipe or socket); "
            "name an image file"
        )
    if ctx.manifest.allow_paths_outside_root:
        return None
    real = file.path.resolve()
    if real.is_relative_to(ctx.real_root):
        return None
    link, target = _first_link(ctx.root, file.rel)
    return (
        f"{file.where}: {file.rel!r} leads outside the manifest's folder through the link "
        f"{link} -> {target} (resolved: {real}); move the data under {ctx.real_root}, or set "
        '"allow_paths_outside_root": true'
    )


def _first_link(root: Path, rel: str) -> tuple[Path, str]:
    """The first symbolic link on the way from `root` to `rel`, and what it points to."""
    current = root
    for part in Path(os.path.normpath(rel)).parts:
        current = current / part
        if current.is_symlink():
            return current, os.readlink(current)
    return current, str(current.resolve())  # not reached: only a link leads outside


def _policy_problems(
    ctx: _Ctx, file: _File, geom: SourceGeometry, scaling: tuple[float, float]
) -> list[str]:
    """Shear, dimensionality and decode size, from the header (as load_volume refuses them)."""
    problems: list[str] = []
    shear_deg = max_shear_deg(geom.affine)
    if shear_deg > SHEAR_TOLERANCE_DEG:
        problems.append(
            f"{file.where}: {file.rel} has a sheared affine: voxel axes deviate "
            f"{shear_deg:.3f} degrees from orthogonal, which training refuses; resample it "
            "onto an orthogonal grid"
        )
    if file.modality is not None and geom.n_channels == 1:  # more: a channel problem
        problems += _ndim_problem(file.where, geom, file.modality)
    needed = _decoded_bytes(geom, scaling)
    if needed > ctx.max_bytes:
        problems.append(
            f"{file.where}: {file.rel} decodes to {needed / 1024**3:.2f} GiB (shape "
            f"{_stored_shape(geom)}), over the decode limit of {ctx.max_bytes / 1024**3:.2f} GiB; "
            "raise it (medimg validate --max-memory-gb) if the machine has the memory, or "
            "crop or downsample the file"
        )
    return problems


def _stored_shape(geom: SourceGeometry) -> tuple[int, ...]:
    return (*geom.shape, geom.n_channels) if geom.n_channels > 1 else tuple(geom.shape)


def _ndim_problem(where: str, geom: SourceGeometry, modality: Modality) -> list[str]:
    """The reader's rule: trailing singleton axes are dropped until the modality's remain."""
    shape = list(_stored_shape(geom))
    expected = modality.spatial_dims
    while len(shape) > 2 and shape[-1] == 1 and len(shape) > expected:
        shape.pop()
    if len(shape) == expected:
        return []
    return [
        f"{where}: is {len(shape)}D (shape {_stored_shape(geom)}) but {modality.value} images "
        f"are {expected}D; fix the channel's modality or the file"
    ]


def _scaling(geom: SourceGeometry) -> tuple[float, float]:
    """NIfTI ``scl_slope``/``scl_inter`` as medimg's reader applies them ((1, 0): none)."""
    if geom.format not in ("nifti", "analyze") or np.dtype(geom.dtype).kind == "f":
        return 1.0, 0.0
    import nibabel as nib

    from medimg.io._nibabel import nibabel_scaling

    image: Any = nib.load(str(geom.path), mmap=False)  # the header, read again: cheap
    return nibabel_scaling(image.dataobj)


def _decoded_bytes(geom: SourceGeometry, scaling: tuple[float, float]) -> int:
    dtype = np.dtype(geom.dtype)
    rescaled = scaling != (1.0, 0.0) or geom.format == "dicom"  # DICOM: float32 at worst
    itemsize = 4 if rescaled else dtype.itemsize
    return int(np.prod(_stored_shape(geom), dtype=np.int64)) * itemsize


def _may_hold_nonfinite(geom: SourceGeometry, scaling: tuple[float, float]) -> bool:
    """Float voxels, integers whose scaling can overflow float32 (1e38 * 32767 = inf), DICOM.

    A DICOM series is always read: its pixels can only be checked by decoding them, and its
    per-slice rescale can overflow float32 as NIfTI scaling can.
    """
    dtype = np.dtype(geom.dtype)
    if dtype.kind == "f" or geom.format == "dicom":
        return True
    slope, inter = scaling
    if (slope, inter) == (1.0, 0.0):
        return False
    info = np.iinfo(dtype) if dtype.kind in "iu" else np.iinfo(np.uint8)
    largest = max(abs(float(info.min)), abs(float(info.max)))
    return largest * abs(slope) + abs(inter) >= _FLOAT32_MAX / 2


def _voxel_problems(ctx: _Ctx, file: _File) -> list[str]:
    """Read the voxels as training does (non-finite voxels refused); one volume at a time."""
    try:
        _load(ctx, file)
    except MedimgError as exc:
        return [f"{file.where}: {file.rel}: {_first_line(exc).removeprefix(f'{file.path}: ')}"]
    return []


def _load(ctx: _Ctx, file: _File) -> Any:
    from medimg.io import read_image

    return read_image(file.path, ndim=file.ndim, max_bytes=ctx.max_bytes).array


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _label_problems(
    ctx: _Ctx, where: str, rel: str, geoms: list[tuple[str, SourceGeometry]]
) -> list[str]:
    problems: list[str] = []
    file = _File(f"{where}.label", rel, _path(ctx, rel), ctx.manifest.modalities[0])
    read_values = ctx.tol.check_label_values
    label = _checked_file(ctx, file, problems, read_voxels=not read_values)
    if label is None or problems:
        return problems
    if label.n_channels != 1:
        return [
            f"{file.where}: holds {label.n_channels} volumes, a label map is one; give "
            "one label volume per case"
        ]
    if geoms:
        image_where, image = geoms[0]
        problems += grid_problems(file.where, label, image_where, image, ctx.tol.grid_mm)
    if read_values and not problems:
        problems += _label_value_problems(ctx, file)
    return problems


def _label_value_problems(ctx: _Ctx, file: _File) -> list[str]:
    """Values of the label voxels, read as training reads them (non-finite refused)."""
    declared = {d.value for d in ctx.manifest.labels or ()}
    try:
        values = np.unique(_load(ctx, file))
    except MedimgError as exc:
        reason = _first_line(exc).removeprefix(f"{file.path}: ")
        return [f"{file.where}: cannot read the label voxels: {reason}"]
    if values.dtype.kind == "f" and not np.all(np.mod(values, 1) == 0):
        return [f"{file.where}: holds non-integer values; label maps must hold integers"]
    undeclared = sorted(int(v) for v in values if int(v) not in declared)
    if not undeclared:
        return []
    return [
        f"{file.where}: holds undeclared label value(s) {undeclared} (declared: "
        f"{sorted(declared)}); add them to 'labels' or fix the label map"
    ]
