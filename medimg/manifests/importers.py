"""Convert Medical Segmentation Decathlon and nnU-Net v2 ``dataset.json`` files to manifests.

Both formats are recognised by :func:`load_manifest` directly (a file without
``schema_version`` that has MSD's ``modality`` or nnU-Net's ``channel_names``), and
``medimg manifest import`` writes the converted manifest so it can be versioned and edited.

* **MSD**: ``modality`` ``{"0": "CT"}``, ``labels`` ``{"0": "background", ...}``,
  ``training`` ``[{"image": "./imagesTr/x.nii.gz", "label": ...}]`` (one multi-channel file per
  case), ``test`` ``["./imagesTs/y.nii.gz", ...]``. Case ids are file names without suffix.
* **nnU-Net v2**: ``channel_names`` ``{"0": "CT"}``, ``labels`` ``{"background": 0, ...}``,
  ``file_ending``, and either a ``dataset`` mapping ``{id: {"images": [...], "label": ...}}``
  or the standard folders ``imagesTr/{id}_{0000}{ending}``, ``labelsTr/{id}{ending}`` and
  ``imagesTs/`` (listed on disk).

Channel names become modalities through :data:`MODALITY_ALIASES` (``MRI``, ``T1w``, ``FLAIR``,
``ADC`` ... are MR). nnU-Net normalisation names (``zscore``, ``noNorm``, ``rescale_to_0_1``) say
nothing about the modality: pass ``modality=`` to convert such a file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from medimg.errors import ManifestError
from medimg.modality import Modality

__all__ = ["MODALITY_ALIASES", "convert_dataset_json", "detect_format", "write_converted_manifest"]

_MR_NAMES = "MR MRI T1 T1W T1GD T1C T1CE T2 T2W FLAIR ADC DWI PD HBV SWI DCE"
MODALITY_ALIASES: dict[str, Modality] = {
    **dict.fromkeys(("CT", "CTA", "NCCT", "CECT"), Modality.CT),
    **dict.fromkeys(_MR_NAMES.split(), Modality.MR),
    **dict.fromkeys(("XR", "CR", "DX", "X-RAY", "XRAY"), Modality.XR),
}
"""Channel names of MSD / nnU-Net files (upper-cased) and the modality they mean."""

Format = Literal["msd", "nnunet"]
_ENDING = re.compile(r"^(\.[A-Za-z0-9]+)+$")
_SUFFIX = re.compile(r"(\.nii\.gz|\.nii|\.nrrd|\.mha|\.mhd|\.nhdr)$")


def detect_format(raw: Mapping[str, Any]) -> Format | None:
    """``"msd"``, ``"nnunet"`` or None (a medimg manifest, or unknown) for a JSON object."""
    if "schema_version" in raw:
        return None
    if "channel_names" in raw:
        return "nnunet"
    if "modality" in raw and "training" in raw:
        return "msd"
    return None


def convert_dataset_json(
    raw: Mapping[str, Any], source: Path, *, modality: Modality | None = None
) -> dict[str, Any]:
    """Convert an MSD or nnU-Net v2 ``dataset.json`` object into a manifest object.

    Parameters
    ----------
    raw : mapping
        The parsed ``dataset.json``.
    source : Path
        Its path; nnU-Net case files are listed from its folder, and errors name it.
    modality : Modality, optional
        Modality of every channel, overriding the channel names.

    Returns
    -------
    dict
        A manifest object (paths relative to `source`'s folder); validate it with
        :func:`medimg.manifests.load_manifest`.

    Raises
    ------
    ManifestError
        Listing every part that cannot be converted (unknown format, channel names that name
        no modality, region-based nnU-Net labels).
    """
    fmt = detect_format(raw)
    problems: list[str] = []
    if fmt is None:
        raise ManifestError(
            source,
            [
                "(file): neither an MSD dataset.json (no 'modality') nor an nnU-Net v2 one "
                "(no 'channel_names'), and not a medimg manifest (no 'schema_version')"
            ],
        )
    key = "modality" if fmt == "msd" else "channel_names"
    channels = _channels(raw.get(key), key, modality, problems)
    labels = _msd_labels(raw, problems) if fmt == "msd" else _nnunet_labels(raw, problems)
    if fmt == "msd":
        training, test = _msd_cases(raw, problems)
    else:
        training, test = _nnunet_cases(raw, source.parent, len(channels), problems)
    if problems:
        raise ManifestError(source, problems)
    record: dict[str, Any] = {
        "schema_version": 1,
        "name": str(raw.get("name") or source.parent.name),
        "description": str(raw.get("description") or f"imported from {fmt} {source.name}"),
        "channels": channels,
        "labels": labels,
        "training": training,
    }
    if test:
        record["test"] = test
    return record


def _channels(
    spec: object, key: str, override: Modality | None, problems: list[str]
) -> list[dict[str, str]]:
    if not isinstance(spec, Mapping) or not spec:
        problems.append(f"{key}: must map channel index to name, got {spec!r}")
        return []
    out = []
    for index in sorted(spec, key=lambda k: int(k) if str(k).isdecimal() else 0):
        name = str(spec[index])
        found = override or MODALITY_ALIASES.get(name.strip().upper())
        if found is None:
            problems.append(
                f"{key}.{index}: {name!r} names no modality medimg knows (known: "
                f"{', '.join(sorted(MODALITY_ALIASES))}); pass the modality (--modality CT|MR|XR)"
            )
            continue
        out.append({"name": name, "modality": found.value})
    return out


def _msd_labels(raw: Mapping[str, Any], problems: list[str]) -> list[dict[str, Any]]:
    """MSD ``labels`` ``{"0": "background", "1": "liver"}`` as label definitions.

    JSON keys are strings, so the value is the key read as a decimal integer: the one
    explicit conversion (label values given as JSON strings anywhere else are refused).
    """
    labels = raw.get("labels")
    if not isinstance(labels, Mapping):
        problems.append(f"labels: must map value to name, got {_short(labels)}")
        return []
    out = []
    for value, name in sorted(labels.items(), key=_int_key):
        if not (value.isascii() and value.isdecimal()):
            problems.append(
                f'labels.{value}: MSD label keys are voxel values such as "1", got '
                f"{value!r}; use the label's integer value as the key"
            )
        elif not isinstance(name, str):
            problems.append(f"labels.{value}: must be the label's name, got {_short(name)}")
        else:
            out.append({"value": int(value), "name": name})
    return out


def _int_key(item: tuple[Any, Any]) -> int:
    key = str(item[0])
    return int(key) if key.isascii() and key.isdecimal() else -1


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _nnunet_labels(raw: Mapping[str, Any], problems: list[str]) -> list[dict[str, Any]]:
    labels = raw.get("labels")
    if not isinstance(labels, Mapping):
        problems.append(f"labels: must map name to value, got {_short(labels)}")
        return []
    out = []
    for name, value in labels.items():
        if isinstance(value, list | tuple):
            problems.append(
                f"labels.{name}: region-based label {_short(value)} is not supported; list "
                "plain integer labels only"
            )
        elif isinstance(value, bool) or not isinstance(value, int):
            fix = (
                f"write {value.strip()} without quotes"
                if isinstance(value, str) and value.strip().isdecimal()
                else "give the label's integer voxel value"
            )
            problems.append(
                f"labels.{name}: must be a JSON integer, got {type(value).__name__} "
                f"{_short(value)}; {fix}"
            )
        else:
            out.append({"value": value, "name": str(name)})
    return sorted(out, key=lambda d: int(d["value"]))


def _case_id(path: str) -> str:
    return _SUFFIX.sub("", Path(path).name)


def _clean(path: str) -> str:
    return path.removeprefix("./")


def _msd_cases(
    raw: Mapping[str, Any], problems: list[str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    training = []
    for i, case in enumerate(_listed(raw, "training", problems)):
        if not isinstance(case, Mapping) or not isinstance(case.get("image"), str):
            problems.append(f"training[{i}]: must be {{'image': ..., 'label': ...}}, got {case!r}")
            continue
        entry = {"id": _case_id(case["image"]), "image": _clean(case["image"])}
        label = case.get("label")
        if isinstance(label, str):
            entry["label"] = _clean(label)
        elif label is not None:
            problems.append(f"training[{i}].label: must be a path string, got {_short(label)}")
        training.append(entry)
    test = []
    for i, item in enumerate(_listed(raw, "test", problems)):
        image = item.get("image") if isinstance(item, Mapping) else item
        if not isinstance(image, str):
            problems.append(f"test[{i}]: must be an image path, got {item!r}")
            continue
        test.append({"id": _case_id(image), "image": _clean(image)})
    return training, test


def _listed(raw: Mapping[str, Any], key: str, problems: list[str]) -> list[Any]:
    value = raw.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        problems.append(f"{key}: must be a list of cases, got {_short(value)}")
        return []
    return value


def _nnunet_cases(
    raw: Mapping[str, Any], root: Path, n_channels: int, problems: list[str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    dataset = raw.get("dataset")
    if isinstance(dataset, Mapping):
        training = []
        for case_id, entry in dataset.items():
            images = entry.get("images") if isinstance(entry, Mapping) else None
            if not isinstance(images, list) or not all(isinstance(p, str) for p in images):
                problems.append(
                    f"dataset.{case_id}: must be {{'images': [paths], 'label': path}}, got "
                    f"{_short(entry)}"
                )
                continue
            case: dict[str, Any] = {
                "id": case_id,
                "image": images[0] if len(images) == 1 else images,
            }
            if entry.get("label") is not None:
                case["label"] = entry["label"]
            training.append(case)
        return training, []
    ending = raw.get("file_ending")
    if not isinstance(ending, str) or not _ENDING.fullmatch(ending):
        problems.append(f"file_ending: must be a suffix like '.nii.gz', got {_short(ending)}")
        return [], []
    labelled = sorted(p.name.removesuffix(ending) for p in (root / "labelsTr").glob(f"*{ending}"))
    if not labelled:
        problems.append(f"labelsTr: no *{ending} files in {root / 'labelsTr'}; check the folder")
    training = [
        {
            **_nnunet_images("imagesTr", case_id, ending, n_channels),
            "label": f"labelsTr/{case_id}{ending}",
        }
        for case_id in labelled
    ]
    test_ids = sorted(
        {p.name[: -len(f"_0000{ending}")] for p in (root / "imagesTs").glob(f"*_0000{ending}")}
    )
    test = [_nnunet_images("imagesTs", i, ending, n_channels) for i in test_ids]
    return training, test


def _nnunet_images(folder: str, case_id: str, ending: str, n_channels: int) -> dict[str, Any]:
    paths = [f"{folder}/{case_id}_{c:04d}{ending}" for c in range(n_channels)]
    return {"id": case_id, "image": paths[0] if n_channels == 1 else paths}


def write_converted_manifest(
    source: Path, out: Path, *, modality: Modality | None = None, overwrite: bool = False
) -> Path:
    """Convert `source` (MSD / nnU-Net v2 ``dataset.json``), validate the schema, write `out`.

    Case paths are rewritten relative to `out`'s folder; if that takes them outside it,
    ``allow_paths_outside_root`` is set.

    Raises
    ------
    ManifestError
        If `source` cannot be converted, or the result fails the schema checks.
    OutputExistsError
        If `out` exists and `overwrite` is false.
    """
    import os

    from medimg.manifests.load import read_manifest_json, save_manifest

    record = convert_dataset_json(read_manifest_json(source), source, modality=modality)
    src_dir, out_dir = source.resolve().parent, out.resolve().parent

    def moved(rel: str) -> str:
        return Path(os.path.relpath(src_dir / rel, out_dir)).as_posix()

    for split in ("training", "test"):
        for case in record.get(split, []):
            image = case["image"]
            case["image"] = moved(image) if isinstance(image, str) else [moved(p) for p in image]
            if "label" in case:
                case["label"] = moved(case["label"])
    paths = [c["label"] for c in record["training"] if "label" in c]
    for case in [*record["training"], *record.get("test", [])]:
        paths += [case["image"]] if isinstance(case["image"], str) else case["image"]
    if any(".." in Path(p).parts or Path(p).is_absolute() for p in paths):
        record["allow_paths_outside_root"] = True
    return save_manifest(record, out, overwrite=overwrite)
