"""Import a MedMNIST ``.npz`` file as NIfTI volumes plus a dataset manifest.

MedMNIST (Yang et al., Scientific Data 2023) ships each dataset as one ``.npz`` with
``{train,val,test}_{images,labels}`` arrays and an official split. :func:`import_medmnist`
writes every image as a NIfTI file and a manifest whose ``training`` / ``validation`` / ``test``
lists are that split, so MedMNIST sets go through the normal manifest path (validation,
fingerprint, preprocessing, pipelines).

MedMNIST images were cropped and resized to 28 (or 64) voxels per side; their physical spacing
is not recorded, so volumes are written on a 1 mm isotropic, RAS-stored grid. Multi-label sets
(ChestMNIST) and RGB sets are refused: a manifest case has one class and one scalar channel.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medimg.errors import ConfigError, ImageReadError
from medimg.io.formats import strip_suffix
from medimg.io.writing import save_volume
from medimg.modality import Modality, lookup_modality
from medimg.synthetic.phantoms import grid_affine
from medimg.typing import PathLike

__all__ = ["KNOWN_MEDMNIST", "import_medmnist"]

logger = logging.getLogger(__name__)

KNOWN_MEDMNIST: dict[str, tuple[Modality, tuple[str, ...]]] = {
    "adrenalmnist3d": (Modality.CT, ("normal", "hyperplasia")),
    "nodulemnist3d": (Modality.CT, ("benign", "malignant")),
    "fracturemnist3d": (Modality.CT, ("buckle", "nondisplaced", "displaced")),
    "vesselmnist3d": (Modality.MR, ("vessel", "aneurysm")),
    "organmnist3d": (
        Modality.CT,
        (
            "liver",
            "kidney-right",
            "kidney-left",
            "femur-right",
            "femur-left",
            "bladder",
            "heart",
            "lung-right",
            "lung-left",
            "spleen",
            "pancreas",
        ),
    ),
    "pneumoniamnist": (Modality.XR, ("normal", "pneumonia")),
}
"""Modality and class names (label order) of the MedMNIST sets whose modality medimg knows."""

_SPLITS = (("train", "training"), ("val", "validation"), ("test", "test"))


def import_medmnist(
    npz_path: PathLike,
    out_dir: PathLike,
    *,
    modality: str | None = None,
    class_names: tuple[str, ...] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a MedMNIST ``.npz`` as NIfTI files and ``out_dir/dataset.json``.

    Parameters
    ----------
    npz_path : path-like
        The official MedMNIST file, e.g. ``adrenalmnist3d.npz`` (``adrenalmnist3d_64.npz`` too).
    out_dir : path-like
        Output folder; images go to ``out_dir/images/{split}_{index:05d}.nii.gz``.
    modality : str, optional
        Modality code (``CT``, ``MR``, ``XR``); needed for sets not in :data:`KNOWN_MEDMNIST`.
    class_names : tuple of str, optional
        Class name per label value; defaults to the known names, else ``"0"``, ``"1"``, ...
    overwrite : bool
        Replace existing files.

    Returns
    -------
    Path
        The manifest written.

    Raises
    ------
    ImageReadError
        If the file lacks the MedMNIST keys, is multi-label or RGB.
    ConfigError
        If the modality is unknown or the class names do not fit the labels.
    """
    npz_path = Path(npz_path)
    out = Path(out_dir)
    with np.load(npz_path) as data:
        arrays = {key: data[key] for key in data.files}
    _check_keys(npz_path, arrays)
    modality_, names = _dataset_info(npz_path, arrays, modality, class_names)
    manifest: dict[str, Any] = {
        "schema_version": 1,
        "name": strip_suffix(npz_path.name.replace(".npz", ".nii")),
        "description": f"Imported from {npz_path.name} (MedMNIST v2, official split) by "
        "medimg import medmnist; 1 mm isotropic grid (MedMNIST keeps no spacing).",
        "channels": [{"name": modality_.value, "modality": modality_.value}],
        "classes": list(names),
    }
    for key, split in _SPLITS:
        manifest[split] = _write_split(arrays, key, names, out, overwrite)
    from medimg.manifests.load import save_manifest

    return save_manifest(manifest, out / "dataset.json", overwrite=overwrite)


def _check_keys(path: Path, arrays: dict[str, NDArray[Any]]) -> None:
    missing = [
        f"{s}_{k}" for s, _ in _SPLITS for k in ("images", "labels") if f"{s}_{k}" not in arrays
    ]
    if missing:
        raise ImageReadError(
            f"{path}: not a MedMNIST file: missing arrays {', '.join(missing)} "
            f"(found {', '.join(sorted(arrays)) or 'none'})"
        )
    labels, images = arrays["train_labels"], arrays["train_images"]
    if labels.ndim == 2 and labels.shape[1] > 1:
        raise ImageReadError(
            f"{path}: multi-label set ({labels.shape[1]} labels per image) is not supported; "
            "a manifest case has one class"
        )
    if images.ndim == 4 and images.shape[-1] == 3 and images.shape[1] != images.shape[-1]:
        raise ImageReadError(
            f"{path}: RGB images {images.shape[1:]} are not supported; one channel per image"
        )


def _dataset_info(
    path: Path, arrays: dict[str, NDArray[Any]], modality: str | None, names: tuple[str, ...] | None
) -> tuple[Modality, tuple[str, ...]]:
    stem = path.name.split(".")[0].split("_")[0].lower()
    known = KNOWN_MEDMNIST.get(stem)
    if modality is None and known is None:
        raise ConfigError(
            f"{path}: modality of {stem!r} is unknown; pass modality='CT', 'MR' or 'XR' "
            f"(--modality); known sets: {', '.join(KNOWN_MEDMNIST)}"
        )
    modality_ = lookup_modality(modality) if modality is not None else known[0]  # type: ignore[index]  # known is set when modality is None
    n_classes = int(max(int(arrays[f"{s}_labels"].max()) for s, _ in _SPLITS)) + 1
    if names is None:
        names = known[1] if known is not None else tuple(str(i) for i in range(n_classes))
    if len(names) < n_classes:
        raise ConfigError(
            f"{path}: class_names must name all {n_classes} label values, got {len(names)}: {names}"
        )
    return modality_, tuple(names)


def _write_split(
    arrays: dict[str, NDArray[Any]], key: str, names: tuple[str, ...], out: Path, overwrite: bool
) -> list[dict[str, str]]:
    images, labels = arrays[f"{key}_images"], arrays[f"{key}_labels"].reshape(-1)
    # 3D: identity (1 mm, RAS-stored). 2D: a coronal plane like a radiograph (x left, y head).
    affine = np.eye(4) if images.ndim == 4 else grid_affine((1, 1), (1.0, 1.0), axcodes="LSA")
    if images.ndim == 3:
        affine[:3, 3] = 0.0
    cases = []
    for index, (image, label) in enumerate(zip(images, labels, strict=True)):
        case_id = f"{key}_{index:05d}"
        relative = f"images/{case_id}.nii.gz"
        save_volume(image, out / relative, like=affine, overwrite=overwrite)
        cases.append({"id": case_id, "image": relative, "class": names[int(label)]})
    logger.info("%s: wrote %d cases", key, len(cases))
    return cases
