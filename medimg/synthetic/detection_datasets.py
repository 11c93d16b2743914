"""The synthetic nodule-detection dataset on disk: CT images plus a schema-2 detection manifest.

:func:`write_ct_detection_dataset` writes :func:`~medimg.synthetic.detection.chest_ct_phantom`
cases (or, with ``background``, nodules inserted into one real CT) and ``dataset.json``, whose
boxes are the nodules' world centres and diameters. Case ``k`` is drawn from its own child
seed of ``seed``, so it is the same whatever ``n_cases`` is. Layout::

    OUT_DIR/dataset.json
    OUT_DIR/imagesTr/case_000.nii.gz     (int16 HU)

With ``masks=True`` each case's nodule mask is written too, with a segmentation manifest of the
same images and splits, so a segmentation model can be trained and scored lesion-wise on the
very lesions the detector is scored on::

    OUT_DIR/dataset_segmentation.json    (labels background 0, nodule 1)
    OUT_DIR/labelsTr/case_000.nii.gz     (uint8, on the image's grid)
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from medimg.io.geometry import affine_axcodes
from medimg.io.writing import save_volume
from medimg.synthetic.datasets import _check_args, _finish
from medimg.synthetic.detection import (
    CHEST_FIELD_OF_VIEW_MM,
    NODULE_CLASS,
    ChestSettings,
    DetectionPhantom,
    chest_ct_phantom,
)
from medimg.synthetic.nodule_insertion import insert_nodules
from medimg.synthetic.phantoms import grid_affine
from medimg.typing import Affine, PathLike, Shape3D

__all__ = ["SEGMENTATION_MANIFEST", "chest_case_grid", "write_ct_detection_dataset"]

SEGMENTATION_MANIFEST = "dataset_segmentation.json"
"""The nodule-segmentation manifest written beside ``dataset.json`` with ``masks=True``."""

_IN_PLANE_MM = (2.0, 2.4)
_Z_MM = (2.5, 3.0)


def chest_case_grid(rng: np.random.Generator, case_index: int) -> tuple[Shape3D, Affine]:
    """Shape and affine of one synthetic chest CT case.

    Spacing is ``s x 1.1 s x z`` mm with ``s`` 2.0 or 2.4 and ``z`` 2.5 or 3.0 (drawn), over
    :data:`~medimg.synthetic.detection.CHEST_FIELD_OF_VIEW_MM` (80 to 96 x 61 to 73 x 48 to 58
    voxels); odd cases are stored LPS, even cases RAS; every grid is rotated up to 10 degrees
    about z and 5 about x (oblique).
    """
    s = float(rng.choice(_IN_PLANE_MM))
    spacing = (s, round(1.1 * s, 3), float(rng.choice(_Z_MM)))
    fov = CHEST_FIELD_OF_VIEW_MM
    shape = (
        math.ceil(fov[0] / spacing[0]),
        math.ceil(fov[1] / spacing[1]),
        math.ceil(fov[2] / spacing[2]),
    )
    rotation = (float(rng.uniform(-5.0, 5.0)), 0.0, float(rng.uniform(-10.0, 10.0)))
    axcodes = "LPS" if case_index % 2 else "RAS"
    return shape, grid_affine(shape, spacing, axcodes=axcodes, rotation_deg=rotation)


def write_ct_detection_dataset(
    out_dir: PathLike,
    n_cases: int = 20,
    *,
    seed: int = 0,
    background: PathLike | None = None,
    settings: ChestSettings | None = None,
    overwrite: bool = False,
    masks: bool = False,
) -> Path:
    """Write a synthetic lung-nodule detection dataset and its schema-2 manifest.

    The last ``n_cases // 5`` cases form the test split and the ``n_cases // 5`` before them
    the validation split. Each case lists its nodules as boxes (world RAS+ centre, size = the
    diameter along x, y, z; class ``"nodule"``); a case may have none (``"boxes": []``).

    Parameters
    ----------
    out_dir : path-like
        Folder to write into (created if needed).
    n_cases : int
        Number of cases, >= 1.
    seed : int
        Seed of the whole dataset.
    background : path-like, optional
        A real 3D CT (HU) to insert nodules into, one draw per case, on its own grid
        (:func:`~medimg.synthetic.nodule_insertion.insert_nodules`); default: phantoms.
    settings : ChestSettings, optional
        Nodule count and diameters (3 to 30 mm), vessels, noise.
    overwrite : bool
        Replace an existing ``dataset.json`` and case files.
    masks : bool
        Also write each case's nodule mask and :data:`SEGMENTATION_MANIFEST` (module notes).

    Returns
    -------
    Path
        ``out_dir/dataset.json``.

    Raises
    ------
    ConfigError
        If `n_cases` < 1, or the background has no lung where a nodule fits.
    OutputExistsError
        If ``dataset.json`` exists and `overwrite` is false.
    MedimgError
        If the background cannot be read (:func:`medimg.io.load_volume`'s errors).
    """
    out = Path(out_dir)
    manifest = out / "dataset.json"
    _check_args(n_cases, manifest, overwrite)
    from medimg.io import load_volume

    real = None if background is None else load_volume(background, ndim=3)
    cases, masked = [], []
    children = np.random.SeedSequence(seed).spawn(n_cases)
    for k, rng in enumerate(np.random.default_rng(child) for child in children):
        if real is None:
            shape, affine = chest_case_grid(rng, k)
            phantom = chest_ct_phantom(shape, affine=affine, seed=rng, settings=settings)
        else:
            phantom = insert_nodules(real, seed=rng, settings=settings)
        cases.append(_write_case(out, f"case_{k:03d}", phantom, overwrite))
        if masks:
            label = f"labelsTr/case_{k:03d}.nii.gz"
            save_volume(phantom.label, out / label, like=phantom.image, overwrite=overwrite)
            masked.append({"id": cases[-1]["id"], "image": cases[-1]["image"], "label": label})
    source = "medimg.synthetic.detection.chest_ct_phantom"
    if background is not None:
        source = f"nodules inserted into {Path(background).name}"
    again = f"medimg synth ct-det OUT_DIR --cases {n_cases} --seed {seed}"
    record: dict[str, Any] = {
        "schema_version": 2,
        "task": "detection",
        "name": "synthetic_ct_nodules",
        "description": f"Synthetic chest CT nodules ({source}), {n_cases} cases, seed {seed}; "
        "boxes are world RAS+ mm (centre, diameter). Regenerate with: "
        f"{again}{'' if background is None else ' --background ' + str(background)}",
        "channels": [{"name": "CT", "modality": "CT"}],
        "classes": [NODULE_CLASS],
    }
    if masks:
        segmentation = {
            "schema_version": 2,
            "task": "segmentation",
            "name": "synthetic_ct_nodules_masks",
            "description": f"Nodule masks of {manifest.name}'s cases and splits (voxels at least "
            "half inside a nodule), for lesion-wise comparison with the detector",
            "channels": record["channels"],
            "labels": [{"value": 0, "name": "background"}, {"value": 1, "name": NODULE_CLASS}],
        }
        _finish(segmentation, masked, out / SEGMENTATION_MANIFEST, overwrite, validation=True)
    return _finish(record, cases, manifest, overwrite, validation=True)


def _write_case(
    out: Path, case_id: str, phantom: DetectionPhantom, overwrite: bool
) -> dict[str, Any]:
    image = f"imagesTr/{case_id}.nii.gz"
    hu = np.clip(np.round(phantom.image.array), -32768, 32767).astype(np.int16)
    save_volume(hu, out / image, like=phantom.image, overwrite=overwrite)
    boxes = [
        {"center_mm": list(b.center_mm), "size_mm": list(b.size_mm), "class": b.class_name}
        for b in phantom.boxes()
    ]
    axcodes = "".join(affine_axcodes(phantom.image.affine))
    return {"id": case_id, "image": image, "boxes": boxes, "metadata": {"axcodes": axcodes}}
