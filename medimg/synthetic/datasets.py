"""Synthetic datasets on disk: phantom images plus a manifest that validates out of the box.

:func:`write_ct_segmentation_dataset` and :func:`write_xray_classification_dataset` write NIfTI
files and ``dataset.json`` into a folder and return the manifest's path, ready for
:func:`medimg.manifests.load_manifest`, the pipelines and the demo. Every case is drawn from its
own child seed of ``seed``, so case ``k`` is the same whatever ``n_cases`` is.

Layouts::

    OUT_DIR/dataset.json                       OUT_DIR/dataset.json
    OUT_DIR/imagesTr/case_000.nii.gz           OUT_DIR/images/case_000.nii.gz
    OUT_DIR/labelsTr/case_000.nii.gz           ...
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from medimg.errors import ConfigError
from medimg.io.writing import save_volume
from medimg.synthetic.phantoms import CT_LABELS, ct_phantom, grid_affine, xray_phantom
from medimg.typing import Affine, PathLike, Shape3D

__all__ = [
    "CT_FIELD_OF_VIEW_MM",
    "XRAY_CLASSES",
    "ct_case_grid",
    "write_ct_segmentation_dataset",
    "write_xray_classification_dataset",
]

CT_FIELD_OF_VIEW_MM = (160.0, 144.0, 140.0)
"""Extent of every synthetic CT case's grid along its stored axes, in mm."""

XRAY_CLASSES = ("normal", "nodule")
"""Class names of the X-ray set; the index is :func:`xray_phantom`'s ``label``."""

_Z_SPACINGS_MM = (5.0, 6.0, 7.0)


def _case_rngs(seed: int, n_cases: int) -> list[np.random.Generator]:
    children = np.random.SeedSequence(seed).spawn(n_cases)
    return [np.random.default_rng(child) for child in children]


def _check_args(n_cases: int, manifest: Path, overwrite: bool) -> None:
    if n_cases < 1:
        raise ConfigError(f"n_cases must be >= 1, got {n_cases}")
    if manifest.exists() and not overwrite:
        from medimg.errors import OutputExistsError

        raise OutputExistsError(f"{manifest} exists; pass overwrite=True (--force) to replace it")


def ct_case_grid(rng: np.random.Generator, case_index: int) -> tuple[Shape3D, Affine]:
    """Shape and affine of one synthetic CT case.

    Spacing is 4.0 x 4.5 x (5, 6 or 7, drawn) mm; odd cases are stored LPS, even cases RAS;
    every grid is rotated about z by up to 10 degrees (oblique) and covers
    :data:`CT_FIELD_OF_VIEW_MM`.
    """
    z_mm = float(rng.choice(_Z_SPACINGS_MM))
    spacing = (4.0, 4.5, z_mm)
    fov = CT_FIELD_OF_VIEW_MM
    shape = (math.ceil(fov[0] / 4.0), math.ceil(fov[1] / 4.5), math.ceil(fov[2] / z_mm))
    axcodes = "LPS" if case_index % 2 else "RAS"
    rotation = (0.0, 0.0, float(rng.uniform(-10.0, 10.0)))
    return shape, grid_affine(shape, spacing, axcodes=axcodes, rotation_deg=rotation)


def write_ct_segmentation_dataset(
    out_dir: PathLike, n_cases: int = 10, *, seed: int = 0, overwrite: bool = False
) -> Path:
    """Write a synthetic CT organ-segmentation dataset and its manifest.

    Each case is a :func:`~medimg.synthetic.ct_phantom` (liver, spleen, liver lesion; labels
    :data:`~medimg.synthetic.CT_LABELS`) on its own anisotropic, oblique grid
    (:func:`ct_case_grid`). The last ``n_cases // 5`` cases form the test split.

    Parameters
    ----------
    out_dir : path-like
        Folder to write into (created if needed).
    n_cases : int
        Number of cases, >= 1.
    seed : int
        Seed of the whole dataset.
    overwrite : bool
        Replace an existing ``dataset.json`` and case files.

    Returns
    -------
    Path
        ``out_dir/dataset.json``.

    Raises
    ------
    ConfigError
        If `n_cases` < 1.
    OutputExistsError
        If ``dataset.json`` exists and `overwrite` is false.
    """
    out = Path(out_dir)
    manifest = out / "dataset.json"
    _check_args(n_cases, manifest, overwrite)
    cases = []
    for k, rng in enumerate(_case_rngs(seed, n_cases)):
        shape, affine = ct_case_grid(rng, k)
        phantom = ct_phantom(shape, affine=affine, seed=rng)
        case_id = f"case_{k:03d}"
        image = f"imagesTr/{case_id}.nii.gz"
        label = f"labelsTr/{case_id}.nii.gz"
        save_volume(phantom.image.array, out / image, like=phantom.image, overwrite=overwrite)
        save_volume(phantom.label.array, out / label, like=phantom.label, overwrite=overwrite)
        cases.append({"id": case_id, "image": image, "label": label})
    record: dict[str, Any] = {
        "schema_version": 1,
        "name": "synthetic_ct_organs",
        "description": f"Synthetic CT abdomen phantoms (medimg.synthetic.ct_phantom), "
        f"{n_cases} cases, seed {seed}. Regenerate with: medimg synth ct-seg OUT_DIR "
        f"--cases {n_cases} --seed {seed}",
        "channels": [{"name": "CT", "modality": "CT"}],
        "labels": [{"value": v, "name": n} for v, n in CT_LABELS.items()],
    }
    return _finish(record, cases, manifest, overwrite)


def write_xray_classification_dataset(
    out_dir: PathLike, n_cases: int = 20, *, seed: int = 0, overwrite: bool = False
) -> Path:
    """Write a synthetic chest-X-ray classification dataset (normal / nodule) and its manifest.

    Each case is a 2D :func:`~medimg.synthetic.xray_phantom` of 64 x 80 pixels at 5 mm; classes
    alternate (even cases ``normal``, odd ``nodule``) so every split is balanced. The last
    ``n_cases // 5`` cases form the test split.

    Parameters
    ----------
    out_dir : path-like
        Folder to write into (created if needed).
    n_cases : int
        Number of cases, >= 1.
    seed : int
        Seed of the whole dataset.
    overwrite : bool
        Replace an existing ``dataset.json`` and case files.

    Returns
    -------
    Path
        ``out_dir/dataset.json``.

    Raises
    ------
    ConfigError
        If `n_cases` < 1.
    OutputExistsError
        If ``dataset.json`` exists and `overwrite` is false.
    """
    out = Path(out_dir)
    manifest = out / "dataset.json"
    _check_args(n_cases, manifest, overwrite)
    cases = []
    for k, rng in enumerate(_case_rngs(seed, n_cases)):
        phantom = xray_phantom(label=k % 2, seed=rng)
        case_id = f"case_{k:03d}"
        image = f"images/{case_id}.nii.gz"
        save_volume(phantom.image.array, out / image, like=phantom.image, overwrite=overwrite)
        cases.append({"id": case_id, "image": image, "class": XRAY_CLASSES[phantom.label]})
    record: dict[str, Any] = {
        "schema_version": 1,
        "name": "synthetic_xray_nodules",
        "description": f"Synthetic chest X-rays (medimg.synthetic.xray_phantom), {n_cases} "
        f"cases, seed {seed}. Regenerate with: medimg synth xray-cls OUT_DIR --cases {n_cases} "
        f"--seed {seed}",
        "channels": [{"name": "XR", "modality": "XR"}],
        "classes": list(XRAY_CLASSES),
    }
    return _finish(record, cases, manifest, overwrite)


def _finish(
    record: dict[str, Any],
    cases: list[dict[str, Any]],
    path: Path,
    overwrite: bool,
    *,
    validation: bool = False,
) -> Path:
    """Split the cases and write the manifest.

    The last ``len(cases) // 5`` cases are the test split; with ``validation`` the
    ``len(cases) // 5`` before them are the validation split.
    """
    from medimg.manifests.load import save_manifest

    n_held = len(cases) // 5
    n_train = len(cases) - (2 if validation else 1) * n_held
    record["training"] = cases[:n_train]
    if n_held and validation:
        record["validation"] = cases[n_train : n_train + n_held]
    if n_held:
        record["test"] = cases[len(cases) - n_held :]
    return save_manifest(record, path, overwrite=overwrite)
