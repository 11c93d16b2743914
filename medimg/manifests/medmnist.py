"""Import a MedMNIST ``.npz`` file as NIfTI volumes plus a dataset manifest.

MedMNIST (Yang et al., Scientific Data 2023) ships each dataset as one ``.npz`` with
``{train,val,test}_{images,labels}`` arrays and an official split. :func:`import_medmnist`
writes every image as a NIfTI file and a manifest whose ``training`` / ``validation`` / ``test``
lists are that split, so MedMNIST sets go through the normal manifest path (validation,
fingerprint, preprocessing, pipelines).

MedMNIST images were cropped and resized to 28 (or 64) voxels per side; their physical spacing
is not recorded, so volumes are written on a 1 mm isotropic, RAS-stored grid. Multi-label sets
(ChestMNIST) and RGB sets are refused: a manifest case has one class and one scalar channel.

The file is checked before anything is written: a zip archive holding the six arrays, numeric
images, integer labels >= 0, one label per image. Arrays are read with ``allow_pickle=False``
(unpickling an object array can run code), and each array's ``.npy`` header is checked before its
data is read.
"""

from __future__ import annotations

import logging
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medimg.errors import ConfigError, ImageNotFoundError, ImageReadError
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
_KEYS = tuple(f"{s}_{k}" for s, _ in _SPLITS for k in ("images", "labels"))
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a member first, or an empty archive
_MAX_CLASSES = 1000
"""Most label values given default names ``"0"``, ``"1"``, ...; MedMNIST sets have at most 11."""
# what reading a damaged archive member raises (zip structure, deflate stream, .npy header/data)
_DAMAGED = (zipfile.BadZipFile, zlib.error, EOFError, ValueError, NotImplementedError, OSError)
_Header = tuple[tuple[int, ...], np.dtype[Any]]


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
    ImageNotFoundError
        If ``npz_path`` does not exist.
    ImageReadError
        If the file is not a readable zip archive of the six MedMNIST arrays, an array holds
        Python objects, images are not numeric (or not finite), labels are not integers >= 0,
        image and label counts differ, or the set is multi-label or RGB.
    ConfigError
        If the modality is unknown or the class names do not fit the labels.
    """
    npz_path = Path(npz_path)
    out = Path(out_dir)
    arrays = _read_arrays(npz_path)
    modality_, names = _dataset_info(npz_path, arrays, modality, class_names)
    manifest: dict[str, Any] = {
        "schema_version": 1,
        "name": strip_suffix(npz_path.name.replace(".npz", ".nii")) or "medmnist",
        "description": f"Imported from {npz_path.name} (MedMNIST v2, official split) by "
        "medimg import medmnist; 1 mm isotropic grid (MedMNIST keeps no spacing).",
        "channels": [{"name": modality_.value, "modality": modality_.value}],
        "classes": list(names),
    }
    for key, split in _SPLITS:
        manifest[split] = _write_split(arrays, key, names, out, overwrite)
    from medimg.manifests.load import save_manifest

    return save_manifest(manifest, out / "dataset.json", overwrite=overwrite)


def _read_arrays(path: Path) -> dict[str, NDArray[Any]]:
    """The six arrays of a MedMNIST file, every header checked before any data is read."""
    _check_zip(path)
    with path.open("rb") as f:  # ours to close: np.load leaks its own handle on a bad zip
        try:
            data = np.load(f, allow_pickle=False)  # an object array could run code when loaded
        except _DAMAGED as exc:
            raise ImageReadError(
                f"{path}: damaged zip archive ({exc}); download it again"
            ) from None
        with data:
            _check_present(path, data.zip)
            headers = {key: _header(path, data.zip, key) for key in _KEYS}
            _check_headers(path, headers)
            arrays = {key: _member(path, data, key) for key in _KEYS}
    _check_values(path, arrays)
    for split, _ in _SPLITS:
        key = f"{split}_images"
        arrays[key] = _storable(path, key, arrays[key])
    return arrays


def _check_zip(path: Path) -> None:
    if not path.exists():
        raise ImageNotFoundError(f"{path}: no such file; give the path of a MedMNIST .npz")
    if path.is_dir():
        raise ImageReadError(f"{path}: is a folder; give the path of a MedMNIST .npz file")
    with path.open("rb") as f:  # an OSError (permission) reaches the CLI as one line
        head = f.read(4)
    if head.startswith(b"\x93NUM"):
        raise ImageReadError(
            f"{path}: is a single .npy array, not an .npz archive of the six MedMNIST arrays "
            f"({', '.join(_KEYS)})"
        )
    if head not in _ZIP_MAGIC:
        what = "is empty (0 bytes)" if not head else f"is not a zip archive (starts {head!r})"
        raise ImageReadError(f"{path}: {what}; a MedMNIST .npz is a zip archive; download it again")


def _check_present(path: Path, archive: zipfile.ZipFile) -> None:
    members = archive.namelist()
    missing = [key for key in _KEYS if f"{key}.npy" not in members]
    if missing:
        raise ImageReadError(
            f"{path}: not a MedMNIST file: missing arrays {', '.join(missing)} "
            f"(archive members: {', '.join(sorted(members)) or 'none'}; each array is NAME.npy)"
        )
    for key in _KEYS:
        if archive.getinfo(f"{key}.npy").flag_bits & 0x1:  # zipfile raises RuntimeError later
            raise ImageReadError(
                f"{path}: array {key} is encrypted; MedMNIST files are not: download it again"
            )


def _header(path: Path, archive: zipfile.ZipFile, key: str) -> _Header:
    """Shape and dtype from the ``.npy`` header of ``key``, without reading its data."""
    fmt = np.lib.format
    try:
        with archive.open(f"{key}.npy") as fp:
            version = fmt.read_magic(fp)
            read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            shape, _, dtype = read(fp)
    except _DAMAGED as exc:
        raise ImageReadError(
            f"{path}: array {key} is not a valid .npy member ({exc}); download the file again"
        ) from None
    return tuple(int(n) for n in shape), dtype


def _check_headers(path: Path, headers: dict[str, _Header]) -> None:
    for key, (shape, dtype) in headers.items():
        if dtype.hasobject:
            raise ImageReadError(
                f"{path}: array {key} holds Python objects (dtype {dtype}); medimg reads only "
                "numeric arrays (allow_pickle=False: unpickling can run code); save numbers"
            )
        if not shape:
            raise ImageReadError(f"{path}: array {key} must have one entry per image, got a scalar")
    ndims = set()
    for split, _ in _SPLITS:
        (ishape, idtype), (lshape, ldtype) = headers[f"{split}_images"], headers[f"{split}_labels"]
        _check_labels_header(path, split, lshape, ldtype)
        _check_images_header(path, split, ishape, idtype)
        if ishape[0] != lshape[0]:
            raise ImageReadError(
                f"{path}: {split}_images and {split}_labels must have one label per image, got "
                f"{ishape[0]} images and {lshape[0]} labels"
            )
        ndims.add(len(ishape))
    if len(ndims) > 1:
        raise ImageReadError(
            f"{path}: every split must hold images of one dimensionality, got "
            + ", ".join(f"{s}_images {headers[f'{s}_images'][0]}" for s, _ in _SPLITS)
        )
    if headers["train_images"][0][0] == 0:
        raise ImageReadError(f"{path}: train_images must hold at least one image, got none")


def _check_labels_header(path: Path, split: str, shape: tuple[int, ...], dtype: Any) -> None:
    if len(shape) == 2 and shape[1] > 1:
        raise ImageReadError(
            f"{path}: multi-label set ({shape[1]} labels per image) is not supported; "
            "a manifest case has one class"
        )
    if len(shape) > 2 or (len(shape) == 2 and shape[1] != 1):
        raise ImageReadError(f"{path}: {split}_labels must have shape (N,) or (N, 1), got {shape}")
    if dtype.kind not in "ui":
        raise ImageReadError(
            f"{path}: {split}_labels must be integers (class indices), got dtype {dtype}; "
            "cast them, e.g. labels.astype(np.int64), and save again"
        )


def _check_images_header(path: Path, split: str, shape: tuple[int, ...], dtype: Any) -> None:
    if len(shape) not in (3, 4) or any(n < 1 for n in shape[1:]):
        raise ImageReadError(
            f"{path}: {split}_images must have shape (N, H, W) (2D) or (N, D, H, W) (3D) with "
            f"every image axis >= 1, got {shape}"
        )
    if len(shape) == 4 and shape[-1] == 3 and shape[1] != shape[-1]:
        raise ImageReadError(
            f"{path}: RGB images {shape[1:]} are not supported; one channel per image"
        )
    if dtype.kind not in "uif":
        raise ImageReadError(
            f"{path}: {split}_images must be integers or floats, got dtype {dtype}"
        )


def _member(path: Path, data: Any, key: str) -> NDArray[Any]:
    try:
        array: NDArray[Any] = data[key]
    except _DAMAGED as exc:
        raise ImageReadError(
            f"{path}: array {key} cannot be read ({exc}); the file is damaged, download it again"
        ) from None
    return array


def _check_values(path: Path, arrays: dict[str, NDArray[Any]]) -> None:
    for split, _ in _SPLITS:
        labels, images = arrays[f"{split}_labels"].reshape(-1), arrays[f"{split}_images"]
        if labels.size and (low := int(labels.min())) < 0:
            index = int(np.argmin(labels))
            raise ImageReadError(
                f"{path}: {split}_labels must be class indices >= 0, got {low} at index {index}"
            )
        if images.dtype.kind == "f" and not np.isfinite(images).all():
            index = int(np.flatnonzero(~np.isfinite(images).reshape(len(images), -1).all(1))[0])
            raise ImageReadError(
                f"{path}: {split}_images must be finite, got NaN or infinity in image {index}"
            )


def _storable(path: Path, key: str, images: NDArray[Any]) -> NDArray[Any]:
    """``images`` in a dtype NIfTI stores: float16 as float32, 64-bit integers as int32."""
    if images.dtype == np.float16:
        return images.astype(np.float32)
    if images.dtype.kind in "ui" and images.dtype.itemsize == 8:
        low, high = np.iinfo(np.int32).min, np.iinfo(np.int32).max
        if images.size and (int(images.min()) < low or int(images.max()) > high):
            raise ImageReadError(
                f"{path}: {key} must fit in 32-bit integers to be written as NIfTI, got values "
                f"{int(images.min())}..{int(images.max())} ({images.dtype}); rescale them"
            )
        return images.astype(np.int32)
    return images


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
    try:
        modality_ = lookup_modality(modality) if modality is not None else known[0]  # type: ignore[index]  # known is set when modality is None
    except ValueError as exc:  # lookup_modality's own refusal, with its did-you-mean
        raise ConfigError(f"{path}: {exc}; pass --modality CT, MR or XR") from None
    labels = [arrays[f"{s}_labels"] for s, _ in _SPLITS if arrays[f"{s}_labels"].size]
    n_classes = max(int(a.max()) for a in labels) + 1  # train_labels is never empty
    if names is None and known is None and n_classes > _MAX_CLASSES:
        raise ConfigError(
            f"{path}: labels go up to {n_classes - 1}; name the classes (class_names, "
            f"--class-names) when there are more than {_MAX_CLASSES}"
        )
    if names is None:
        names = known[1] if known is not None else tuple(str(i) for i in range(n_classes))
    if len(names) < n_classes:
        raise ConfigError(
            f"{path}: class_names must name all {n_classes} label values, got {len(names)}: {names}"
        )
    _check_names(path, tuple(names))
    return modality_, tuple(names)


def _check_names(path: Path, names: tuple[str, ...]) -> None:
    """The checks the manifest's ``classes`` gets, made before any image is written."""
    if len(names) < 2:
        raise ConfigError(
            f"{path}: a classification set needs at least two classes, got {names}; "
            "pass every class name (class_names, --class-names)"
        )
    for i, name in enumerate(names):
        if not name.strip():
            raise ConfigError(f"{path}: class_names[{i}] must not be empty, got {names}")
        if names.index(name) < i:
            raise ConfigError(
                f"{path}: class_names[{i}] duplicates class_names[{names.index(name)}] ({name!r})"
            )


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
